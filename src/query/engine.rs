//! The engine: one per server, over one registry. It caches what never
//! changes (revisions' indexes and tables by top hash, Parquet footers and
//! inferred schemas by content hash, in caches bounded by memory or count)
//! and executes tickets. Planning is in
//! [`super::plan`], column plans in [`super::prepare`], Parquet scans in
//! [`super::scan`], the manifest table in [`super::manifest_table`], what is kept of a
//! revision in [`super::revision`].

use super::Error;
use super::manifest_table;
use super::planner::{self, Shape};
use super::prepare::prepare;
use super::reader::{PINNED_STORE_URL, PinnedPart};
use super::revision::Revision;
use super::rows::Positions;
use super::shape::select_positions;
use super::sources::{self, PARQUET_BATCH_ROWS};
use super::table::{Format, Table};
use crate::manifest::Entry;
use crate::proto::Ticket;
use crate::registry::Registry;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use quick_cache::sync::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries kept in each of the engine's caches (manifests, schemas); the
/// least used go first.
const CACHE_ENTRIES: usize = 4096;
/// Memory the cached Parquet metadata (footers and page indexes) may take.
const FOOTER_CACHE_BYTES: u64 = 512 << 20;
/// Memory the cached revisions may take ([`Revision::memory_size`]: about
/// 50 bytes per 1,024 entries, plus the paths of its tables).
const REVISION_CACHE_BYTES: u64 = 256 << 20;
/// Memory the cached tables (their entries) may take.
const TABLE_CACHE_BYTES: u64 = 256 << 20;

/// Work done by one read, filled in while its stream runs (complete once
/// the stream has ended). Also added to the process-wide
/// [`crate::metrics`] counters.
#[derive(Debug, Default)]
pub struct ReadStats {
    rows_scanned: AtomicU64,
    bytes_scanned: AtomicU64,
}

impl ReadStats {
    pub(super) fn add(&self, rows: u64, bytes: u64) {
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

/// Plans and executes reads over one registry. Caches revisions, tables and
/// Parquet footers by content hash: all are immutable.
pub struct Engine {
    pub(super) registry: Registry,
    /// The long-lived DataFusion context every scan runs in: its runtime
    /// (object stores, memory, spill files) is shared by the URI reads and
    /// the SQL engine ([`crate::sql`]).
    context: SessionContext,
    revisions: Cache<String, Arc<Revision>, Weight>,
    /// Tables by `"<top hash> <path>"`.
    tables: Cache<String, Arc<Table>, Weight>,
    footers: Cache<String, Arc<ArrowReaderMetadata>, FooterWeight>,
    /// Inferred schemas of whole-file tables (reading them is a full read).
    schemas: Cache<String, SchemaRef>,
}

/// Cache key of an entry's derived data. The physical key is part of it:
/// whether data may be read depends on where it is, so a cached result must
/// never skip the read policy.
pub(super) fn data_key(entry: &Entry) -> String {
    format!("{} {}", entry.hash, entry.physical_keys.first().map(String::as_str).unwrap_or(""))
}

/// The data layout of a table, from which partitions are cut.
pub enum Layout {
    /// Parquet parts: per part, `(rows, uncompressed bytes)` of each row group.
    Parquet(Vec<Vec<(u64, u64)>>),
    /// Read whole, by one endpoint; row count known for the manifest table.
    Sequential(Option<u64>),
}

/// Weighs a cached footer by the memory it takes.
#[derive(Clone)]
struct FooterWeight;

impl quick_cache::Weighter<String, Arc<ArrowReaderMetadata>> for FooterWeight {
    fn weight(&self, key: &String, footer: &Arc<ArrowReaderMetadata>) -> u64 {
        (key.len() + footer.metadata().memory_size()) as u64
    }
}

/// Weighs a cached revision or table by the memory it takes.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Arc<Revision>> for Weight {
    fn weight(&self, key: &String, revision: &Arc<Revision>) -> u64 {
        (key.len() + revision.memory_size()) as u64
    }
}

impl quick_cache::Weighter<String, Arc<Table>> for Weight {
    fn weight(&self, key: &String, table: &Arc<Table>) -> u64 {
        (key.len() + table.memory_size()) as u64
    }
}

/// The engine's context: URI reads are planned in it with one target
/// partition (one output partition keeps rows in table order); the
/// pinned-parts store is registered once.
fn context() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(1).with_batch_size(PARQUET_BATCH_ROWS);
    // Filters are evaluated in the Parquet decoder (page index and bloom
    // filters are on by default).
    config.options_mut().execution.parquet.pushdown_filters = true;
    let context = SessionContext::new_with_config(config);
    let url = url::Url::parse(PINNED_STORE_URL).expect("valid URL");
    context.register_object_store(&url, Arc::new(object_store::memory::InMemory::new()));
    context
}

