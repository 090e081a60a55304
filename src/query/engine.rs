//! Planning and executing reads of package tables.

use crate::proto::{Query, Slice, Ticket};
use super::shape::{Projector, Selector};
use super::sources::{self, PARQUET_BATCH_ROWS};
use super::table::{self, Format, Table};
use super::{DatasetUri, Error, limits, sample};
use crate::manifest::{Entry, Manifest};
use crate::registry::Registry;
use arrow::array::{ArrayRef, BinaryBuilder, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Uncompressed bytes per endpoint when the client does not ask for a
/// partition count: large tables spread over several endpoints.
const TARGET_PARTITION_BYTES: u64 = 64 * 1024 * 1024;
/// Entries per endpoint of the manifest table read without contents.
const MANIFEST_ROWS_PER_PARTITION: usize = 1_000_000;
/// Entries kept in each of the engine's caches (manifests, Parquet footers).
const CACHE_ENTRIES: usize = 4096;

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
    /// Per endpoint, the region of the table it covers, before filters and
    /// sampling: `(first row, rows)`, when known.
    pub regions: Vec<Option<(u64, u64)>>,
}

/// Work done by one read, filled in while its stream runs (complete once
/// the stream has ended). Also added to the process-wide
/// [`crate::metrics`] counters.
#[derive(Debug, Default)]
pub struct ReadStats {
    rows_scanned: AtomicU64,
    bytes_scanned: AtomicU64,
}

impl ReadStats {
    fn add(&self, rows: u64, bytes: u64) {
        self.rows_scanned.fetch_add(rows, Ordering::Relaxed);
        self.bytes_scanned.fetch_add(bytes, Ordering::Relaxed);
        crate::metrics::ROWS_SCANNED.add(rows);
    }

    /// Rows decoded from storage before filters.
    pub fn rows_scanned(&self) -> u64 {
        self.rows_scanned.load(Ordering::Relaxed)
    }

    /// Bytes of table data read from storage (Parquet: the column chunks and
    /// pages fetched; whole-file tables: the file).
    pub fn bytes_scanned(&self) -> u64 {
        self.bytes_scanned.load(Ordering::Relaxed)
    }
}

/// A running read: its schema, its batches, and what it has done so far.
pub struct Execution {
    /// Schema of every batch.
    pub schema: SchemaRef,
    /// The rows, in canonical order.
    pub batches: BoxStream<'static, Result<RecordBatch, Error>>,
    /// Figures of the read, final once `batches` has ended.
    pub stats: Arc<ReadStats>,
}

/// Plans and executes reads over one registry. Caches manifests and Parquet
/// footers by content hash: both are immutable.
pub struct Engine {
    registry: Registry,
    manifests: Mutex<HashMap<String, Arc<Manifest>>>,
    footers: Mutex<HashMap<String, Arc<ArrowReaderMetadata>>>,
    /// Inferred schemas of whole-file tables (reading them is a full read).
    schemas: Mutex<HashMap<String, SchemaRef>>,
}

/// Cache key of an entry's derived data. The physical key is part of it:
/// whether data may be read depends on where it is, so a cached result must
/// never skip the read policy.
fn data_key(entry: &Entry) -> String {
    format!("{} {}", entry.hash, entry.physical_keys.first().map(String::as_str).unwrap_or(""))
}

/// A column plan: which file columns to read, the filter, the output.
struct Prepared {
    /// Indices of the file columns read (output and filter columns).
    needed: Vec<usize>,
    /// Schema of the batches holding just those columns.
    needed_schema: SchemaRef,
    /// The filter bound to the needed columns.
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// The filter bound to the full file schema (for Parquet pruning).
    file_filter: Option<Arc<dyn PhysicalExpr>>,
    /// Output columns and casts.
    projector: Projector,
}

