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
use crate::registry::{ManifestIndex, Registry};
use arrow::array::{ArrayRef, BinaryBuilder, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

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
/// its run of entries, read from the manifest's blocks as they are sent,
/// selected, then projected.
pub(super) fn read(
    engine: &Engine,
    table: &Table,
    ticket: &Ticket,
    query: &Query,
    table_schema: &SchemaRef,
    name: &str,
    stats: Arc<ReadStats>,
) -> Result<Execution, Error> {
    let index = table.index.clone().expect("the manifest table has an index");
    let base_schema = schema(false);
    let base = prepare(&base_schema, &Query { columns: vec![], ..query.clone() }, name)?;
    let (start, end) = match (ticket.entry_start, ticket.entry_end) {
        (0, 0) => (0, index.entries),
        (s, e) if s < e && e <= index.entries => (s, e),
        (s, e) => {
            return Err(Error::invalid(format!(
                "bad ticket: entries [{s}, {e}) of {name}, which has {} entries",
                index.entries
            )));
        }
    };
    stats.add(end - start, 0);
    let entries = run(engine.registry(), index, start..end);
    // Rows are chosen on the entry columns, so `content=true` downloads only
    // the selected files and stops at the limit. Sampling hashes each
    // entry's position in the whole manifest.
    // Contents are downloaded only when the `content` column is asked for.
    let read_content = query.content && (query.columns.is_empty() || query.columns.iter().any(|c| c == "content"));
    let (entries, kept) = match read_content {
        true => {
            let kept: Arc<Mutex<HashMap<String, Entry>>> = Default::default();
            let keep = kept.clone();
            let entries = entries
                .map_ok(move |block| {
                    let mut keep = keep.lock().expect("not poisoned");
                    keep.extend(block.iter().map(|e| (e.logical_key.clone(), e.clone())));
                    block
                })
                .boxed();
            (entries, Some(kept))
        }
        false => (entries, None),
    };
    let selected = select_positions(rows(entries), Positions::of(query)?, start);
    let input = planner::rows_table(base_schema, selected)?;
    let shape = Shape { columns: &base.columns, filter: base.filter.as_ref(), limit: query.limit };
    let plan = planner::plan(&engine.context().state(), input, &shape)?;
    let label = format!("the manifest of {name}");
    let chosen = planner::execute(&plan, engine.task_ctx(), format!("reading {label}"))?;
    let chosen = match query.content {
        true => with_content(chosen, kept, engine.registry().clone()),
        false => chosen,
    };
    let projector = Projector::new(table_schema, &query.columns, name)?;
    let out_schema = projector.schema().clone();
    let batches = chosen.and_then(move |b| futures::future::ready(projector.project(&b))).boxed();
    let batches = batches.map_err(move |e| e.in_table("", &label)).boxed();
    Ok(Execution { schema: out_schema, batches, stats })
}

/// Entries `[start, end)` of an indexed manifest, a block at a time (the
/// first and last blocks trimmed to the run).
fn run(
    registry: &Registry,
    index: Arc<ManifestIndex>,
    entries: Range<u64>,
) -> BoxStream<'static, Result<Vec<Entry>, Error>> {
    let blocks = index.blocks_of(entries.clone());
    let mut first = index.first_entry(blocks.start);
    registry
        .read_blocks(index, blocks)
        .map_err(Error::from)
        .map_ok(move |block| {
            let (from, len) = (first, block.len() as u64);
            first += len;
            let skip = entries.start.saturating_sub(from).min(len) as usize;
            let take = (entries.end.min(from + len).saturating_sub(from)) as usize;
            block.into_iter().take(take).skip(skip).collect()
        })
        .try_filter(|block: &Vec<Entry>| futures::future::ready(!block.is_empty()))
        .boxed()
}

