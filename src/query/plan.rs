//! Planning: a dataset URI becomes a [`Plan`]: the revision resolved, the
//! request checked against the table, and the table cut into endpoints
//! (runs of Parquet row groups, or of manifest entries), each with a
//! self-contained ticket.

use super::engine::{Engine, Layout};
use super::prepare::prepare;
use super::split::{WeightedCut, split_even};
use super::table::Format;
use super::{DatasetUri, Error, rows, sample};
use crate::manifest::Entry;
use crate::proto::{Query, Slice, Ticket};
use crate::registry::ManifestIndex;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use std::sync::Arc;

/// Uncompressed bytes per endpoint when the client does not ask for a
/// partition count: large tables spread over several endpoints.
const TARGET_PARTITION_BYTES: u64 = 64 * 1024 * 1024;
/// Entries per endpoint of the manifest table read without contents.
const MANIFEST_ROWS_PER_PARTITION: usize = 1_000_000;
/// Planning the manifest table by content size reads every block in one
/// pass when there are at most this many blocks per run wanted, and else
/// only the blocks in which a run may end, one ranged read each.
const READ_ALL_BLOCKS_RATIO: usize = 8;

/// A planned read: what GetFlightInfo returns.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The URI with its revision pinned to the resolved top hash.
    pub uri: DatasetUri,
    /// The resolved revision.
    pub top_hash: String,
    /// Schema of the batches every endpoint returns.
    pub schema: SchemaRef,
    /// Rows of the result: exact for plain reads and exact-count samples,
    /// an estimate under a fractional sample, `None` under a filter.
    pub total_rows: Option<u64>,
    /// Uncompressed bytes of the columns read (before filters), when known.
    pub total_bytes: Option<u64>,
    /// One ticket per endpoint, in canonical order.
    pub tickets: Vec<Ticket>,
    /// Per endpoint, the region of the table it covers, when known.
    pub regions: Vec<Option<Region>>,
}

/// The rows of the table an endpoint covers, before filters and sampling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// Position of its first row in the whole table.
    pub first_row: u64,
    /// Rows it covers.
    pub rows: u64,
    /// Under a `rows` selection, how many of them are selected.
    pub selected: Option<u64>,
}

impl Plan {
    /// The exact rows endpoint `i`'s stream returns, when the plan knows
    /// them: a read that drops no rows by filter or sample fraction returns
    /// its region's rows (those its `rows` ranges select); a read of one
    /// endpoint returns the plan's total (under a limit or `sample_rows`
    /// too). `None` when only reading tells.
    pub fn exact_rows(&self, i: usize) -> Option<u64> {
        let q = &self.uri.query;
        if q.filter.is_some() || q.sample.is_some() {
            return None;
        }
        if self.tickets.len() == 1 {
            return self.total_rows;
        }
        if q.limit.is_some() || q.sample_rows.is_some() {
            return None;
        }
        let region = self.regions.get(i).copied().flatten()?;
        Some(region.selected.unwrap_or(region.rows))
    }
}

