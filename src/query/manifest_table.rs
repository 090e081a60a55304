//! The manifest table: a revision's entries as rows (logical_key, size,
//! hash_type, hash, meta, and with `content=true` the bytes), in runs of
//! entries per endpoint. Rows are chosen on the entry columns before any
//! content is fetched.

use super::Error;
use super::engine::{Engine, Execution, ReadStats};
use super::planner::{self, Shape};
use super::prepare::prepare;
use super::rows::Positions;
use super::shape::{Projector, select_positions};
use super::sources;
use super::table::Table;
use crate::manifest::Entry;
use crate::proto::{Query, Ticket};
use crate::registry::Registry;
use arrow::array::{ArrayRef, BinaryBuilder, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::Arc;

/// The manifest table's schema; `content` adds the entries' bytes.
pub(super) fn schema(with_content: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("logical_key", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("hash_type", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
        Field::new("meta", DataType::Utf8, false),
    ];
    if with_content {
        fields.push(Field::new("content", DataType::Binary, false));
    }
    Arc::new(Schema::new(fields))
}

/// Executes a ticket of the manifest table of `table` (named `name`):
/// its run of entries, selected, then projected.
pub(super) fn read(
    engine: &Engine,
    table: &Table,
    ticket: &Ticket,
    query: &Query,
    table_schema: &SchemaRef,
    name: &str,
    stats: Arc<ReadStats>,
) -> Result<Execution, Error> {
    let base_schema = schema(false);
    let base = prepare(&base_schema, &Query { columns: vec![], ..query.clone() }, name)?;
    let (start, end) = match (ticket.entry_start, ticket.entry_end) {
        (0, 0) => (0, table.entries.len()),
        (s, e) if s < e && e <= table.entries.len() as u64 => (s as usize, e as usize),
        (s, e) => {
            return Err(Error::invalid(format!(
                "bad ticket: entries [{s}, {e}) of {name}, which has {} entries",
                table.entries.len()
            )));
        }
    };
    stats.add((end - start) as u64, 0);
    let entries = &table.entries[start..end];
    // Rows are chosen on the entry columns, so `content=true` downloads only
    // the selected files and stops at the limit. Sampling hashes each
    // entry's position in the whole manifest.
    let selected = select_positions(rows(entries), Positions::of(query)?, start as u64);
    let input = planner::rows_table(base_schema, selected)?;
    let shape = Shape { columns: &base.columns, filter: base.filter.as_ref(), limit: query.limit };
    let plan = planner::plan(&engine.context().state(), input, &shape)?;
    let label = format!("the manifest of {name}");
    let chosen = planner::execute(&plan, engine.task_ctx(), format!("reading {label}"))?;
    let chosen = match query.content {
        true => with_content(chosen, entries, engine.registry().clone()),
        false => chosen,
    };
    let projector = Projector::new(table_schema, &query.columns, name)?;
    let out_schema = projector.schema().clone();
    let batches = chosen.and_then(move |b| futures::future::ready(projector.project(&b))).boxed();
    let batches = batches.map_err(move |e| e.in_table("", &label)).boxed();
    Ok(Execution { schema: out_schema, batches, stats })
}

/// The entry columns of the manifest table, in batches of 1024 entries.
fn rows(entries: &[Entry]) -> BoxStream<'static, Result<RecordBatch, Error>> {
    let base_schema = schema(false);
    let entries: Arc<Vec<Entry>> = Arc::new(entries.to_vec());
    let chunks: Vec<(usize, usize)> =
        (0..entries.len()).step_by(1024).map(|s| (s, (s + 1024).min(entries.len()))).collect();
    stream::iter(chunks)
        .map(move |(start, end)| {
            let slice = &entries[start..end];
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.logical_key.as_str()))),
                Arc::new(UInt64Array::from_iter_values(slice.iter().map(|e| e.size))),
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.hash.kind.as_str()))),
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.hash.value.as_str()))),
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.meta.to_string()))),
            ];
            RecordBatch::try_new(base_schema.clone(), columns)
                .map_err(|e| Error::engine("building the manifest table", e))
        })
        .boxed()
}

/// The chosen rows with each entry's bytes added as `content`.
fn with_content(
    chosen: BoxStream<'static, Result<RecordBatch, Error>>,
    entries: &[Entry],
    registry: Registry,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    let by_key: Arc<HashMap<String, Entry>> =
        Arc::new(entries.iter().map(|e| (e.logical_key.clone(), e.clone())).collect());
    chosen
        .and_then(move |batch| {
            let registry = registry.clone();
            let by_key = by_key.clone();
            async move {
                let keys = batch.column(0).as_any().downcast_ref::<StringArray>().expect("logical_key is Utf8").clone();
                let mut content = BinaryBuilder::new();
                for key in keys.iter().flatten() {
                    let entry = by_key.get(key).expect("key from this manifest");
                    let data = sources::read_whole(&registry, entry).await?;
                    content.append_value(&data);
                }
                let mut columns = batch.columns().to_vec();
                columns.push(Arc::new(content.finish()));
                RecordBatch::try_new(schema(true), columns).map_err(|e| Error::engine("building the manifest table", e))
            }
        })
        .boxed()
}
