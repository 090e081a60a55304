//! Reading the tables inside packages: dataset URIs, table discovery,
//! planning (schema, row counts, partitions) and execution (DataFusion scans
//! with projection, filters, limits and reproducible sampling).
//!
//! Planning turns a [`DatasetUri`] into a [`Plan`] whose endpoints carry
//! self-contained [`crate::proto::Ticket`]s; executing a ticket streams Arrow record
//! batches. For a pinned revision the same URI always yields the same rows in
//! the same order, and the ordered union of the endpoints equals one stream.

pub mod channel;
mod engine;
mod error;
mod float_bounds;
pub mod ipc;
pub mod limits;
mod manifest_table;
pub mod pinned_table;
mod plan;
mod planner;
mod prepare;
pub mod reader;
mod revision;
pub mod rows;
mod scan;
mod shape;
mod sources;
mod split;

pub mod sample;
pub mod table;
pub mod uri;

pub use engine::{Engine, Execution, Layout, ReadStats};
pub use error::{Error, panic_message};
pub use plan::{Plan, Region};
pub use revision::Revision;
pub use scan::read_ahead;
pub use shape::{to_wire, wire_schema};
pub use uri::{Compression, DatasetUri, PutTarget, QuerySpec, session_table_problem};
