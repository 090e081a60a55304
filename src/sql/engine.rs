//! The SQL engine: statements parsed, checked (reads only), planned on the
//! engine's long-lived runtime, cut into output partitions and executed
//! under per-query limits (a memory pool that spills or fails, a time
//! limit, a cap on queries running at once).

use super::catalog::{self, Resolver, SheafCatalog};
use super::runtime::CpuRuntime;
use super::statement::parse;
use super::stop::{self, Stop};
use super::ticket::{self, Pins, StatementTicket};
use super::{CATALOG, TABLE_FUNCTION};
use crate::query::{Engine, Error, Execution, ReadStats};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList, TableFunction};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub use super::catalog::MayRead;

/// The schema unqualified names fall into (it holds no table).
pub(super) const DEFAULT_SCHEMA: &str = "public";
/// Rows per batch of SQL results.
const BATCH_ROWS: usize = 8192;

/// Limits of SQL queries.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// Memory one query may hold (sorts, joins and aggregates spill to disk
    /// past it, or fail with RESOURCE_EXHAUSTED).
    pub memory_bytes: usize,
    /// Time one query (one result partition) may run.
    pub timeout: Duration,
    /// Queries running at once; more wait for a turn (within their timeout).
    pub max_queries: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits { memory_bytes: 2 << 30, timeout: Duration::from_secs(300), max_queries: 8 }
    }
}

/// Plans and runs SQL over the registry of an [`Engine`].
pub struct SqlEngine {
    engine: Arc<Engine>,
    base: SessionState,
    limits: SqlLimits,
    running: Arc<Semaphore>,
    /// Where plans run ([`super::runtime`]).
    cpu: CpuRuntime,
}

/// A statement planned for one caller.
pub struct Planned {
    /// The session it was planned in (its catalog pinned).
    state: SessionState,
    /// The logical plan, parameters bound.
    plan: LogicalPlan,
    /// The revisions it read.
    pub pins: Pins,
    /// The parameters it takes (`$1`, `$2`, ...), in order.
    pub parameters: Schema,
}

impl Planned {
    /// What the statement reads, for errors about stored data (a Parquet
    /// decoder's own message names no file): its tables and the revisions
    /// they were pinned to, clipped.
    fn reads(&self) -> String {
        let mut tables = Vec::new();
        let _ = self.plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                tables.push(scan.table_name.to_quoted_string());
            }
            Ok(TreeNodeRecursion::Continue)
        });
        tables.sort();
        tables.dedup();
        let mut text = format!("{} of {}", tables.join(", "), self.pins.revisions().join(", "));
        if let Some((cut, _)) = text.char_indices().nth(1000) {
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }

    /// Whether running it again gives the same rows, so that its ticket's
    /// answer may be kept: it read exactly the revisions `pins` name (a
    /// caller allowed to read those may see it), and calls no function whose
    /// value changes from one run to the next (`random()`, `uuid()`, `now()`,
    /// `current_date`: any whose volatility is not immutable).
    pub fn reusable(&self, pins: &Pins) -> bool {
        if self.pins != *pins {
            return false;
        }
        let changing = |e: &Expr| match e {
            Expr::ScalarFunction(f) => f.func.signature().volatility != Volatility::Immutable,
            Expr::AggregateFunction(f) => f.func.signature().volatility != Volatility::Immutable,
            _ => false,
        };
        let mut fixed = true;
        let _ = self.plan.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                if e.exists(|e| Ok(changing(e)))? {
                    fixed = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        fixed
    }

    /// The schema of its rows, as they travel (dictionaries hydrated, views
    /// in their plain forms: see [`crate::query::wire_schema`]).
    pub fn schema(&self) -> SchemaRef {
        crate::query::wire_schema(self.plan.schema().as_arrow())
    }
}