impl Engine {
    /// Plans a read: resolves the revision, checks columns and filter, and
    /// cuts the table into endpoints.
    pub async fn plan(&self, uri: &DatasetUri) -> Result<Plan, Error> {
        let top_hash = self.registry.resolve(&uri.package, &uri.revision).await?;
        let name = format!("{}@{}", uri.package, &top_hash[..12]);
        let table = self.table(&top_hash, &uri.path, &name).await?;
        let (schema, layout) = self.describe(&table, uri.query.content).await?;
        let table_name =
            if uri.path.is_empty() { format!("the manifest of {name}") } else { format!("{} in {name}", uri.path) };
        let q = &uri.query;
        let mut query = Query {
            columns: q.columns.clone(),
            filter: q.filter.clone().unwrap_or_default(),
            limit: q.limit,
            sample_threshold: None,
            seed: q.seed,
            compression: q.compression.as_str().to_owned(),
            content: q.content,
            rows: rows::to_proto(&q.rows),
        };
        let prepared = prepare(&schema, &query, &table_name)?;
        // Size Parquet endpoints and total_bytes by the columns actually read.
        let layout = match layout {
            Layout::Parquet(parts) => Layout::Parquet(self.projected_sizes(&table, parts, &prepared.needed).await?),
            other => other,
        };
        let table_rows = match &layout {
            Layout::Parquet(parts) => Some(parts.iter().flatten().map(|(r, _)| r).sum::<u64>()),
            Layout::Sequential(Some(rows)) => Some(*rows),
            // Whole-file tables are counted only when an exact sample needs it.
            Layout::Sequential(None) if q.sample_rows.is_some() => Some(self.count_rows(&table, schema.clone()).await?),
            Layout::Sequential(None) => None,
        };
        query.sample_threshold = match (q.sample, q.sample_rows) {
            (Some(f), _) => sample::threshold_for_fraction(f),
            (None, Some(n)) => sample::threshold_for_count(q.seed, table_rows.expect("counted for sample_rows"), n),
            (None, None) => None,
        };
        // Rows the `rows` ranges keep of the table, before filter and sample.
        let selected_rows = match q.rows.is_empty() {
            true => table_rows,
            false => table_rows.map(|t| rows::count_in(&q.rows, 0, t)),
        };
        let total_rows = result_rows(selected_rows, q);
        let base = Ticket {
            package: uri.package.to_string(),
            top_hash: top_hash.clone(),
            path: table.path.clone(),
            query: Some(query),
            slices: vec![],
            partition: 0,
            entry_start: 0,
            entry_end: 0,
            signature: Default::default(),
        };
        // The manifest table is cut by entry: into runs of equal counts, or
        // balanced by size when contents are read.
        let runs = match &table.index {
            Some(index) if q.limit.is_none() && q.content => Runs::Cut(self.size_runs(index, q.partitions).await?),
            Some(index) => Runs::Even(index.entries as usize),
            None => Runs::Even(0),
        };
        let (mut tickets, total_bytes) = endpoints(&layout, &table.entries, runs, table.format, q, base);
        let regions = tickets
            .iter()
            .map(|t| {
                region(t, &layout, &table.entries, table_rows).map(|(first_row, rows)| Region {
                    first_row,
                    rows,
                    selected: (!q.rows.is_empty()).then(|| rows::count_in(&q.rows, first_row, rows)),
                })
            })
            .collect::<Vec<Option<Region>>>();
        // Each ticket carries only the ranges inside its own region, so the
        // endpoints together are no larger than the request.
        if !q.rows.is_empty() {
            for (ticket, region) in tickets.iter_mut().zip(&regions) {
                if let (Some(r), Some(query)) = (region, ticket.query.as_mut()) {
                    let own = rows::clip(&q.rows, r.first_row, r.rows);
                    // An endpoint holding no selected row keeps a range outside
                    // its region, which selects nothing there (no ranges at
                    // all would mean every row).
                    query.rows = rows::to_proto(if own.is_empty() { &q.rows[..1] } else { &own });
                }
            }
        }
        Ok(Plan {
            uri: uri.pinned(&top_hash),
            top_hash,
            schema: prepared.projector.schema().clone(),
            total_rows,
            total_bytes,
            tickets,
            regions,
        })
    }

