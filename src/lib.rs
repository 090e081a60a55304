//! Sheaf: versioned data packages as pinned dependencies.
//!
//! Data flows one way through the modules:
//! [`manifest`] (format and hashing, no I/O) -> [`registry`] (packages on an
//! object store: push, install, verify, pointers) -> [`query`] (dataset URIs,
//! planning, DataFusion scans, sampling) -> [`sql`] (SQL over every package
//! revision, on the same engine) -> [`flight`] (the Arrow Flight and Flight SQL
//! service, whose callers [`auth`] identifies and guards) -> the `sheaf` CLI.
//! The CLI and the server call the same library.

pub mod auth;
pub mod demo;
pub mod flight;
pub mod manifest;
pub mod metrics;
pub mod profile;
pub mod progress;
pub mod query;
pub mod registry;
pub mod sql;

pub use registry::{Error, PackageName, PackageRef, ReadPolicy, Registry, Result, Revision};
/// The wire contract (`proto/sheaf.proto`), generated once, in the client crate.
pub use sheaf_client::proto;