/// The data layout of a table, from which partitions are cut.
enum Layout {
    /// Parquet parts: per part, `(rows, uncompressed bytes)` of each row group.
    Parquet(Vec<Vec<(u64, u64)>>),
    /// Read whole, by one endpoint; row count known for the manifest table.
    Sequential(Option<u64>),
}

fn manifest_schema(with_content: bool) -> SchemaRef {
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

fn session() -> SessionContext {
    // One partition per plan keeps rows in file order.
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1).with_batch_size(PARQUET_BATCH_ROWS))
}

fn cache_put<V>(cache: &Mutex<HashMap<String, V>>, key: String, value: V) {
    let mut cache = cache.lock().expect("cache poisoned");
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, value);
}

impl Engine {
    /// An engine over `registry` (whose read policy applies to every read).
    pub fn new(registry: Registry) -> Self {
        Engine { registry, manifests: Default::default(), footers: Default::default(), schemas: Default::default() }
    }

    /// The registry read from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A revision's manifest, cached.
    pub async fn manifest(&self, top_hash: &str) -> Result<Arc<Manifest>, Error> {
        if let Some(m) = self.manifests.lock().expect("cache poisoned").get(top_hash) {
            return Ok(m.clone());
        }
        let m = Arc::new(self.registry.read_manifest(top_hash).await?);
        cache_put(&self.manifests, top_hash.to_owned(), m.clone());
        Ok(m)
    }

    async fn footer(&self, entry: &Entry) -> Result<Arc<ArrowReaderMetadata>, Error> {
        let key = data_key(entry);
        if let Some(m) = self.footers.lock().expect("cache poisoned").get(&key) {
            return Ok(m.clone());
        }
        let m = Arc::new(sources::parquet_metadata(&self.registry, entry).await?);
        cache_put(&self.footers, key, m.clone());
        Ok(m)
    }

    /// The schema and layout of a table. Parquet parts must share a schema.
    async fn describe(&self, table: &Table, content: bool) -> Result<(SchemaRef, Layout), Error> {
        match table.format {
            Format::Manifest => Ok((manifest_schema(content), Layout::Sequential(Some(table.entries.len() as u64)))),
            Format::Parquet => {
                let footers: Vec<Arc<ArrowReaderMetadata>> =
                    stream::iter(&table.entries).then(|e| self.footer(e)).try_collect().await?;
                let schema = footers[0].schema().clone();
                for (entry, footer) in table.entries.iter().zip(&footers).skip(1) {
                    if footer.schema().fields() != schema.fields() {
                        return Err(Error::invalid(format!(
                            "part {} of table {} has a different schema from {}",
                            entry.logical_key, table.path, table.entries[0].logical_key
                        )));
                    }
                }
                let layout = footers
                    .iter()
                    .map(|f| {
                        f.metadata()
                            .row_groups()
                            .iter()
                            .map(|rg| (rg.num_rows() as u64, rg.total_byte_size() as u64))
                            .collect()
                    })
                    .collect();
                Ok((schema, Layout::Parquet(layout)))
            }
            format => {
                let entry = &table.entries[0];
                let key = data_key(entry);
                if let Some(schema) = self.schemas.lock().expect("cache poisoned").get(&key) {
                    return Ok((schema.clone(), Layout::Sequential(None)));
                }
                let schema = sources::sequential_schema(&self.registry, entry, format).await?;
                cache_put(&self.schemas, key, schema.clone());
                Ok((schema, Layout::Sequential(None)))
            }
        }
    }

    /// Rows of a whole-file table, by reading it.
    async fn count_rows(&self, table: &Table, schema: SchemaRef) -> Result<u64, Error> {
        let batches = sources::read_sequential(&self.registry, &table.entries[0], table.format, schema).await?;
        batches.try_fold(0u64, |rows, b| futures::future::ready(Ok(rows + b.num_rows() as u64))).await
    }