    /// The manifest's entries cut into runs of about equal content size:
    /// `partitions` of them, or about `TARGET_PARTITION_BYTES` each. The
    /// cut is the one every entry's size gives, but the index knows each
    /// block's entries and bytes, so only the blocks in which a run may end
    /// are read (a few blocks of 1,024 entries for a million tiny files, not
    /// the whole manifest); when most blocks are needed, all are read in one
    /// pass.
    async fn size_runs(
        &self,
        index: &Arc<ManifestIndex>,
        partitions: Option<u32>,
    ) -> Result<Vec<(usize, usize)>, Error> {
        let total = index.blocks.iter().map(|b| b.bytes).sum::<u64>();
        let count = partitions.map_or(total.div_ceil(TARGET_PARTITION_BYTES) as usize, |n| n as usize);
        let mut cut = WeightedCut::new(index.entries as usize, total, count);
        let sizes = |block: Vec<Entry>| block.iter().map(|e| e.size).collect::<Vec<u64>>();
        if count.saturating_mul(READ_ALL_BLOCKS_RATIO) >= index.blocks.len() {
            let mut blocks = self.registry.read_blocks(index.clone(), 0..index.blocks.len());
            while let Some(block) = blocks.try_next().await? {
                cut.feed(&sizes(block));
            }
            return Ok(cut.finish());
        }
        for (b, block) in index.blocks.iter().enumerate() {
            let entries = block.entries as usize;
            if cut.passes(entries, block.bytes) {
                cut.skip(entries, block.bytes);
                continue;
            }
            let mut read = self.registry.read_blocks(index.clone(), b..b + 1);
            while let Some(block) = read.try_next().await? {
                cut.feed(&sizes(block));
            }
        }
        Ok(cut.finish())
    }
}

/// Rows of the result: exact for plain reads and exact-count samples, an
/// estimate under a fractional sample, unknown under a filter (or an exact
/// count sample of a `rows` selection). `table_rows` are the rows selected
/// by `rows` when it is given.
fn result_rows(table_rows: Option<u64>, q: &super::QuerySpec) -> Option<u64> {
    if q.filter.is_some() || (!q.rows.is_empty() && q.sample_rows.is_some()) {
        return None;
    }
    let rows = match (table_rows, q.sample, q.sample_rows) {
        (Some(t), Some(f), _) => Some((t as f64 * f).round() as u64),
        (Some(t), None, Some(n)) => Some(n.min(t)),
        (t, _, _) => t,
    };
    match (rows, q.limit) {
        (Some(t), Some(l)) => Some(t.min(l)),
        (rows, _) => rows,
    }
}

/// How the manifest table's entries are cut into endpoints.
enum Runs {
    /// This many entries, in runs of equal counts.
    Even(usize),
    /// Runs already cut (by content size).
    Cut(Vec<(usize, usize)>),
}

/// One ticket per endpoint, and the bytes read when known. The manifest
/// table is cut into `runs` of entries; Parquet into runs
/// of row groups. A limit is global: one endpoint reads in order and stops
/// early.
fn endpoints(
    layout: &Layout,
    entries: &[Entry],
    runs: Runs,
    format: Format,
    q: &super::QuerySpec,
    base: Ticket,
) -> (Vec<Ticket>, Option<u64>) {
    match layout {
        // The manifest table: runs of entries, balanced by content size
        // when contents are read. A limit is global: one endpoint.
        Layout::Sequential(_) if format == Format::Manifest && q.limit.is_none() => {
            let runs = match runs {
                Runs::Cut(runs) => runs,
                Runs::Even(n) => {
                    split_even(n, q.partitions.map_or(n.div_ceil(MANIFEST_ROWS_PER_PARTITION), |n| n as usize))
                }
            };
            let tickets = runs
                .into_iter()
                .enumerate()
                .map(|(i, (start, end))| Ticket {
                    partition: i as u32,
                    entry_start: start as u64,
                    entry_end: end as u64,
                    ..base.clone()
                })
                .collect();
            (tickets, None)
        }
        Layout::Sequential(_) => (vec![base], None),
        Layout::Parquet(parts) => {
            // A limit is global: one endpoint reads in order and stops early.
            let wanted = if q.limit.is_some() { Some(1) } else { q.partitions };
            let groups = partition(entries, parts, wanted, &q.rows);
            let bytes = parts.iter().flatten().map(|(_, b)| b).sum();
            let tickets = groups
                .into_iter()
                .enumerate()
                .map(|(i, slices)| Ticket { slices, partition: i as u32, ..base.clone() })
                .collect();
            (tickets, Some(bytes))
        }
    }
}

