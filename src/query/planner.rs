//! Reads through DataFusion's planner. A read's input becomes a table (one
//! Parquet slice, or the rows of a whole-file table or of a manifest) and
//! its columns, filter and limit a logical plan, which DataFusion optimizes
//! and turns into the physical plan that runs: the projection and the filter
//! go into the Parquet decoder (the filter is evaluated once, there, and
//! prunes row groups and pages), the limit into the scan. Sampling and `rows`
//! stay Sheaf's: a row selection in the Parquet access plan, or positions
//! selected before the plan for inputs read whole, so they apply before the
//! filter, as the ticket says.

use super::{Error, limits};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Column, DataFusionError};
use datafusion::datasource::provider_as_source;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use std::sync::{Arc, Mutex};

/// What a read keeps of its input.
pub(super) struct Shape<'a> {
    /// Output columns by name, in order, each once.
    pub columns: &'a [String],
    /// The filter (columns by name), applied before the limit.
    pub filter: Option<&'a Expr>,
    /// Rows kept at most, after the filter.
    pub limit: Option<u64>,
}

/// The physical plan of `shape` over `input`, planned and optimized by
/// DataFusion in `state`; it has one output partition, in input order.
/// Planning recurses once per level of the filter: it runs on the large
/// planning stack (every table planned here answers at once, nothing waits).
pub(super) fn plan(
    state: &SessionState,
    input: Arc<dyn TableProvider>,
    shape: &Shape<'_>,
) -> Result<Arc<dyn ExecutionPlan>, Error> {
    let plan = limits::on_planning_stack(|| futures::executor::block_on(planned(state, input, shape)))
        .map_err(|e| Error::engine("planning the read", e))?;
    let partitions = plan.properties().output_partitioning().partition_count();
    if partitions != 1 {
        return Err(Error::internal("planning the read", format!("the plan has {partitions} output partitions")));
    }
    Ok(plan)
}

async fn planned(
    state: &SessionState,
    input: Arc<dyn TableProvider>,
    shape: &Shape<'_>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let mut builder = LogicalPlanBuilder::scan("input", provider_as_source(input), None)?;
    if let Some(filter) = shape.filter {
        builder = builder.filter(filter.clone())?;
    }
    // DataFusion keeps a limit as an i64: one beyond (SQL's LIMIT
    // 9223372036854775807 OFFSET 1 pushed down as skip + fetch) means all.
    if let Some(limit) = shape.limit.filter(|&l| l < i64::MAX as u64) {
        builder = builder.limit(0, Some(usize::try_from(limit).unwrap_or(usize::MAX)))?;
    }
    let columns = shape.columns.iter().map(|c| Expr::Column(Column::new_unqualified(c)));
    let logical = builder.project(columns)?.build()?;
    state.create_physical_plan(&logical).await
}

/// Runs a plan from [`plan`]. Sheaf errors raised by the input (storage,
/// data, limits) come out as they went in; DataFusion's are classified,
/// with `what` saying what was being done.
pub(super) fn execute(
    plan: &Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
    what: String,
) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> {
    let batches = plan.execute(0, ctx).map_err(|e| from_engine(e, &what))?;
    Ok(batches.map_err(move |e| from_engine(e, &what)).boxed())
}

/// A DataFusion error as a Sheaf error: one raised by Sheaf and carried
/// through the plan is unwrapped.
fn from_engine(e: DataFusionError, what: &str) -> Error {
    match e {
        DataFusionError::External(inner) => match inner.downcast::<Error>() {
            Ok(sheaf) => *sheaf,
            Err(other) => Error::engine(what, DataFusionError::External(other)),
        },
        other => Error::engine(what, other),
    }
}

/// Rows and bytes the plan's scans read: rows decoded (those a pushed-down
/// filter dropped included) and bytes fetched. Final once the plan's
/// stream has ended.
pub(super) fn scanned(plan: &Arc<dyn ExecutionPlan>) -> (u64, u64) {
    let (mut rows, mut bytes) = (0, 0);
    if plan.downcast_ref::<DataSourceExec>().is_some()
        && let Some(m) = plan.metrics()
    {
        let get = |name: &str| m.sum_by_name(name).map_or(0, |v| v.as_usize() as u64);
        rows += m.output_rows().unwrap_or(0) as u64 + get("pushdown_rows_pruned");
        bytes += get("bytes_scanned");
    }
    for child in plan.children() {
        let (r, b) = scanned(child);
        rows += r;
        bytes += b;
    }
    (rows, bytes)
}

/// Rows already read, as a table scanned once (whole-file tables, the
/// manifest's entries).
pub(super) fn rows_table(
    schema: SchemaRef,
    batches: BoxStream<'static, Result<RecordBatch, Error>>,
) -> Result<Arc<dyn TableProvider>, Error> {
    let partition = Arc::new(Once { schema: schema.clone(), batches: Mutex::new(Some(batches)) });
    let table = StreamingTable::try_new(schema, vec![partition]).map_err(|e| Error::engine("planning the read", e))?;
    Ok(Arc::new(table))
}