    /// The layout's row-group sizes counting only the `needed` columns
    /// (uncompressed, as Parquet records them). Nested schemas, whose leaves
    /// do not map one to one onto fields, keep the whole row group's size.
    async fn projected_sizes(
        &self,
        table: &Table,
        parts: Vec<Vec<(u64, u64)>>,
        needed: &[usize],
    ) -> Result<Vec<Vec<(u64, u64)>>, Error> {
        let mut out = Vec::with_capacity(parts.len());
        for (entry, groups) in table.entries.iter().zip(parts) {
            let footer = self.footer(entry).await?;
            let metadata = footer.metadata();
            let descr = metadata.file_metadata().schema_descr();
            if descr.num_columns() != descr.root_schema().get_fields().len() || needed.len() == descr.num_columns() {
                out.push(groups);
                continue;
            }
            out.push(
                groups
                    .iter()
                    .enumerate()
                    .map(|(g, &(rows, _))| {
                        let rg = metadata.row_group(g);
                        (rows, needed.iter().map(|&c| rg.column(c).uncompressed_size().max(0) as u64).sum())
                    })
                    .collect(),
            );
        }
        Ok(out)
    }

    fn prepare(&self, schema: &SchemaRef, query: &Query, table: &str) -> Result<Prepared, Error> {
        limits::check_request(&query.filter, &query.columns, table)?;
        // Parsing and checking recurse once per nesting level: both run on a
        // large stack, and so does dropping a refused expression.
        limits::on_planning_stack(|| self.prepare_checked(schema, query, table))
    }

