//! Parquet scans: a ticket's slices become plans of DataFusion scans
//! (sampled rows selected in the access plan; projection, filter and limit
//! planned by [`super::planner`]), decoded on two tasks for plain reads.

use super::engine::{Engine, ReadStats};
use super::pinned_table::PinnedTable;
use super::planner::{self, Shape};
use super::prepare::Prepared;
use super::reader::PinnedReaders;
use super::rows::Positions;
use super::table::Table;
use super::{Error, limits};
use crate::proto::{Query, Slice};
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::physical_plan::ExecutionPlan;
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use parquet::file::metadata::RowGroupMetaData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

impl Engine {
    /// The batches of a ticket's Parquet slices, in table order.
    pub(super) async fn parquet_stream(
        &self,
        table: &Table,
        slices: &[Slice],
        query: &Query,
        file_schema: SchemaRef,
        prepared: &Prepared,
        stats: &Arc<ReadStats>,
    ) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> {
        let (state, ctx) = (self.context().state(), self.task_ctx());
        let positions = Positions::of(query)?;
        let mut streams = Vec::with_capacity(slices.len());
        // A ticket's slices are in table order and never overlap, so a
        // forged ticket cannot make one read repeat the same rows.
        let mut previous: Option<(usize, u32)> = None;
        for slice in slices {
            let part = table.entries.iter().position(|e| e.logical_key == slice.logical_key).ok_or_else(|| {
                Error::invalid(format!(
                    "bad ticket: {} is not a part of {}",
                    limits::excerpt(&slice.logical_key),
                    table.path
                ))
            })?;
            let entry = &table.entries[part];
            let pinned = self.pinned_part(entry).await?;
            let row_groups = pinned.metadata.row_groups();
            if slice.row_group_end as usize > row_groups.len() || slice.row_group_start >= slice.row_group_end {
                return Err(Error::invalid(format!("bad ticket: row groups out of range for {}", entry.logical_key)));
            }
            if previous.is_some_and(|(p, end)| (part, slice.row_group_start) < (p, end)) {
                return Err(Error::invalid(format!(
                    "bad ticket: its slices of {} overlap or are out of table order",
                    table.path
                )));
            }
            previous = Some((part, slice.row_group_end));
            let access = access_plan(row_groups, slice, positions.as_ref());
            let file = PartitionedFile::new(pinned.name.clone(), entry.size).with_extension(access);
            let object = (pinned.store.clone(), pinned.path.clone());
            let halves_of = pinned.metadata.clone();
            let readers = Arc::new(PinnedReaders::new([pinned]));
            let input: Arc<dyn TableProvider> =
                Arc::new(PinnedTable::new(file_schema.clone(), readers, vec![file], None));
            let shape = Shape { columns: &prepared.columns, filter: prepared.filter.as_ref(), limit: query.limit };
            // A plain read (no filter, no limit) decodes its columns in two
            // halves on two tasks, so one stream uses both cores; the halves
            // see the same row groups and selection, hence the same batches.
            let halves = match shape.filter.is_none() && shape.limit.is_none() {
                true => split_columns(&prepared.column_indices, &halves_of, slice),
                false => None,
            };
            let what = format!("reading {}", entry.logical_key);
            let plans = match &halves {
                None => vec![planner::plan(&state, input, &shape)?],
                Some((a, b)) => [a, b]
                    .into_iter()
                    .map(|half| {
                        let columns: Vec<String> = half.iter().map(|&c| file_schema.field(c).name().clone()).collect();
                        planner::plan(&state, input.clone(), &Shape { columns: &columns, filter: None, limit: None })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let mut scans = Vec::with_capacity(plans.len());
            for plan in &plans {
                let s = planner::execute(plan, ctx.clone(), what.clone())?;
                scans.push(storage_or_data(s, object.clone(), (entry.logical_key.clone(), entry.size)));
            }
            let batches = match halves {
                None => scans.pop().expect("one scan"),
                Some((a, b)) => {
                    let second = read_ahead(scans.pop().expect("two scans"));
                    let first = read_ahead(scans.pop().expect("two scans"));
                    zip_columns(first, second, &prepared.column_indices, &a, &b)
                }
            };
            streams.push(accounted(batches, plans, stats.clone()));
        }
        let batches = stream::iter(streams).flatten().boxed();
        // Each slice's plan stops at the limit; the ticket's rows stop there
        // too, and the slices after it are never opened.
        Ok(match query.limit {
            Some(limit) => limited(batches, limit),
            None => batches,
        })
    }
}

/// The first `limit` rows of `batches`; the input is not polled past them.
fn limited(
    batches: BoxStream<'static, Result<RecordBatch, Error>>,
    limit: u64,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    stream::unfold((batches, limit), |(mut batches, remaining)| async move {
        if remaining == 0 {
            return None;
        }
        let item = batches.next().await?;
        let (item, remaining) = match item {
            Ok(b) => {
                let n = (b.num_rows() as u64).min(remaining);
                (Ok(b.slice(0, n as usize)), remaining - n)
            }
            Err(e) => (Err(e), 0),
        };
        Some((item, (batches, remaining)))
    })
    .boxed()
}

/// The row groups of `slice` to read, and under a sample or a `rows`
/// selection the rows of each (row groups with none selected are skipped).
fn access_plan(row_groups: &[RowGroupMetaData], slice: &Slice, positions: Option<&Positions>) -> ParquetAccessPlan {
    let mut access = ParquetAccessPlan::new_none(row_groups.len());
    let mut first = slice.first_row;
    let (start, end) = (slice.row_group_start as usize, slice.row_group_end as usize);
    for (rg, group) in row_groups.iter().enumerate().take(end).skip(start) {
        let rows = group.num_rows() as usize;
        match positions {
            None => access.set(rg, RowGroupAccess::Scan),
            Some(p) => {
                let selection = p.row_selection(first, rows);
                if selection.selects_any() {
                    access.set(rg, RowGroupAccess::Selection(selection));
                }
            }
        }
        first += rows as u64;
    }
    access
}

/// A scan's batches with its errors classified. Parquet reports some storage
/// failures as text; on an engine, storage or decoding error the object
/// itself is checked, to tell data from storage, name what storage refused
/// and tell a blob of the wrong size (DATA_LOSS) from one that cannot be read.
fn storage_or_data(
    batches: BoxStream<'static, Result<RecordBatch, Error>>,
    (store, path): (Arc<dyn object_store::ObjectStore>, object_store::path::Path),
    (key, size): (String, u64),
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    batches
        .or_else(move |e| {
            let (store, path, key) = (store.clone(), path.clone(), key.clone());
            async move {
                match e {
                    Error::Engine { .. } | Error::Storage { .. } | Error::Corrupt { .. } => {
                        let what = format!("data of {key}");
                        Err(super::sources::checked_object(store.as_ref(), &path, what, size).await.err().unwrap_or(e))
                    }
                    other => Err(other),
                }
            }
        })
        .boxed()
}

/// A slice's batches, counted as they pass; once they have ended, the
/// plans' scans add the rows they decoded that did not come out (dropped
/// by the pushed-down filter, or read ahead of a limit), and the bytes
/// fetched.
fn accounted(
    batches: BoxStream<'static, Result<RecordBatch, Error>>,
    plans: Vec<Arc<dyn ExecutionPlan>>,
    stats: Arc<ReadStats>,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    let counted = stats.clone();
    let delivered = Arc::new(AtomicU64::new(0));
    let seen = delivered.clone();
    let account = stream::once(async move {
        let (mut rows, mut bytes) = (0, 0);
        for plan in &plans {
            let (r, b) = planner::scanned(plan);
            rows += r;
            bytes += b;
        }
        // Two halves decode the same rows: count them once.
        let rows = rows / plans.len().max(1) as u64;
        stats.add(rows.saturating_sub(seen.load(Ordering::Relaxed)), bytes);
        None
    })
    .filter_map(futures::future::ready);
    batches
        .inspect_ok(move |b| {
            counted.add(b.num_rows() as u64, 0);
            delivered.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
        })
        .chain(account)
        .boxed()
}

/// Runs `batches` on its own task, up to `READ_AHEAD` items ahead of the
/// consumer. Dropping the returned stream (say, the client went away) stops
/// the task at its next step. The task starts when the returned stream is
/// first polled. Only an explicit end is an end: a panic becomes an error
/// item, and a task that vanishes without finishing ends the stream with an
/// error, so a truncated stream never looks complete.
pub fn read_ahead<T: Send + 'static>(
    mut batches: BoxStream<'static, Result<T, Error>>,
) -> BoxStream<'static, Result<T, Error>> {
    const READ_AHEAD: usize = 4;
    stream::once(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = std::panic::AssertUnwindSafe(batches.next()).catch_unwind() => next,
                };
                let item = match next {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(panic) => {
                        let text = super::error::panic_message(panic.as_ref());
                        tracing::error!(panic = ?text, "a read-ahead task panicked");
                        Err(Error::Panicked("reading".into()))
                    }
                };
                let last = item.is_err();
                if tx.send(Some(item)).await.is_err() || last {
                    return;
                }
            }
            let _ = tx.send(None).await;
        });
        let vanished = async { Error::Panicked("reading (the task ended without finishing)".into()) };
        super::channel::until_end(rx, vanished)
    })
    .flatten()
    .boxed()
}