/// A cache bounded by memory, in one shard, so that a single large revision
/// or table may take the whole budget (a sharded cache gives each shard a
/// share of it).
fn weighed_cache<V: Clone>(bytes: u64) -> Cache<String, V, Weight>
where
    Weight: quick_cache::Weighter<String, V>,
{
    let options = quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(CACHE_ENTRIES)
        .weight_capacity(bytes)
        .shards(1)
        .build()
        .expect("valid cache options");
    Cache::with_options(options, Weight, Default::default(), Default::default())
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("registry", &self.registry.url()).finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `registry` (whose read policy applies to every read).
    pub fn new(registry: Registry) -> Self {
        Engine {
            registry,
            context: context(),
            revisions: weighed_cache(REVISION_CACHE_BYTES),
            tables: weighed_cache(TABLE_CACHE_BYTES),
            footers: Cache::with_weighter(CACHE_ENTRIES, FOOTER_CACHE_BYTES, FooterWeight),
            schemas: Cache::new(CACHE_ENTRIES),
        }
    }

    /// The registry read from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The long-lived DataFusion context (see [`Engine`]'s field).
    pub fn context(&self) -> &SessionContext {
        &self.context
    }

    /// A task context for running the engine's plans.
    pub(super) fn task_ctx(&self) -> Arc<TaskContext> {
        self.context.task_ctx()
    }

    /// A Parquet part located and described, for a scan by
    /// [`super::reader::PinnedReaders`].
    pub async fn pinned_part(&self, entry: &Entry) -> Result<PinnedPart, Error> {
        let footer = self.footer(entry).await?;
        let located = self.registry.locate(entry).await?;
        Ok(PinnedPart {
            name: entry.logical_key.clone(),
            store: located.store,
            path: located.path,
            size: entry.size,
            metadata: footer.metadata().clone(),
        })
    }

    /// What is kept of a revision (its manifest's index and its tables),
    /// cached; concurrent first uses read the manifest once.
    pub async fn revision(&self, top_hash: &str) -> Result<Arc<Revision>, Error> {
        let read = async { Revision::read(&self.registry, top_hash).await.map(Arc::new) };
        self.revisions.get_or_insert_async(top_hash, read).await
    }

    /// The table at `path` of a revision (`""`: the manifest table), named
    /// `name` in errors, cached.
    pub async fn table(&self, top_hash: &str, path: &str, name: &str) -> Result<Arc<Table>, Error> {
        let revision = self.revision(top_hash).await?;
        if path.is_empty() {
            return Ok(Arc::new(Table::manifest(revision.index.clone())));
        }
        let read = async { revision.table(&self.registry, path, name).await.map(Arc::new) };
        self.tables.get_or_insert_async(&format!("{top_hash} {path}"), read).await
    }

    /// A Parquet part's footer, cached.
    pub async fn footer(&self, entry: &Entry) -> Result<Arc<ArrowReaderMetadata>, Error> {
        let key = data_key(entry);
        if let Some(m) = self.footers.get(&key) {
            return Ok(m);
        }
        let m = Arc::new(sources::parquet_metadata(&self.registry, entry).await?);
        self.footers.insert(key, m.clone());
        Ok(m)
    }

    /// The schema and layout of a table. Parquet parts must share a schema.
    pub async fn describe(&self, table: &Table, content: bool) -> Result<(SchemaRef, Layout), Error> {
        match table.format {
            Format::Manifest => {
                let rows = table.index.as_ref().map_or(0, |index| index.entries);
                Ok((manifest_table::schema(content), Layout::Sequential(Some(rows))))
            }
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
                if let Some(schema) = self.schemas.get(&key) {
                    return Ok((schema, Layout::Sequential(None)));
                }
                let schema = sources::sequential_schema(&self.registry, entry, format).await?;
                self.schemas.insert(key, schema.clone());
                Ok((schema, Layout::Sequential(None)))
            }
        }
    }

    /// Rows of a whole-file table, by reading it.
    pub(super) async fn count_rows(&self, table: &Table, schema: SchemaRef) -> Result<u64, Error> {
        let (batches, _) = sources::read_sequential(&self.registry, &table.entries[0], table.format, schema).await?;
        batches.try_fold(0u64, |rows, b| futures::future::ready(Ok(rows + b.num_rows() as u64))).await
    }

    /// The layout's row-group sizes counting only the `needed` columns
    /// (uncompressed, as Parquet records them). Nested schemas, whose leaves
    /// do not map one to one onto fields, keep the whole row group's size.
    pub(super) async fn projected_sizes(
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
        // Reading the revision by its name checks that it exists (and, once
        // cached, costs no storage round trip per DoGet).
        let name = format!("{package}@{}", &top_hash[..12]);
        let query = ticket.query.clone().unwrap_or_default();
        let table = self.table(&top_hash, &ticket.path, &name).await?;
        let schema = match (table.format, ticket.slices.first()) {
            // Only the ticket's own parts are read (planning checked that
            // every part has the same schema).
            (Format::Parquet, Some(slice)) => {
                let entry = table.entries.iter().find(|e| e.logical_key == slice.logical_key).ok_or_else(|| {
                    Error::invalid(format!(
                        "bad ticket: {} is not a part of {}",
                        super::limits::excerpt(&slice.logical_key),
                        table.path
                    ))
                })?;
                self.footer(entry).await?.schema().clone()
            }
            _ => self.describe(&table, query.content).await?.0,
        };
        let prepared = prepare(&schema, &query, &name)?;
        let stream = match table.format {
            Format::Parquet => self.parquet_stream(&table, &ticket.slices, &query, schema, &prepared, &stats).await?,
            Format::Manifest => {
                return manifest_table::read(self, &table, &ticket, &query, &schema, &name, stats);
            }
            format => {
                let entry = &table.entries[0];
                stats.add(0, entry.size);
                let (batches, verdict) =
                    sources::read_sequential(&self.registry, entry, format, schema.clone()).await?;
                let needed = prepared.needed.clone();
                let counted = stats.clone();
                let batches = batches
                    .and_then(move |b| {
                        counted.add(b.num_rows() as u64, 0);
                        futures::future::ready(b.project(&needed).map_err(|e| Error::engine("projecting", e)))
                    })
                    .boxed();
                // Sampling by position needs every row, before the filter.
                let selected = select_positions(batches, Positions::of(&query)?, 0);
                let input = planner::rows_table(prepared.needed_schema.clone(), selected)?;
                let shape = Shape { columns: &prepared.columns, filter: prepared.filter.as_ref(), limit: query.limit };
                let plan = planner::plan(&self.context.state(), input, &shape)?;
                let rows = planner::execute(&plan, self.task_ctx(), format!("reading {}", entry.logical_key))?;
                // A limit ends the rows before the file: its rest is checked too.
                sources::verified_at_end(rows, verdict)
            }
        };
        let (path, projector) = (ticket.path.clone(), prepared.projector);
        let out_schema = projector.schema().clone();
        let batches = stream
            .and_then(move |b| futures::future::ready(projector.project(&b)))
            .map_err(move |e| e.in_table(&path, &name))
            .boxed();
        Ok(Execution { schema: out_schema, batches, stats })
    }
}
