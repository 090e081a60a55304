//! Tables of pinned revisions as DataFusion [`TableProvider`]s.
//!
//! - [`parquet_table`]: a Parquet table (one file or a folder of parts)
//!   scanned by DataFusion itself, so projections, filters (row-group,
//!   page-index and bloom-filter pruning, pushdown into the decoder) and
//!   limits are the planner's; the parts' metadata comes from the engine's
//!   cache and their statistics answer `count(*)` without a read.
//! - [`PlannedTable`]: any dataset URI read exactly as a Flight DoGet of it
//!   would (whole-file formats, the manifest table, and the `sheaf()` table
//!   function with sampling and every other URI parameter), one partition
//!   per endpoint of its plan.

use super::catalog::external;
use crate::query::pinned_table::PinnedTable;
use crate::query::reader::PinnedReaders;
use crate::query::table::Table;
use crate::query::{DatasetUri, Engine, Error, Plan};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

/// A Parquet table of a pinned revision: its parts located and described
/// (footers from the engine's cache), with statistics merged from them.
pub async fn parquet_table(engine: &Engine, table: &Table, label: &str) -> Result<PinnedTable, Error> {
    let (schema, _) = engine.describe(table, false).await.map_err(|e| e.in_table(&table.path, label))?;
    let mut parts = Vec::with_capacity(table.entries.len());
    for entry in &table.entries {
        parts.push(engine.pinned_part(entry).await?);
    }
    let files: Vec<_> = parts.iter().map(|p| p.file(&schema)).collect();
    let per_file: Vec<&Statistics> = files.iter().filter_map(|f| f.statistics.as_deref()).collect();
    let statistics = match per_file.len() == files.len() {
        true => Statistics::try_merge_iter(per_file, &schema).unwrap_or_else(|_| Statistics::new_unknown(&schema)),
        false => Statistics::new_unknown(&schema),
    };
    Ok(PinnedTable::new(schema, Arc::new(PinnedReaders::new(parts)), files, Some(statistics)))
}

/// A dataset URI read by the engine, one partition per endpoint. Scans
/// re-plan the URI with the columns they need, their filters (when the URI
/// has no `limit`, under which a filter would change which rows are kept)
/// and their limit, so the engine reads only what the statement uses.
#[derive(Debug)]
pub struct PlannedTable {
    engine: Arc<Engine>,
    plan: Plan,
}

impl PlannedTable {
    /// Plans `uri` (resolving its revision).
    pub async fn open(engine: Arc<Engine>, uri: &DatasetUri) -> Result<Self, Error> {
        let plan = engine.plan(uri).await?;
        Ok(PlannedTable { engine, plan })
    }

    /// The URI with its revision pinned.
    pub fn pinned_uri(&self) -> String {
        self.plan.uri.to_string()
    }
}

#[async_trait]
impl TableProvider for PlannedTable {
    fn schema(&self) -> SchemaRef {
        self.plan.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Pushed into the URI's filter when that is safe; the planner keeps
        // its own filter above in every case.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let schema = &self.plan.schema;
        let mut uri = self.plan.uri.clone();
        // Columns: the projected ones (one, for a projection of none).
        let wanted: Option<Vec<usize>> = match projection {
            Some(p) if p.len() < schema.fields().len() => Some(if p.is_empty() { vec![0] } else { p.clone() }),
            _ => None,
        };
        if let Some(indices) = &wanted {
            uri.query.columns = indices.iter().map(|&i| schema.field(i).name().clone()).collect();
        }
        let unlimited = uri.query.limit.is_none();
        if unlimited && let Some(text) = filter_text(filters) {
            uri.query.filter = Some(match uri.query.filter.take() {
                Some(own) => format!("({own}) AND ({text})"),
                None => text,
            });
        }
        if filters.is_empty()
            && let Some(l) = limit
        {
            uri.query.limit = Some(uri.query.limit.map_or(l as u64, |own| own.min(l as u64)));
        }
        let plan = match uri == self.plan.uri {
            true => self.plan.clone(),
            // A filter the URI grammar refuses is left to the planner.
            false => match self.engine.plan(&uri).await {
                Ok(plan) => plan,
                Err(_) if uri.query.filter != self.plan.uri.query.filter => {
                    uri.query.filter = self.plan.uri.query.filter.clone();
                    self.engine.plan(&uri).await.map_err(external)?
                }
                Err(e) => return Err(external(e)),
            },
        };
        // The partitions' schema: the projected columns; a projection of
        // none keeps one column to count rows by, projected away below.
        let partition_schema = plan.schema.clone();
        let projection_after = match projection {
            Some(p) if p.is_empty() => Some(vec![]),
            Some(p) if wanted.is_none() => Some(p.clone()),
            _ => None,
        };
        let partitions: Vec<Arc<dyn PartitionStream>> = plan
            .tickets
            .iter()
            .map(|t| {
                let endpoint =
                    Endpoint { engine: self.engine.clone(), ticket: t.clone(), schema: partition_schema.clone() };
                Arc::new(endpoint) as Arc<dyn PartitionStream>
            })
            .collect();
        let exec =
            StreamingTableExec::try_new(partition_schema, partitions, projection_after.as_ref(), [], false, limit)?;
        Ok(Arc::new(exec))
    }
}

/// The statement's filters on this table as one URI filter (SQL text over
/// the table's own column names), when they can be written as one.
fn filter_text(filters: &[Expr]) -> Option<String> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    let all = conjunction(filters.to_vec())?;
    let unqualified = all
        .transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(datafusion::common::Column::new_unqualified(c.name)))),
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    datafusion::sql::unparser::expr_to_sql(&unqualified).ok().map(|sql| sql.to_string())
}

/// One endpoint of a planned read, as a partition.
#[derive(Debug)]
struct Endpoint {
    engine: Arc<Engine>,
    ticket: crate::proto::Ticket,
    schema: SchemaRef,
}

impl PartitionStream for Endpoint {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (engine, ticket) = (self.engine.clone(), self.ticket.clone());
        let batches = futures::stream::once(async move {
            match engine.execute(ticket).await {
                Ok(execution) => execution.batches.map_err(external).boxed(),
                Err(e) => futures::stream::once(async move { Err(external(e)) }).boxed(),
            }
        })
        .flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}
