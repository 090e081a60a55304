//! SQL over every package revision, on the engine's long-lived DataFusion
//! runtime: what the Flight SQL service ([`crate::flight`]) runs.
//!
//! Names: catalog `sheaf`; a schema is a package at a revision
//! (`"owner/name"` for latest, resolved once per statement,
//! `"owner/name@<hash prefix>"`, `"owner/name:<tag>"`); a table is a table's
//! path in it (`"tables/readings.parquet"`, a folder table by its folder),
//! plus `"_manifest"` for the entries. The table function
//! `sheaf('sheaf://...')` reads any dataset URI, with every URI parameter.
//!
//! A statement is planned once per request: the revisions it names are
//! resolved as it is planned ([`catalog`]) and recorded as [`Pins`], so a
//! [`ticket::StatementTicket`] re-plans exactly the same statement on any
//! replica. Parquet tables are DataFusion scans of the pinned parts
//! ([`crate::query::pinned_table::PinnedTable`], metadata from the engine's cache); other
//! tables and the table function run the engine's own reads
//! ([`tables::PlannedTable`]). Errors are the query layer's
//! ([`crate::query::Error`]).

mod catalog;
mod engine;
mod functions;
mod runtime;
mod statement;
mod stop;
mod tables;
pub mod ticket;

pub use engine::{MayRead, Planned, SqlEngine, SqlLimits};
pub use ticket::{Pins, PreparedHandle, StatementTicket};

/// The name of the one catalog.
pub const CATALOG: &str = "sheaf";
/// The table of a package's entries.
pub const MANIFEST_TABLE: &str = "_manifest";
/// The table function reading a dataset URI.
pub const TABLE_FUNCTION: &str = "sheaf";
