//! Shaping record batches for the wire: the rows of inputs read whole kept
//! by position (sample, `rows`), and the output columns cast to types every
//! Flight client decodes.

use super::Error;
use super::rows::Positions;
use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
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

/// `schema` with every column of its [`wire_type`]: what an SQL result's
/// FlightInfo and GetSchema announce, and what its batches carry.
pub fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema.fields().iter().map(|f| wire_field(f)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with its columns cast to `schema`, its [`wire_schema`].
pub fn to_wire(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, Error> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    cast_to(batch.columns().iter(), schema)
}

/// A batch of `schema` from `columns`, each cast to its field's type where
/// it differs.
fn cast_to<'a>(columns: impl Iterator<Item = &'a ArrayRef>, schema: &SchemaRef) -> Result<RecordBatch, Error> {
    let columns = columns
        .zip(schema.fields())
        .map(|(col, field)| match col.data_type() == field.data_type() {
            true => Ok(col.clone()),
            false => {
                cast(col, field.data_type()).map_err(|e| Error::engine(format!("casting column {}", field.name()), e))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::engine("assembling a batch", e))
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
        cast_to(self.indices.iter().map(|&i| batch.column(i)), &self.schema)
    }
}

/// Keeps the rows of `positions` (sample, `rows`) of an input read whole,
/// whose first row is at table position `first`; batches left empty are
/// dropped.
pub(super) fn select_positions(
    input: BoxStream<'static, Result<RecordBatch, Error>>,
    positions: Option<Positions>,
    first: u64,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    let Some(positions) = positions else {
        return input;
    };
    input
        .scan(first, move |position, batch| {
            let selected = batch.and_then(|batch| {
                let keep = BooleanArray::from(positions.keep_mask(*position, batch.num_rows()));
                *position += batch.num_rows() as u64;
                filter_record_batch(&batch, &keep).map_err(|e| Error::engine("selecting rows", e))
            });
            futures::future::ready(Some(selected))
        })
        .try_filter(|b| futures::future::ready(b.num_rows() > 0))
        .boxed()
}