impl SqlEngine {
    /// An SQL engine on `engine`'s runtime (object stores, caches, spill
    /// files), with `limits`.
    pub fn new(engine: Arc<Engine>, limits: SqlLimits) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let partitions = cores.max(2);
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .with_batch_size(BATCH_ROWS)
            .with_target_partitions(partitions);
        let options = config.options_mut();
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        let runtime = engine.context().runtime_env();
        let mut base =
            SessionStateBuilder::new().with_config(config).with_runtime_env(runtime).with_default_features().build();
        if let Err(e) = super::functions::bound(&mut base, limits.memory_bytes) {
            tracing::error!(error = %e, "cannot bound the size of repeat(), lpad() and rpad() results");
        }
        let running = Arc::new(Semaphore::new(limits.max_queries.max(1)));
        // A thread for every partition of every query allowed to run: a
        // query computing without yielding keeps its threads, and the OS
        // shares the cores between it and the others.
        let cpu = CpuRuntime::new(partitions * limits.max_queries.max(1));
        SqlEngine { engine, base, limits, running, cpu }
    }

    /// The engine it reads through.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Its limits.
    pub fn limits(&self) -> SqlLimits {
        self.limits
    }

    /// The tables of a package revision (path; `""` is the manifest
    /// table), with their schemas when `schemas` is set. A table that cannot
    /// be planned (a file that does not parse, a folder of parts whose
    /// schemas differ) is left out.
    pub async fn tables(
        &self,
        package: &str,
        top_hash: &str,
        schemas: bool,
    ) -> Result<Vec<(String, Option<SchemaRef>)>, Error> {
        let package: crate::registry::PackageName = package.parse()?;
        let mut out = Vec::new();
        for (path, _) in self.engine.revision(top_hash).await?.tables() {
            // Planned even when the schema is not asked for: a folder whose
            // parts disagree is not a table a tool could open.
            let uri = crate::query::DatasetUri::table(&package, top_hash, &path);
            match self.engine.plan(&uri).await {
                Ok(plan) => out.push((path, schemas.then_some(plan.schema))),
                Err(e) => tracing::warn!(uri = %uri, error = %e, "table left out of GetTables"),
            }
        }
        Ok(out)
    }

    /// Plans `sql` for a caller who may read what `may_read` allows:
    /// resolves the revisions it names (or takes them from `pins`, when
    /// redeeming a ticket) and binds `parameters`. The statement is parsed
    /// and checked here; it is planned on the SQL runtime (planning computes
    /// without yielding, and must not hold the threads that serve gRPC) and
    /// fails past the query time limit ([`CpuRuntime::compute`]).
    pub async fn plan(
        &self,
        sql: &str,
        parameters_given: Option<&RecordBatch>,
        may_read: MayRead,
        pins: Option<Pins>,
    ) -> Result<Planned, Error> {
        let statement = parse(sql)?;
        let (base, engine, memory) = (self.base.clone(), self.engine.clone(), self.limits.memory_bytes);
        let parameters_given = parameters_given.cloned();
        let planning = plan_statement(base, engine, memory, statement, parameters_given, may_read, pins);
        self.cpu.compute(planning, self.limits.timeout, "planning the statement").await
    }

    /// The physical plan of a statement, and how many output partitions
    /// (endpoints) it has: several only when they are independent (scans,
    /// filters and projections of the tables' parts), so each endpoint reads
    /// only its own share; anything that exchanges rows between partitions
    /// (aggregates, joins, sorts, limits) is merged into one. Made on the
    /// SQL runtime, within the query time limit, as [`SqlEngine::plan`].
    pub async fn physical(&self, planned: &Planned) -> Result<Arc<dyn ExecutionPlan>, Error> {
        let (state, logical) = (planned.state.clone(), planned.plan.clone());
        let planning = async move {
            let plan =
                state.create_physical_plan(&logical).await.map_err(|e| from_datafusion("planning the statement", e))?;
            let partitions = plan.output_partitioning().partition_count();
            Ok(match partitions > 1 && !independent(plan.as_ref()) {
                true => Arc::new(CoalescePartitionsExec::new(plan)) as Arc<dyn ExecutionPlan>,
                false => plan,
            })
        };
        self.cpu.compute(planning, self.limits.timeout, "planning the statement").await
    }

    /// Runs one output partition of a ticket's statement, for a caller who
    /// may read what `may_read` allows (checked again: a ticket grants
    /// nothing). Waits for a turn among the running queries, and fails once
    /// the query runs past its time limit.
    ///
    /// Also says whether the rows are the ticket's for good
    /// ([`Planned::reusable`] against the ticket's pins), so that a cache of
    /// DoGet streams may keep them.
    pub async fn execute(&self, ticket: StatementTicket, may_read: MayRead) -> Result<(Execution, bool), Error> {
        let parameters = ticket::decode_parameters(&ticket.parameters)?;
        let pins = ticket.pins.unwrap_or_default();
        let planned = self.plan(&ticket.sql, parameters.as_ref(), may_read, Some(pins.clone())).await?;
        let reusable = planned.reusable(&pins);
        let plan = self.physical(&planned).await?;
        let partitions = plan.output_partitioning().partition_count();
        if partitions != ticket.partitions as usize || ticket.partition as usize >= partitions {
            return Err(Error::invalid(format!(
                "bad ticket: partition {} of {} for a plan of {partitions} partitions",
                ticket.partition, ticket.partitions
            )));
        }
        let timeout = self.limits.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let permit = tokio::time::timeout_at(deadline, self.running.clone().acquire_owned())
            .await
            .map_err(|_| {
                Error::TimedOut(format!(
                    "the query waited {} for a turn: {} queries, the most at once (sheaf serve \
                     --sql-max-queries), held them",
                    humantime::format_duration(timeout),
                    self.limits.max_queries.max(1)
                ))
            })?
            .map_err(|_| Error::internal("running a query", "the query gate is closed"))?;
        let schema = crate::query::wire_schema(&plan.schema());
        let reads = planned.reads();
        // One partition runs alone: DataFusion's sibling scans must not
        // share (steal) work, or it would read the other endpoints' rows.
        let mut state = planned.state;
        state.config_mut().options_mut().execution.enable_file_stream_work_stealing = partitions == 1;
        let task = state.task_ctx();
        let partition = ticket.partition as usize;
        let wire = schema.clone();
        let produce = move |stop: Stop| {
            let plan = stop::stoppable(plan, &stop).map_err(|e| from_datafusion("planning the statement", e))?;
            let stream = plan.execute(partition, task).map_err(|e| running(e, &reads))?;
            // The turn is held while the query computes on the SQL runtime:
            // a query cancelled or timed out keeps it until its computation
            // reaches the next check of its stop flag, or yields.
            let batches = stream.map(move |b| {
                let _turn = &permit;
                b.map_err(|e| running(e, &reads)).and_then(|b| crate::query::to_wire(b, &wire))
            });
            Ok(batches.boxed())
        };
        let batches = self.cpu.run(produce, deadline, timeout);
        Ok((Execution { schema, batches, stats: Arc::new(ReadStats::default()) }, reusable))
    }
}

