//! Data profiles: what a table looks like, computed while its data streams
//! (one pass, no second read, memory bounded whatever the row count),
//! stored in its manifest entry's metadata under `sheaf.profile`, and
//! compared between revisions (`sheaf diff --profile`, see [`drift`]).
//!
//! # The JSON shape
//!
//! ```json
//! {"rows": 1000,
//!  "columns": [
//!   {"name": "price", "type": "Float64", "kind": "number", "nulls": 3, "nan": 0,
//!    "distinct": 981, "min": 0.5, "max": 99.0, "mean": 50.1, "std": 28.7,
//!    "quantiles": [0.5, 5.2, 10.1, "... 21 values ...", 99.0]},
//!   {"name": "city", "type": "Utf8", "kind": "string", "nulls": 0, "distinct": 12,
//!    "min": "Aachen", "max": "Zurich", "top": [{"value": "Paris", "count": 310}]},
//!   {"name": "ok", "type": "Boolean", "kind": "bool", "nulls": 0, "distinct": 2,
//!    "true": 900, "false": 100, "top": [{"value": true, "count": 900}]},
//!   {"name": "day", "type": "Date32", "kind": "temporal", "nulls": 0, "distinct": 31,
//!    "min": "2024-01-01", "max": "2024-01-31"},
//!   {"name": "tags", "type": "List(Utf8)", "kind": "other", "nulls": 7}]}
//! ```
//!
//! - `rows`: rows of the table. Per column, always: `name`, `type` (the Arrow
//!   type as Arrow prints it), `kind` (which statistics follow), `nulls`.
//! - `number` (integers, floats, decimals): `min`/`max` as JSON numbers
//!   (integers exact; decimals as floats); `mean` and `std` (sample standard
//!   deviation, ddof = 1, as pandas computes it) over the non-null, non-NaN
//!   values; `nan`: NaN values (float columns only; not nulls, not in any other
//!   statistic); `quantiles`: [`QUANTILES`] values at probabilities
//!   `i / (QUANTILES - 1)` (0, 0.05, ..., 1), interpolated linearly as pandas
//!   does, over a uniform sample of [`SAMPLE_SIZE`] finite values (exact for
//!   columns with no more values than that).
//! - `string`: `min`/`max` truncated to [`MAX_STRING_CHARS`] characters; `top`:
//!   the [`TOP_VALUES`] most frequent values (truncated likewise) with their
//!   counts, largest first, ties by value. Counts are exact while a column has
//!   at most [`TOP_CAPACITY`] distinct values; beyond, a Misra-Gries summary's
//!   lower bounds (off by at most non-null rows / (TOP_CAPACITY + 1)).
//! - `bool`: `true` and `false` counts, and `top` as for strings.
//! - `temporal` (dates, times, timestamps, durations): `min`/`max` as ISO 8601
//!   text as Arrow prints it.
//! - `distinct` (every kind but `other`): a HyperLogLog estimate (standard
//!   error 0.8%, close to exact below a few thousand values) of the distinct
//!   non-null values.
//! - `other` (lists, structs, maps, unions, null columns): `nulls` only.
//!
//! A statistic is absent when there is nothing to report (an all-null column
//! has no `min`), and never NaN or infinite: JSON cannot hold those, so such a
//! `min`, `max`, `mean` or `std` is absent too. Dictionary columns are
//! profiled as their values. Every statistic is deterministic: the same rows in
//! the same order give the same bytes in every process, however they were
//! batched, so writing the same data twice keeps the top hash.

mod column;
pub mod drift;
mod file;
pub mod html;
mod merge;
mod sketch;
mod tables;

pub use drift::{ColumnDrift, SchemaChange, TableDrift, compare};
pub use file::{is_profiled, profile_file};
pub use merge::merge;
pub use tables::{RevisionDrift, StoredTable, TableComparison, stored_tables, table_of};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::Schema;
use column::{Accumulator, Kind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Quantiles reported per numeric column: probabilities 0, 0.05, ..., 1.
pub const QUANTILES: usize = 21;
/// Values sampled per numeric column for its quantiles.
pub const SAMPLE_SIZE: usize = 4096;
/// Characters kept of a string `min`, `max` or top value.
pub const MAX_STRING_CHARS: usize = 100;
/// Most frequent values reported per string or bool column.
pub const TOP_VALUES: usize = 10;
/// Counters of the frequent-values summary per string column.
pub const TOP_CAPACITY: usize = 256;

/// One table's profile (the JSON under an entry's `meta.sheaf.profile`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Rows of the table.
    pub rows: u64,
    /// One profile per column, in schema order.
    pub columns: Vec<ColumnProfile>,
}