/// A stream of rows that can be executed once.
struct Once {
    schema: SchemaRef,
    batches: Mutex<Option<BoxStream<'static, Result<RecordBatch, Error>>>>,
}

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Once").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl PartitionStream for Once {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.batches.lock().unwrap_or_else(|p| p.into_inner()).take();
        let batches = match taken {
            Some(b) => b.map_err(|e| DataFusionError::External(Box::new(e))).boxed(),
            None => stream::once(async { Err(DataFusionError::Internal("a read's rows were executed twice".into())) })
                .boxed(),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::reader::PinnedPart;
    use crate::query::reader::{PINNED_STORE_URL, PinnedReaders};
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext, col, lit};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
    use parquet::file::properties::WriterProperties;

    /// A Parquet part of 1,000 rows (`n` 0..1000, `s` its text) in row
    /// groups of 100, as a table, and a context to plan it in.
    fn part() -> (SessionContext, Arc<dyn TableProvider>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let n: Vec<i64> = (0..1000).collect();
        let s: Vec<String> = n.iter().map(|i| format!("row {i}")).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(n)), Arc::new(StringArray::from(s))])
                .unwrap();
        let mut bytes = Vec::new();
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(100)).build();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let bytes = bytes::Bytes::from(bytes);
        let metadata = ArrowReaderMetadata::load(
            &bytes,
            ArrowReaderOptions::new().with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional),
        )
        .unwrap()
        .metadata()
        .clone();
        let store = Arc::new(object_store::memory::InMemory::new());
        let path = object_store::path::Path::from("part.parquet");
        futures::executor::block_on(object_store::ObjectStoreExt::put(store.as_ref(), &path, bytes.clone().into()))
            .unwrap();
        let size = bytes.len() as u64;
        let pinned = PinnedPart { name: "part.parquet".into(), store, path, size, metadata };
        let readers = Arc::new(PinnedReaders::new([pinned]));
        let file = PartitionedFile::new("part.parquet", size);
        let mut config = SessionConfig::new().with_target_partitions(1);
        config.options_mut().execution.parquet.pushdown_filters = true;
        let ctx = SessionContext::new_with_config(config);
        let url = url::Url::parse(PINNED_STORE_URL).unwrap();
        ctx.register_object_store(&url, Arc::new(object_store::memory::InMemory::new()));
        (ctx, Arc::new(crate::query::pinned_table::PinnedTable::new(schema, readers, vec![file], None)))
    }

    #[tokio::test]
    async fn filter_is_evaluated_once_in_the_decoder_and_the_limit_after_it() {
        let (ctx, table) = part();
        let filter = col("n").gt_eq(lit(950i64)).or(col("n").lt(lit(5i64)));
        let columns = ["s".to_owned()];
        let shape = Shape { columns: &columns, filter: Some(&filter), limit: Some(7) };
        let plan = plan(&ctx.state(), table, &shape).unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        assert!(!shown.contains("FilterExec"), "the filter stayed above the scan:\n{shown}");
        assert!(shown.contains("predicate="), "the filter is not in the scan:\n{shown}");
        let batches: Vec<RecordBatch> =
            execute(&plan, ctx.task_ctx(), "reading".into()).unwrap().try_collect().await.unwrap();
        let rows: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                b.column(0).as_any().downcast_ref::<StringArray>().unwrap().iter().map(|s| s.unwrap().to_owned())
            })
            .collect();
        assert_eq!(rows, ["row 0", "row 1", "row 2", "row 3", "row 4", "row 950", "row 951"]);
        // Row groups 1 to 8 are pruned by their statistics: what was decoded
        // is at most the two row groups at the ends.
        let (scanned, _) = scanned(&plan);
        assert!((7..=200).contains(&scanned), "{scanned} rows scanned");
    }

    #[tokio::test]
    async fn rows_read_whole_are_filtered_limited_and_projected() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batches = (0..4)
            .map(|k| {
                Ok(RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from_iter_values(k * 10..k * 10 + 10))],
                )
                .unwrap())
            })
            .collect::<Vec<_>>();
        let table = rows_table(schema, stream::iter(batches).boxed()).unwrap();
        let (ctx, _) = part();
        let filter = col("n").gt(lit(15i64));
        let columns = ["n".to_owned()];
        let shape = Shape { columns: &columns, filter: Some(&filter), limit: Some(3) };
        let plan = plan(&ctx.state(), table, &shape).unwrap();
        let out: Vec<RecordBatch> =
            execute(&plan, ctx.task_ctx(), "reading".into()).unwrap().try_collect().await.unwrap();
        let n: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(n, [16, 17, 18]);
    }

    #[tokio::test]
    async fn an_error_of_the_input_comes_out_as_it_went_in() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let failing = stream::once(async { Err(Error::invalid("the input failed")) }).boxed();
        let table = rows_table(schema, failing).unwrap();
        let (ctx, _) = part();
        let columns = ["n".to_owned()];
        let plan = plan(&ctx.state(), table, &Shape { columns: &columns, filter: None, limit: None }).unwrap();
        let got: Result<Vec<RecordBatch>, Error> =
            execute(&plan, ctx.task_ctx(), "reading".into()).unwrap().try_collect().await;
        let e = got.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    }
}
