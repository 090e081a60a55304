//! Data profiles: what a table looks like, computed while its data streams
//! (no second read), stored in its manifest entry's metadata under
//! `sheaf.profile`, and compared between revisions (`sheaf diff --profile`).
//!
//! STUB: the API the writers call; the statistics are being filled in.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

/// One table's profile (the JSON under an entry's `meta.sheaf.profile`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Rows of the table.
    pub rows: u64,
    /// One profile per column, in schema order.
    pub columns: Vec<ColumnProfile>,
}

/// One column's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// The column's name.
    pub name: String,
    /// Its Arrow type, as Arrow prints it.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Null values.
    pub nulls: u64,
}

/// Accumulates a [`Profile`] over the record batches of one table.
#[derive(Debug)]
pub struct Profiler {
    profile: Profile,
}

impl Profiler {
    /// A profiler for tables of `schema`.
    pub fn new(schema: &Schema) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| ColumnProfile { name: f.name().clone(), data_type: f.data_type().to_string(), nulls: 0 })
            .collect();
        Self { profile: Profile { rows: 0, columns } }
    }

    /// Adds one batch (of the schema given to [`Profiler::new`]).
    pub fn update(&mut self, batch: &RecordBatch) {
        self.profile.rows += batch.num_rows() as u64;
        for (column, array) in self.profile.columns.iter_mut().zip(batch.columns()) {
            column.nulls += array.null_count() as u64;
        }
    }

    /// The profile of everything added.
    pub fn finish(self) -> Profile {
        self.profile
    }
}

impl Profile {
    /// The profile as the JSON stored in entry metadata.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
