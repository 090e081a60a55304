//! Shaping record batches for the wire: which rows (sample, filter, limit)
//! and which columns, cast to types every Flight client decodes.

use super::Error;
use super::rows::Positions;
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use std::sync::Arc;

/// The type a column travels as: views become their plain forms and
/// dictionaries are hydrated, because Spark's ArrowColumnVector, JDBC and
/// arrow-js do not decode views, and dictionaries complicate every client.
pub fn wire_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => wire_type(value),
        DataType::List(f) => DataType::List(Arc::new(wire_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(wire_field(f))),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(Arc::new(wire_field(f)), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(|f| wire_field(f)).collect()),
        other => other.clone(),
    }
}

fn wire_field(f: &Field) -> Field {
    f.clone().with_data_type(wire_type(f.data_type()))
}

/// Selects and casts the output columns of a batch.
#[derive(Debug, Clone)]
pub struct Projector {
    indices: Vec<usize>,
    schema: SchemaRef,
}

impl Projector {
    /// Output `columns` (all when empty) of batches with schema `input`;
    /// an unknown column is an error naming it and the table's columns.
    pub fn new(input: &Schema, columns: &[String], table: &str) -> Result<Self, Error> {
        let indices: Vec<usize> = if columns.is_empty() {
            (0..input.fields().len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    input.index_of(c).map_err(|_| {
                        let known: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
                        let message = format!(
                            "unknown column {} in {table}; its columns are {}{}",
                            super::limits::excerpt(c),
                            known.iter().take(20).cloned().collect::<Vec<_>>().join(", "),
                            if known.len() > 20 { format!(" and {} more", known.len() - 20) } else { String::new() }
                        );
                        Error::UnknownColumn { column: c.clone(), message }
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let fields: Vec<Field> = indices.iter().map(|&i| wire_field(input.field(i))).collect();
        Ok(Projector { indices, schema: Arc::new(Schema::new(fields)) })
    }

    /// The output schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Projects a batch whose schema is the `input` given at construction.
    pub fn project(&self, batch: &RecordBatch) -> Result<RecordBatch, Error> {
        let columns = self
            .indices
            .iter()
            .zip(self.schema.fields())
            .map(|(&i, field)| {
                let col = batch.column(i);
                if col.data_type() == field.data_type() {
                    Ok(col.clone())
                } else {
                    cast(col, field.data_type())
                        .map_err(|e| Error::engine(format!("casting column {}", field.name()), e))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::engine("assembling a batch", e))
    }
}

/// Chooses rows: by table position (sample and `rows`, for tables read
/// sequentially), then the filter, then the limit.
pub struct Selector {
    /// The positions kept, when selecting here (Parquet selects in the scan).
    pub positions: Option<Positions>,
    /// Table position of the next row to arrive.
    pub position: u64,
    /// The filter, bound to the batches' schema.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Rows still allowed by the limit.
    pub remaining: Option<u64>,
}

impl Selector {
    /// Whether the limit is exhausted (stop reading).
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The selected rows of the next batch.
    pub fn select(&mut self, batch: RecordBatch) -> Result<RecordBatch, Error> {
        let mut batch = batch;
        if let Some(positions) = &self.positions {
            let keep = BooleanArray::from(positions.keep_mask(self.position, batch.num_rows()));
            self.position += batch.num_rows() as u64;
            batch = filter_record_batch(&batch, &keep).map_err(|e| Error::engine("selecting rows", e))?;
        }
        if let Some(filter) = &self.filter
            && batch.num_rows() > 0
        {
            let mask = filter
                .evaluate(&batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .map_err(|e| Error::engine("evaluating the filter", e))?;
            let mask = mask.as_boolean_opt().ok_or_else(|| {
                Error::invalid(format!("the filter must be a boolean expression, not {}", mask.data_type()))
            })?;
            batch = filter_record_batch(&batch, mask).map_err(|e| Error::engine("filtering", e))?;
        }
        if let Some(remaining) = self.remaining.as_mut() {
            let n = (batch.num_rows() as u64).min(*remaining);
            *remaining -= n;
            batch = batch.slice(0, n as usize);
        }
        Ok(batch)
    }
}
