//! Sheaf: versioned data packages as pinned dependencies.
//!
//! Data flows one way through the modules:
//! [`manifest`] (format and hashing, no I/O) -> [`registry`] (packages on an
//! object store: push, install, verify, pointers) -> the `sheaf` CLI.
//! The CLI holds no logic of its own; the Flight server will call the same
//! library.

pub mod demo;
pub mod manifest;
pub mod progress;
pub mod registry;

pub use registry::{Error, PackageName, PackageRef, ReadPolicy, Registry, Result, Revision};