/// Plans a parsed statement ([`SqlEngine::plan`]) in a session of its own:
/// the catalog of what the caller may read (or the ticket's pins), the
/// `sheaf()` table function, and a memory pool of `memory` bytes.
async fn plan_statement(
    base: SessionState,
    engine: Arc<Engine>,
    memory: usize,
    statement: DfStatement,
    parameters_given: Option<RecordBatch>,
    may_read: MayRead,
    pins: Option<Pins>,
) -> Result<Planned, Error> {
    let resolver = Arc::new(Resolver::new(engine, may_read, pins));
    let uris = catalog::function_uris(&statement)?;
    let function = resolver.function_tables(uris).await?;
    let catalogs = MemoryCatalogProviderList::new();
    catalogs.register_catalog(CATALOG.to_owned(), Arc::new(SheafCatalog(resolver.clone())));
    let mut functions = base.table_functions().clone();
    functions
        .insert(TABLE_FUNCTION.to_owned(), Arc::new(TableFunction::new(TABLE_FUNCTION.into(), Arc::new(function))));
    let runtime = base.runtime_env();
    let runtime = Arc::new(RuntimeEnv {
        memory_pool: Arc::new(FairSpillPool::new(memory)),
        disk_manager: runtime.disk_manager.clone(),
        cache_manager: runtime.cache_manager.clone(),
        object_store_registry: runtime.object_store_registry.clone(),
    });
    let mut state = SessionStateBuilder::new_from_existing(base)
        .with_catalog_list(Arc::new(catalogs))
        .with_table_functions(functions)
        .with_runtime_env(runtime)
        .build();
    // The statement's clock: `now()` and `current_date` are read once,
    // when it is planned (without it DataFusion cannot fold them and
    // fails the query).
    state.mark_start_execution();
    let plan = state.statement_to_plan(statement).await.map_err(|e| from_datafusion("planning the statement", e))?;
    let parameters = parameter_schema(&plan)?;
    let plan = match parameters_given {
        Some(batch) => bind(plan, &batch, &parameters)?,
        None => plan,
    };
    Ok(Planned { state, plan, pins: resolver.pins(), parameters })
}