    fn prepare_checked(&self, schema: &SchemaRef, query: &Query, table: &str) -> Result<Prepared, Error> {
        let ctx = session();
        let parse = |schema: &SchemaRef| -> Result<Option<(Expr, Arc<dyn PhysicalExpr>)>, Error> {
            if query.filter.trim().is_empty() {
                return Ok(None);
            }
            let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| Error::engine("schema", e))?;
            let invalid = |e: datafusion::error::DataFusionError| {
                Error::invalid(format!(
                    "invalid filter {} on {table}: {}",
                    limits::excerpt(&query.filter),
                    e.strip_backtrace()
                ))
            };
            let expr = ctx.parse_sql_expr(&query.filter, &df_schema).map_err(invalid)?;
            limits::check_expr(&expr, &query.filter, table)?;
            // Coerce and simplify, as a query planner would: constant folding
            // turns functions such as arrow_cast of a literal into literals
            // (they cannot be evaluated row by row).
            let df_schema_ref = Arc::new(df_schema.clone());
            let simplifier = ExprSimplifier::new(SimplifyContext::builder().with_schema(df_schema_ref).build());
            let expr = simplifier.coerce(expr, &df_schema).and_then(|e| simplifier.simplify(e)).map_err(invalid)?;
            let physical = ctx.create_physical_expr(expr.clone(), &df_schema).map_err(invalid)?;
            if physical.data_type(schema).ok() != Some(DataType::Boolean) {
                return Err(Error::invalid(format!(
                    "filter {} on {table} is not a boolean expression",
                    limits::excerpt(&query.filter)
                )));
            }
            Ok(Some((expr, physical)))
        };
        let full = parse(schema)?;
        // Check output columns against the full schema for a clear error.
        Projector::new(schema, &query.columns, table)?;
        let mut needed: Vec<usize> = if query.columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            query.columns.iter().map(|c| schema.index_of(c).expect("checked")).collect()
        };
        if let Some((expr, _)) = &full {
            for col in expr.column_refs() {
                let i = schema
                    .index_of(&col.name)
                    .map_err(|_| Error::UnknownColumn {
                        column: col.name.clone(),
                        message: format!("unknown column {} in {table}", limits::excerpt(&col.name)),
                    })?;
                needed.push(i);
            }
        }
        needed.sort_unstable();
        needed.dedup();
        let needed_schema = Arc::new(schema.project(&needed).map_err(|e| Error::engine("projecting", e))?);
        let filter = parse(&needed_schema)?.map(|(_, p)| p);
        let columns: Vec<String> = if query.columns.is_empty() {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            query.columns.clone()
        };
        let projector = Projector::new(&needed_schema, &columns, table)?;
        Ok(Prepared { needed, needed_schema, filter, file_filter: full.map(|(_, p)| p), projector })
    }

    /// Plans a read: resolves the revision, checks columns and filter, and
    /// cuts the table into endpoints.
    pub async fn plan(&self, uri: &DatasetUri) -> Result<Plan, Error> {
        let top_hash = self.registry.resolve(&uri.package, &uri.revision).await?;
        let manifest = self.manifest(&top_hash).await?;
        let name = format!("{}@{}", uri.package, &top_hash[..12]);
        let table = table::find(&manifest, &uri.path, &name)?;
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
        };
        let prepared = self.prepare(&schema, &query, &table_name)?;
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
        let mut total_rows = match (table_rows, q.sample, q.sample_rows) {
            (Some(t), Some(f), _) => Some((t as f64 * f).round() as u64),
            (Some(t), None, Some(n)) => Some(n.min(t)),
            (t, _, _) => t,
        };
        if query.filter.is_empty() {
            if let (Some(t), Some(l)) = (total_rows, q.limit) {
                total_rows = Some(t.min(l));
            }
        } else {
            total_rows = None;
        }
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
        let (tickets, total_bytes) = match &layout {
            // The manifest table: runs of entries, balanced by content size
            // when contents are read. A limit is global: one endpoint.
            Layout::Sequential(_) if table.format == Format::Manifest && q.limit.is_none() => {
                let weights: Vec<u64> = table.entries.iter().map(|e| if q.content { e.size } else { 1 }).collect();
                let count = match q.partitions {
                    Some(n) => n as usize,
                    None if q.content => weights.iter().sum::<u64>().div_ceil(TARGET_PARTITION_BYTES) as usize,
                    None => table.entries.len().div_ceil(MANIFEST_ROWS_PER_PARTITION),
                };
                let tickets = split_weighted(&weights, count)
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
                let groups = partition(&table.entries, parts, wanted);
                let bytes = parts.iter().flatten().map(|(_, b)| b).sum();
                let tickets = groups
                    .into_iter()
                    .enumerate()
                    .map(|(i, slices)| Ticket { slices, partition: i as u32, ..base.clone() })
                    .collect();
                (tickets, Some(bytes))
            }
        };
        let regions = tickets
            .iter()
            .map(|t| match &layout {
                Layout::Sequential(_) if t.entry_end > 0 => Some((t.entry_start, t.entry_end - t.entry_start)),
                Layout::Sequential(rows) => rows.or(table_rows).map(|r| (0, r)),
                Layout::Parquet(parts) => {
                    let first = t.slices.first().map_or(0, |s| s.first_row);
                    let rows = t
                        .slices
                        .iter()
                        .map(|s| {
                            let part =
                                table.entries.iter().position(|e| e.logical_key == s.logical_key).expect("a part");
                            parts[part][s.row_group_start as usize..s.row_group_end as usize]
                                .iter()
                                .map(|(r, _)| r)
                                .sum::<u64>()
                        })
                        .sum();
                    Some((first, rows))
                }
            })
            .collect();
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

    /// Streams the rows of one endpoint. The ticket is self-contained: it is
    /// re-validated against the pinned revision, so any client may redeem it
    /// any number of times.
    pub async fn execute(&self, ticket: Ticket) -> Result<Execution, Error> {
        let stats = Arc::new(ReadStats::default());
        let package: crate::registry::PackageName =
            ticket.package.parse().map_err(|e: crate::registry::Error| Error::invalid(format!("bad ticket: {e}")))?;
        let top_hash = ticket.top_hash.clone();
        if top_hash.len() != 64 || !top_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("bad ticket: {top_hash:?} is not a top hash")));
        }
        // Reading the manifest by its name checks that the revision exists
        // (and, once cached, costs no storage round trip per DoGet).
        let manifest = self.manifest(&top_hash).await?;
        let name = format!("{package}@{}", &top_hash[..12]);
        let query = ticket.query.clone().unwrap_or_default();
        let table = table::find(&manifest, &ticket.path, &name)?;
        let (schema, _) = self.describe(&table, query.content).await?;
        let prepared = self.prepare(&schema, &query, &name)?;
        let out_schema = prepared.projector.schema().clone();
        let selector = Selector { sample: None, position: 0, filter: prepared.filter.clone(), remaining: query.limit };
        let stream = match table.format {
            Format::Parquet => self.parquet_stream(&table, &ticket.slices, &query, schema, &prepared, &stats).await?,
            Format::Manifest => {
                // Rows are chosen on the entry columns, before any content is
                // fetched; then the output columns are projected.
                let base = self.prepare(&manifest_schema(false), &Query { columns: vec![], ..query.clone() }, &name)?;
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
                // Sampling hashes each entry's position in the whole manifest.
                let selector = Selector {
                    sample: query.sample_threshold.map(|t| (query.seed, t)),
                    position: start as u64,
                    filter: base.filter,
                    remaining: query.limit,
                };
                let projector = Projector::new(&schema, &query.columns, &name)?;
                let out_schema = projector.schema().clone();
                stats.add((end - start) as u64, 0);
                let rows = manifest_stream(&table.entries[start..end], selector, query.content, self.registry.clone());
                let batches = rows.and_then(move |b| futures::future::ready(projector.project(&b))).boxed();
                let label = format!("the manifest of {name}");
                let batches = batches.map_err(move |e| e.in_table("", &label)).boxed();
                return Ok(Execution { schema: out_schema, batches, stats });
            }
            format => {
                let entry = &table.entries[0];
                stats.add(0, entry.size);
                let batches = sources::read_sequential(&self.registry, entry, format, schema.clone()).await?;
                let needed = prepared.needed.clone();
                let sampled = sample_sequential(&query);
                let counted = stats.clone();
                batches
                    .and_then(move |b| {
                        counted.add(b.num_rows() as u64, 0);
                        futures::future::ready(b.project(&needed).map_err(|e| Error::engine("projecting", e)))
                    })
                    .scan(sampled, |s, b| {
                        // Sampling by position needs every row, before filters.
                        futures::future::ready(Some(b.and_then(|b| s.select(b))))
                    })
                    .boxed()
            }
        };
        let path = ticket.path.clone();
        let batches = shape(stream, selector, prepared.projector).map_err(move |e| e.in_table(&path, &name)).boxed();
        Ok(Execution { schema: out_schema, batches, stats })
    }

    async fn parquet_stream(
        &self,
        table: &Table,
        slices: &[Slice],
        query: &Query,
        file_schema: SchemaRef,
        prepared: &Prepared,
        stats: &Arc<ReadStats>,
    ) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> {
        let ctx = session();
        let mut streams = Vec::with_capacity(slices.len());
        // A ticket's slices are in table order and never overlap, so a
        // forged ticket cannot make one read repeat the same rows.
        let mut previous: Option<(usize, u32)> = None;
        for (i, slice) in slices.iter().enumerate() {
            let part = table.entries.iter().position(|e| e.logical_key == slice.logical_key).ok_or_else(|| {
                Error::invalid(format!(
                    "bad ticket: {} is not a part of {}",
                    limits::excerpt(&slice.logical_key),
                    table.path
                ))
            })?;
            let entry = &table.entries[part];
            let footer = self.footer(entry).await?;
            let row_groups = footer.metadata().row_groups();
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
            let mut access = ParquetAccessPlan::new_none(row_groups.len());
            let mut first = slice.first_row;
            for rg in slice.row_group_start as usize..slice.row_group_end as usize {
                let rows = row_groups[rg].num_rows() as usize;
                match query.sample_threshold {
                    None => access.set(rg, RowGroupAccess::Scan),
                    Some(t) => {
                        access.set(rg, RowGroupAccess::Selection(sample::row_selection(query.seed, t, first, rows)))
                    }
                }
                first += rows as u64;
            }
            let located = self.registry.locate(entry).await?;
            // Parquet reports some storage failures as text; on a scan error
            // the object itself is checked, to tell storage from data.
            let probe = (located.store.clone(), located.path.clone(), entry.logical_key.clone());
            let url = format!("sheaf-part-{i}://data");
            ctx.register_object_store(&url::Url::parse(&url).expect("valid URL"), located.store);
            let file = PartitionedFile::new(located.path.to_string(), entry.size).with_extension(access);
            let scan = |projection: Vec<usize>| -> Result<Arc<dyn ExecutionPlan>, Error> {
                let mut source = ParquetSource::new(file_schema.clone())
                    .with_enable_page_index(true)
                    .with_bloom_filter_on_read(true)
                    .with_pushdown_filters(true);
                if let Some(p) = &prepared.file_filter {
                    source = source.with_predicate(p.clone());
                }
                let config =
                    FileScanConfigBuilder::new(ObjectStoreUrl::parse(&url).expect("valid URL"), Arc::new(source))
                        .with_file(file.clone())
                        .with_projection_indices(Some(projection))
                        .map_err(|e| Error::engine("planning the scan", e))?
                        .with_limit(if query.filter.is_empty() { query.limit.map(|l| l as usize) } else { None })
                        .build();
                Ok(DataSourceExec::from_data_source(config))
            };
            // A plain read (no filter, no limit) decodes its columns in two
            // halves on two tasks, so one stream uses both cores; the halves
            // see the same row groups and selection, hence the same batches.
            let halves = match query.filter.is_empty() && query.limit.is_none() {
                true => split_columns(&prepared.needed, footer.metadata(), slice),
                false => None,
            };
            let what = format!("reading {}", entry.logical_key);
            let groups = halves.clone().map_or_else(|| vec![prepared.needed.clone()], |(a, b)| vec![a, b]);
            let plans: Vec<Arc<dyn ExecutionPlan>> = groups.into_iter().map(&scan).collect::<Result<_, _>>()?;
            let mut scans = Vec::with_capacity(plans.len());
            for plan in &plans {
                let what = what.clone();
                let s = plan.execute(0, ctx.task_ctx()).map_err(|e| Error::engine(what.clone(), e))?;
                let probe = probe.clone();
                let s = s.map_err(move |e| Error::engine(what.clone(), e)).or_else(move |e| {
                    let (store, path, key) = probe.clone();
                    async move {
                        match e {
                            Error::Engine { .. } => match store.head(&path).await {
                                Err(store_error) => {
                                    Err(crate::registry::Error::storage(format!("data of {key}"), store_error).into())
                                }
                                Ok(_) => Err(e),
                            },
                            other => Err(other),
                        }
                    }
                });
                scans.push(s.boxed());
            }
            let batches = match halves {
                None => scans.pop().expect("one scan"),
                Some((a, b)) => {
                    let second = read_ahead(scans.pop().expect("two scans"));
                    let first = read_ahead(scans.pop().expect("two scans"));
                    zip_columns(first, second, &prepared.needed, &a, &b)
                }
            };
            let needed_schema = prepared.needed_schema.clone();
            // Rows out of the scan are counted as they pass; once it has
            // ended, its metrics add the rows the pushed-down filter decoded
            // and dropped, and the bytes it fetched.
            let (stats, counted) = (stats.clone(), stats.clone());
            let account = stream::once(async move {
                for plan in plans {
                    if let Some(m) = plan.metrics() {
                        let get = |name: &str| m.sum_by_name(name).map_or(0, |v| v.as_usize() as u64);
                        stats.add(get("pushdown_rows_pruned"), get("bytes_scanned"));
                    }
                }
                None
            })
            .filter_map(futures::future::ready);
            streams.push(
                batches
                    .inspect_ok(move |b| counted.add(b.num_rows() as u64, 0))
                    .and_then(move |b| {
                        // The scan may return its own field metadata; adopt the planned schema.
                        let r = RecordBatch::try_new(needed_schema.clone(), b.columns().to_vec())
                            .map_err(|e| Error::engine("assembling a batch", e));
                        futures::future::ready(r)
                    })
                    .chain(account)
                    .boxed(),
            );
        }
        Ok(stream::iter(streams).flatten().boxed())
    }
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
    enum Message<T> {
        Item(Result<T, Error>),
        End,
    }
    stream::once(async move {
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = std::panic::AssertUnwindSafe(batches.next()).catch_unwind() => next,
                };
                let (message, last) = match next {
                    Ok(Some(Ok(item))) => (Message::Item(Ok(item)), false),
                    Ok(Some(Err(e))) => (Message::Item(Err(e)), true),
                    Ok(None) => (Message::End, true),
                    Err(panic) => {
                        let text = super::error::panic_message(panic.as_ref());
                        tracing::error!(panic = %text, "a read-ahead task panicked");
                        (Message::Item(Err(Error::Panicked("reading".into()))), true)
                    }
                };
                if tx.send(message).await.is_err() || last {
                    return;
                }
            }
        });
        stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Message::Item(Ok(item))) => Some((Ok(item), Some(rx))),
                Some(Message::Item(Err(e))) => Some((Err(e), None)),
                Some(Message::End) => None,
                None => Some((Err(Error::Panicked("reading (the task ended without finishing)".into())), None)),
            }
        })
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
/// back into `needed` order.
fn zip_columns(
    first: BoxStream<'static, Result<RecordBatch, Error>>,
    second: BoxStream<'static, Result<RecordBatch, Error>>,
    needed: &[usize],
    a: &[usize],
    b: &[usize],
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    // For each needed column: (which half, position in it).
    let order: Vec<(usize, usize)> = needed
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
            let joined = match (first.next().await, second.next().await) {
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

fn sample_sequential(query: &Query) -> Selector {
    Selector { sample: query.sample_threshold.map(|t| (query.seed, t)), position: 0, filter: None, remaining: None }
}

/// Applies the selector (sample, filter, limit) and stops pulling input once
/// the limit is reached (dropping the input cancels its work).
fn select_rows(
    input: BoxStream<'static, Result<RecordBatch, Error>>,
    selector: Selector,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    stream::unfold((input, selector), |(mut input, mut selector)| async move {
        loop {
            if selector.done() {
                return None;
            }
            match input.next().await? {
                Err(e) => return Some((Err(e), (input, selector))),
                Ok(batch) => match selector.select(batch) {
                    Ok(b) if b.num_rows() == 0 => continue,
                    other => return Some((other, (input, selector))),
                },
            }
        }
    })
    .boxed()
}

/// Selects rows, then projects the output columns.
fn shape(
    input: BoxStream<'static, Result<RecordBatch, Error>>,
    selector: Selector,
    projector: Projector,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    select_rows(input, selector).and_then(move |b| futures::future::ready(projector.project(&b))).boxed()
}

/// The manifest table: entries in batches of 1024. `selector` (sampling,
/// filter, limit) runs on the entry columns, so `content=true` downloads
/// only the selected files and stops at the limit.
fn manifest_stream(
    entries: &[Entry],
    selector: Selector,
    with_content: bool,
    registry: Registry,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    let base_schema = manifest_schema(false);
    let entries: Arc<Vec<Entry>> = Arc::new(entries.to_vec());
    let chunks: Vec<(usize, usize)> =
        (0..entries.len()).step_by(1024).map(|s| (s, (s + 1024).min(entries.len()))).collect();
    let base = {
        let entries = entries.clone();
        stream::iter(chunks).map(move |(start, end)| {
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
    };
    let selected = select_rows(base.boxed(), selector);
    if !with_content {
        return selected.boxed();
    }
    let by_key: Arc<HashMap<String, Entry>> =
        Arc::new(entries.iter().map(|e| (e.logical_key.clone(), e.clone())).collect());
    selected
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
                RecordBatch::try_new(manifest_schema(true), columns)
                    .map_err(|e| Error::engine("building the manifest table", e))
            }
        })
        .boxed()
}

/// Cuts `weights.len()` items into `count` (at least 1, at most one per item)
/// contiguous runs `[start, end)` of about equal total weight.
fn split_weighted(weights: &[u64], count: usize) -> Vec<(usize, usize)> {
    let n = weights.len();
    let count = count.clamp(1, n.max(1));
    if n == 0 {
        return vec![(0, 0)];
    }
    let total: u64 = weights.iter().sum::<u64>().max(1);
    let mut runs = Vec::with_capacity(count);
    let (mut start, mut acc) = (0usize, 0u64);
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        let runs_left = count - runs.len();
        let items_left = n - i - 1;
        // Close the run once it reaches its share of the weight, keeping at
        // least one item for every run still to come.
        let share = total * (runs.len() as u64 + 1) / count as u64;
        if runs_left > 1 && (acc >= share || items_left < runs_left) {
            runs.push((start, i + 1));
            start = i + 1;
        }
    }
    runs.push((start, n));
    runs
}