/// The entry columns of the manifest table, a batch per block of entries.
fn rows(entries: BoxStream<'static, Result<Vec<Entry>, Error>>) -> BoxStream<'static, Result<RecordBatch, Error>> {
    let base_schema = schema(false);
    entries
        .and_then(move |slice| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.logical_key.as_str()))),
                Arc::new(UInt64Array::from_iter_values(slice.iter().map(|e| e.size))),
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.hash.kind.as_str()))),
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.hash.value.as_str()))),
                Arc::new(StringArray::from_iter_values(slice.iter().map(|e| e.meta.to_string()))),
            ];
            futures::future::ready(
                RecordBatch::try_new(base_schema.clone(), columns)
                    .map_err(|e| Error::engine("building the manifest table", e)),
            )
        })
        .boxed()
}

/// Bytes of file contents one batch carries, about (a batch ends after the
/// entry that reaches it): memory per stream stays bounded whatever the
/// rows' batches hold.
const BATCH_CONTENT_BYTES: u64 = 64 << 20;

/// The largest entry whose bytes `content=true` puts in a row; larger files
/// are read with `sheaf install` or as tables of their own.
pub const MAX_CONTENT_BYTES: u64 = 256 << 20;

/// The chosen rows with each entry's bytes added as `content`, cut into
/// batches of about [`BATCH_CONTENT_BYTES`]; `kept` holds the run's entries
/// by logical key, filled as the run is read. Without `kept` (the content
/// column is not among the columns asked for) nothing is downloaded and the
/// column is empty.
fn with_content(
    chosen: BoxStream<'static, Result<RecordBatch, Error>>,
    kept: Option<Arc<Mutex<HashMap<String, Entry>>>>,
    registry: Registry,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    struct State {
        chosen: BoxStream<'static, Result<RecordBatch, Error>>,
        kept: Option<Arc<Mutex<HashMap<String, Entry>>>>,
        registry: Registry,
        /// A batch of chosen rows and its first row not sent yet.
        pending: Option<(RecordBatch, usize)>,
    }
    let state = State { chosen, kept, registry, pending: None };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let (batch, at) = match state.pending.take() {
            Some(pending) => pending,
            None => match state.chosen.next().await? {
                Ok(batch) => (batch, 0),
                Err(e) => return Some((Err(e), None)),
            },
        };
        match next_content_batch(state.kept.as_deref(), &state.registry, &batch, at).await {
            Ok((out, end)) => {
                state.pending = (end < batch.num_rows()).then_some((batch, end));
                Some((Ok(out), Some(state)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// Rows `at..` of `batch`, as many as about [`BATCH_CONTENT_BYTES`] of
/// contents take (at least one), with their `content` (empty without
/// `kept`: all the rows at once); and the row after them.
async fn next_content_batch(
    kept: Option<&Mutex<HashMap<String, Entry>>>,
    registry: &Registry,
    batch: &RecordBatch,
    at: usize,
) -> Result<(RecordBatch, usize), Error> {
    let keys = batch.column(0).as_any().downcast_ref::<StringArray>().expect("logical_key is Utf8");
    let mut content = BinaryBuilder::new();
    let (mut end, mut bytes) = (at, 0u64);
    while end < batch.num_rows() && (end == at || bytes < BATCH_CONTENT_BYTES || kept.is_none()) {
        if let Some(kept) = kept {
            // Taken out: each entry is chosen once.
            let entry = kept.lock().expect("not poisoned").remove(keys.value(end)).expect("key from this run");
            if entry.size > MAX_CONTENT_BYTES {
                return Err(Error::Exhausted {
                    context: format!("content of {}", entry.logical_key),
                    source: datafusion::error::DataFusionError::ResourcesExhausted(format!(
                        "{} bytes, over the {MAX_CONTENT_BYTES} a row of the manifest table may carry; read the \
                         file with `sheaf install` or as a table",
                        entry.size
                    )),
                });
            }
            let data = sources::read_whole(registry, &entry).await?;
            bytes += data.len() as u64;
            content.append_value(&data);
        } else {
            content.append_value(b"");
        }
        end += 1;
    }
    let mut columns = batch.slice(at, end - at).columns().to_vec();
    columns.push(Arc::new(content.finish()));
    let out =
        RecordBatch::try_new(schema(true), columns).map_err(|e| Error::engine("building the manifest table", e))?;
    Ok((out, end))
}