/// Splits the columns to read into two halves of about equal compressed size
/// in the slice's row groups, keeping their order. `None` when splitting
/// does not pay or cannot be done: fewer than two columns, or nested columns
/// (whose Parquet leaves do not map one to one onto fields).
fn split_columns(
    needed: &[usize],
    metadata: &parquet::file::metadata::ParquetMetaData,
    slice: &Slice,
) -> Option<(Vec<usize>, Vec<usize>)> {
    let fields = metadata.file_metadata().schema_descr().root_schema().get_fields().len();
    if needed.len() < 2 || metadata.file_metadata().schema_descr().num_columns() != fields {
        return None;
    }
    let size = |col: usize| -> u64 {
        (slice.row_group_start as usize..slice.row_group_end as usize)
            .map(|rg| metadata.row_group(rg).column(col).compressed_size().max(0) as u64)
            .sum()
    };
    let sizes: Vec<u64> = needed.iter().map(|&c| size(c)).collect();
    let total: u64 = sizes.iter().sum();
    let mut acc = 0;
    let mut cut = needed.len() - 1;
    for (k, s) in sizes.iter().enumerate().take(needed.len() - 1) {
        acc += s;
        if acc * 2 >= total {
            cut = k + 1;
            break;
        }
    }
    Some((needed[..cut].to_vec(), needed[cut..].to_vec()))
}