/// The rows of the table endpoint `t` covers, before filters and sampling:
/// `(first row, rows)`, a contiguous span, when known.
fn region(t: &Ticket, layout: &Layout, entries: &[Entry], table_rows: Option<u64>) -> Option<(u64, u64)> {
    match layout {
        Layout::Sequential(_) if t.entry_end > 0 => Some((t.entry_start, t.entry_end - t.entry_start)),
        Layout::Sequential(rows) => rows.or(table_rows).map(|r| (0, r)),
        Layout::Parquet(parts) => {
            // The span from the first slice's first row to the last slice's
            // end: contiguous, also when a `rows` selection skips row groups
            // between slices (they hold no selected row).
            let first = t.slices.first().map_or(0, |s| s.first_row);
            let end = t.slices.last().map_or(0, |s| {
                let part = entries.iter().position(|e| e.logical_key == s.logical_key).expect("a part");
                let rows: u64 =
                    parts[part][s.row_group_start as usize..s.row_group_end as usize].iter().map(|(r, _)| r).sum();
                s.first_row + rows
            });
            Some((first, end - first))
        }
    }
}

/// Cuts Parquet row groups into endpoints: `wanted` of them (as equal in rows
/// as row groups allow) or, by default, about `TARGET_PARTITION_BYTES` each.
/// Each endpoint's slices are contiguous and in table order. Under a `rows`
/// selection only the row groups holding selected rows are read, balanced by
/// the rows selected.
fn partition(
    parts: &[Entry],
    layout: &[Vec<(u64, u64)>],
    wanted: Option<u32>,
    selection: &[(u64, u64)],
) -> Vec<Vec<Slice>> {
    // Flatten: (part, row group, first row, rows weighed, bytes before, bytes).
    let mut groups = Vec::new();
    let (mut first, mut offset, mut weighed) = (0u64, 0u64, 0u64);
    for (p, rgs) in layout.iter().enumerate() {
        for (g, &(rows, bytes)) in rgs.iter().enumerate() {
            let chosen = if selection.is_empty() { rows } else { rows::count_in(selection, first, rows) };
            if chosen > 0 || selection.is_empty() {
                // Weigh a partly selected row group by its share of the bytes.
                let bytes = if rows > 0 { (bytes as u128 * chosen as u128 / rows as u128) as u64 } else { bytes };
                groups.push((p, g, first, weighed, chosen, offset, bytes));
                weighed += chosen;
                offset += bytes;
            }
            first += rows;
        }
    }
    let (total_rows, total_bytes) = (weighed, offset);
    let count = match wanted {
        Some(n) => (n as usize).min(groups.len().max(1)),
        None => (total_bytes.div_ceil(TARGET_PARTITION_BYTES) as usize).clamp(1, groups.len().max(1)),
    };
    let mut out: Vec<Vec<Slice>> = vec![Vec::new(); count];
    // Assign each group by its midpoint (in rows when a count was asked for,
    // else in bytes), so partitions stay contiguous and balanced.
    let share = |start: u64, len: u64, total: u64| {
        ((start as u128 * 2 + len as u128) * count as u128 / (total as u128 * 2)) as usize
    };
    for &(p, g, first_row, rows_before, rows, before, bytes) in &groups {
        let idx = match wanted {
            Some(_) if total_rows > 0 => share(rows_before, rows, total_rows),
            _ if total_bytes > 0 => share(before, bytes, total_bytes),
            _ => 0,
        }
        .min(count - 1);
        let slices = &mut out[idx];
        match slices.last_mut() {
            Some(last) if last.logical_key == parts[p].logical_key && last.row_group_end as usize == g => {
                last.row_group_end += 1
            }
            _ => slices.push(Slice {
                logical_key: parts[p].logical_key.clone(),
                row_group_start: g as u32,
                row_group_end: g as u32 + 1,
                first_row,
            }),
        }
    }
    out.retain(|s| !s.is_empty());
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}
