//! Tables of pinned revisions as DataFusion [`TableProvider`]s.
//!
//! - [`ParquetTable`]: a Parquet table (one file or a folder of parts)
//!   scanned by DataFusion itself, so projections, filters (row-group,
//!   page-index and bloom-filter pruning, pushdown into the decoder) and
//!   limits are the planner's; the parts' metadata comes from the engine's
//!   cache and their statistics answer `count(*)` without a read.
//! - [`PlannedTable`]: any dataset URI read exactly as a Flight DoGet of it
//!   would (whole-file formats, the manifest table, and the `sheaf()` table
//!   function with sampling and every other URI parameter), one partition
//!   per endpoint of its plan.

use super::catalog::external;
use crate::query::reader::{PINNED_STORE_URL, PinnedPart, PinnedReaders};
use crate::query::table::Table;
use crate::query::{DatasetUri, Engine, Error, Plan};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

/// A Parquet table of a pinned revision.
#[derive(Debug)]
pub struct ParquetTable {
    schema: SchemaRef,
    parts: Vec<PinnedPart>,
    statistics: Statistics,
}

impl ParquetTable {
    /// The table's parts located and described (footers from the cache).
    pub async fn open(engine: &Engine, table: &Table, label: &str) -> Result<Self, Error> {
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
        Ok(ParquetTable { schema, parts, statistics })
    }
}

#[async_trait]
impl TableProvider for ParquetTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Pruning and decoder pushdown are not exact for every predicate:
        // the planner keeps its filter above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let readers = Arc::new(PinnedReaders::new(self.parts.iter().cloned()));
        let mut source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(state.table_options().parquet.clone())
            .with_parquet_file_reader_factory(readers);
        if let Some(predicate) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(predicate, &df_schema)?);
        }
        let files = self.parts.iter().map(|p| p.file(&self.schema)).collect::<Vec<_>>();
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(PINNED_STORE_URL)?, Arc::new(source))
            .with_file_group(FileGroup::new(files))
            .with_statistics(self.statistics.clone())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// A dataset URI read by the engine, one partition per endpoint.
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

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .plan
            .tickets
            .iter()
            .map(|t| {
                Arc::new(Endpoint { engine: self.engine.clone(), ticket: t.clone(), schema: self.plan.schema.clone() })
                    as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(self.plan.schema.clone(), partitions, projection, [], false, limit)?))
    }
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