/// One column's statistics (see the [module](self) for which a kind has).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// The column's name.
    pub name: String,
    /// Its Arrow type, as Arrow prints it.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Which statistics it has: `number`, `string`, `bool`, `temporal`,
    /// `binary` or `other`.
    #[serde(default)]
    pub kind: String,
    /// Null values.
    pub nulls: u64,
    /// NaN values (float columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nan: Option<u64>,
    /// Estimated distinct non-null values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<u64>,
    /// Smallest value: a number, or text for strings and temporal values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// Largest value, like `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// Mean of the numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Sample standard deviation (ddof = 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    /// [`QUANTILES`] values at evenly spaced probabilities from 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<f64>>,
    /// True values of a bool column.
    #[serde(rename = "true", default, skip_serializing_if = "Option::is_none")]
    pub true_count: Option<u64>,
    /// False values of a bool column.
    #[serde(rename = "false", default, skip_serializing_if = "Option::is_none")]
    pub false_count: Option<u64>,
    /// Most frequent values, largest count first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<Vec<TopValue>>,
}

/// A frequent value and how often it occurs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopValue {
    /// The value (a string or a bool).
    pub value: Value,
    /// Rows holding it.
    pub count: u64,
}

impl ColumnProfile {
    /// Values that are neither null nor NaN (those behind `mean` and
    /// `std`), in a table of `rows` rows.
    pub fn values(&self, rows: u64) -> u64 {
        rows.saturating_sub(self.nulls).saturating_sub(self.nan.unwrap_or(0))
    }
}

/// Accumulates a [`Profile`] over the record batches of one table.
///
/// ```
/// use arrow::array::{Int64Array, RecordBatch};
/// use arrow::datatypes::{DataType, Field, Schema};
/// use sheaf::profile::Profiler;
/// use std::sync::Arc;
///
/// let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
/// let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))])?;
/// let mut profiler = Profiler::new(&schema);
/// profiler.update(&batch);
/// let profile = profiler.finish();
/// assert_eq!(profile.rows, 3);
/// assert_eq!(profile.columns[0].nulls, 1);
/// assert_eq!(profile.columns[0].mean, Some(2.0));
/// # Ok::<(), arrow::error::ArrowError>(())
/// ```
#[derive(Debug)]
pub struct Profiler {
    rows: u64,
    columns: Vec<(ColumnProfile, Accumulator)>,
}

impl Profiler {
    /// A profiler for tables of `schema`.
    pub fn new(schema: &Schema) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let column = ColumnProfile {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    kind: Kind::of(f.data_type()).name().to_owned(),
                    ..Default::default()
                };
                (column, Accumulator::new(f.data_type()))
            })
            .collect();
        Self { rows: 0, columns }
    }

    /// Adds one batch (of the schema given to [`Profiler::new`]; columns of
    /// another type are counted but not described).
    pub fn update(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows() as u64;
        for ((column, acc), array) in self.columns.iter_mut().zip(batch.columns()) {
            column.nulls += array.logical_null_count() as u64;
            acc.update(array.as_ref());
        }
    }

    /// The profile of everything added.
    pub fn finish(self) -> Profile {
        let columns = self
            .columns
            .into_iter()
            .map(|(mut column, acc)| {
                acc.finish(&mut column);
                column
            })
            .collect();
        Profile { rows: self.rows, columns }
    }
}

impl Profile {
    /// The profile as the JSON stored in entry metadata.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Reads a profile from entry metadata's `sheaf.profile` JSON; `None`
    /// when it is not a profile.
    pub fn from_json(value: &Value) -> Option<Profile> {
        serde_json::from_value(value.clone()).ok()
    }

    /// The profile stored in an entry's metadata (`meta.sheaf.profile`).
    pub fn of_meta(meta: &Value) -> Option<Profile> {
        meta.get("sheaf")?.get("profile").and_then(Profile::from_json)
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests;