/// Cuts Parquet row groups into endpoints: `wanted` of them (as equal in rows
/// as row groups allow) or, by default, about `TARGET_PARTITION_BYTES` each.
/// Each endpoint's slices are contiguous and in table order.
fn partition(parts: &[Entry], layout: &[Vec<(u64, u64)>], wanted: Option<u32>) -> Vec<Vec<Slice>> {
    // Flatten: (part, row group, first row, rows, bytes before, bytes).
    let mut groups = Vec::new();
    let (mut first, mut offset) = (0u64, 0u64);
    for (p, rgs) in layout.iter().enumerate() {
        for (g, &(rows, bytes)) in rgs.iter().enumerate() {
            groups.push((p, g, first, rows, offset, bytes));
            first += rows;
            offset += bytes;
        }
    }
    let (total_rows, total_bytes) = (first, offset);
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
    for &(p, g, first_row, rows, before, bytes) in &groups {
        let idx = match wanted {
            Some(_) if total_rows > 0 => share(first_row, rows, total_rows),
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

#[cfg(test)]
mod tests {
    use super::split_weighted;

    fn check(weights: &[u64], count: usize) -> Vec<(usize, usize)> {
        let runs = split_weighted(weights, count);
        // Contiguous, non-empty (unless there is nothing), covering everything.
        assert_eq!(runs.first().map(|r| r.0), Some(0));
        assert_eq!(runs.last().map(|r| r.1), Some(weights.len()));
        for pair in runs.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
        if !weights.is_empty() {
            assert!(runs.iter().all(|(s, e)| s < e), "{runs:?}");
        }
        runs
    }

    #[test]
    fn splits_into_the_count_asked_within_the_items() {
        assert_eq!(check(&[1; 10], 3).len(), 3);
        assert_eq!(check(&[1; 10], 10).len(), 10);
        assert_eq!(check(&[1; 3], 8).len(), 3);
        assert_eq!(check(&[1; 5], 0).len(), 1);
        assert_eq!(check(&[], 4), vec![(0, 0)]);
        assert_eq!(check(&[0; 6], 3).len(), 3);
    }

    #[test]
    fn balances_by_weight() {
        // One heavy item gets a run of its own.
        assert_eq!(check(&[100, 1, 1, 1, 1], 2), vec![(0, 1), (1, 5)]);
        assert_eq!(check(&[1, 1, 1, 1, 100], 2), vec![(0, 4), (4, 5)]);
        assert_eq!(check(&[5; 8], 4), vec![(0, 2), (2, 4), (4, 6), (6, 8)]);
    }
}