/// Joins the batches of two scans of the same rows over different columns
/// back into `columns` order.
fn zip_columns(
    first: BoxStream<'static, Result<RecordBatch, Error>>,
    second: BoxStream<'static, Result<RecordBatch, Error>>,
    columns: &[usize],
    a: &[usize],
    b: &[usize],
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    // For each column: (which half, position in it).
    let order: Vec<(usize, usize)> = columns
        .iter()
        .map(|c| match a.iter().position(|x| x == c) {
            Some(j) => (0, j),
            None => (1, b.iter().position(|x| x == c).expect("every needed column is in a half")),
        })
        .collect();
    let schema_fields = Arc::new(order);
    stream::unfold((first, second, false), move |(mut first, mut second, done)| {
        let order = schema_fields.clone();
        async move {
            if done {
                return None;
            }
            // Both at once: each half's task starts when first polled, so
            // awaiting one before the other would fetch and decode the
            // second half's first row group only after the first half's.
            let joined = match futures::future::join(first.next(), second.next()).await {
                (None, None) => return None,
                (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
                (Some(Ok(x)), Some(Ok(y))) if x.num_rows() == y.num_rows() => {
                    let halves = [&x, &y];
                    let columns: Vec<ArrayRef> = order.iter().map(|&(h, j)| halves[h].column(j).clone()).collect();
                    let fields: Vec<Field> = order.iter().map(|&(h, j)| halves[h].schema().field(j).clone()).collect();
                    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                        .map_err(|e| Error::engine("joining column halves", e))
                }
                _ => Err(Error::internal("joining column halves", "the two halves of a scan returned different rows")),
            };
            let stop = joined.is_err();
            Some((joined, (first, second, stop)))
        }
    })
    .boxed()
}