/// Whether every node of `plan` keeps its partitions apart.
fn independent(plan: &dyn ExecutionPlan) -> bool {
    const APART: [&str; 7] = [
        "DataSourceExec",
        "ProjectionExec",
        "FilterExec",
        "CoalesceBatchesExec",
        "StreamingTableExec",
        "CooperativeExec",
        "EmptyExec",
    ];
    APART.contains(&plan.name()) && plan.children().iter().all(|c| independent(c.as_ref()))
}

/// The parameters a plan takes, `$1`, `$2`, ... in order, typed when the
/// planner could infer their types.
fn parameter_schema(plan: &LogicalPlan) -> Result<Schema, Error> {
    let fields = plan.get_parameter_fields().map_err(|e| from_datafusion("reading the parameters", e))?;
    let mut names: Vec<&String> = fields.keys().collect();
    names.sort_by_key(|n| (n.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX), n.as_str()));
    // Parameters are bound by position: `$3` alone would take the first value.
    if let Some((i, name)) = names.iter().enumerate().find(|(i, n)| n.as_str() != format!("${}", i + 1)) {
        return Err(Error::invalid(format!(
            "placeholders are numbered $1, $2, ... without gaps; the statement uses {name} but not ${}",
            i + 1
        )));
    }
    Ok(Schema::new(
        names
            .into_iter()
            .map(|n| {
                let data_type = fields[n].as_ref().map_or(arrow::datatypes::DataType::Null, |f| f.data_type().clone());
                arrow::datatypes::Field::new(n.as_str(), data_type, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Binds the first row of `batch` to the plan's parameters, in order.
fn bind(plan: LogicalPlan, batch: &RecordBatch, parameters: &Schema) -> Result<LogicalPlan, Error> {
    if batch.num_columns() != parameters.fields().len() {
        return Err(Error::invalid(format!(
            "the statement takes {} parameters; {} were bound",
            parameters.fields().len(),
            batch.num_columns()
        )));
    }
    if batch.num_rows() != 1 {
        return Err(Error::invalid(format!("bind one row of parameters per execution; got {} rows", batch.num_rows())));
    }
    // Drivers send their own types (JDBC's setInt an Int32 for a BIGINT
    // column): each value is cast to the type the planner expects.
    let mut values = Vec::with_capacity(batch.num_columns());
    for (column, field) in batch.columns().iter().zip(parameters.fields()) {
        let value = ScalarValue::try_from_array(column, 0).map_err(|e| from_datafusion("reading the parameters", e))?;
        let expected = field.data_type();
        let given = value.data_type();
        let value = match expected.is_null() || given == *expected {
            true => value,
            // A NULL of any type is the expected type's NULL.
            false if value.is_null() => ScalarValue::try_from(expected).unwrap_or(value),
            false => {
                let refuse = |why: String| {
                    Error::invalid(format!("parameter {} is {given} and cannot become {expected}: {why}", field.name()))
                };
                if !compatible(&given, expected) {
                    return Err(refuse(format!(
                        "bind a value of that kind, or cast it in the statement (CAST({} AS ...))",
                        field.name()
                    )));
                }
                let cast = value.cast_to(expected).map_err(|e| refuse(e.strip_backtrace()))?;
                // A number that changes on the way (7.9 as an integer) is
                // refused, not truncated.
                if !matches!(given, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                    && cast.cast_to(&given).ok().as_ref() != Some(&value)
                {
                    return Err(refuse(format!("{value} does not fit without loss")));
                }
                cast
            }
        };
        values.push(value);
    }
    plan.with_param_values(ParamValues::from(values)).map_err(|e| from_datafusion("binding the parameters", e))
}

/// Whether a parameter of type `given` may be cast to `expected`: within
/// one kind (numbers, text, times and dates, booleans, bytes), or from text
/// (drivers bind strings for anything; the cast parses them). A boolean or
/// a timestamp is not a number here, though casts would make one.
fn compatible(given: &DataType, expected: &DataType) -> bool {
    #[derive(PartialEq)]
    enum Kind {
        Number,
        Text,
        Time,
        Boolean,
        Bytes,
        Other,
    }
    let kind = |t: &DataType| match t {
        t if t.is_numeric() => Kind::Number,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
        t if t.is_temporal() => Kind::Time,
        DataType::Boolean => Kind::Boolean,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Kind::Bytes,
        _ => Kind::Other,
    };
    kind(given) == Kind::Text || (kind(given) == kind(expected) && kind(given) != Kind::Other)
}

/// A DataFusion error as a query error: Sheaf's own errors raised inside
/// DataFusion (a package or table not found) come out as they went in;
/// the rest are classified ([`Error::engine`]).
/// An error of a running statement; one about undecodable stored data
/// names what the statement reads (see [`Planned::reads`]).
fn running(e: DataFusionError, reads: &str) -> Error {
    match from_datafusion("running the statement", e) {
        Error::Corrupt { context, source } => {
            Error::Corrupt { context: format!("{context} (reading {reads})"), source }
        }
        other => other,
    }
}

pub(super) fn from_datafusion(context: &str, e: DataFusionError) -> Error {
    match take_ours(e) {
        Ok(ours) => ours,
        Err(e) => Error::engine(context, e),
    }
}

fn take_ours(e: DataFusionError) -> Result<Error, DataFusionError> {
    match e {
        DataFusionError::External(b) => match b.downcast::<Error>() {
            Ok(ours) => Ok(*ours),
            Err(b) => match b.downcast::<DataFusionError>() {
                Ok(inner) => take_ours(*inner),
                Err(b) => Err(DataFusionError::External(b)),
            },
        },
        DataFusionError::Context(c, inner) => take_ours(*inner).map_err(|i| DataFusionError::Context(c, Box::new(i))),
        // An error one partition shares with the others: ours if no other
        // holds it any more, else classified where it lies.
        DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
            Ok(inner) => take_ours(inner),
            Err(shared) => Err(DataFusionError::Shared(shared)),
        },
        DataFusionError::ArrowError(a, bt) => match *a {
            arrow::error::ArrowError::ExternalError(b) => match b.downcast::<DataFusionError>() {
                Ok(inner) => take_ours(*inner),
                Err(b) => match b.downcast::<Error>() {
                    Ok(ours) => Ok(*ours),
                    Err(b) => {
                        Err(DataFusionError::ArrowError(Box::new(arrow::error::ArrowError::ExternalError(b)), bt))
                    }
                },
            },
            other => Err(DataFusionError::ArrowError(Box::new(other), bt)),
        },
        other => Err(other),
    }
}
