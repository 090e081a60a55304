//! Parquet parts of a pinned revision as one DataFusion table: a Flight SQL
//! table (every part, with statistics from the footers, so `count(*)` needs
//! no read) and the slice one URI read decodes (one part whose access plan
//! holds its row groups and selected rows) are both scanned by it.
//!
//! The scan takes its Parquet options from the session (page index, bloom
//! filters, decoder pushdown); filters are not taken here: DataFusion's
//! physical optimizer pushes the filter above the scan into the Parquet
//! source (pruning, and the decoder when `pushdown_filters` is on), and
//! taking them here too would evaluate them twice.

use super::reader::{PINNED_STORE_URL, PinnedReaders};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// Pinned Parquet parts scanned as one table, in order.
#[derive(Debug)]
pub struct PinnedTable {
    schema: SchemaRef,
    /// Reads the parts (shared by every scan of the table).
    readers: Arc<PinnedReaders>,
    /// The parts as the scan lists them (with statistics or an access plan).
    files: Vec<PartitionedFile>,
    /// The table's statistics, when known.
    statistics: Option<Statistics>,
}

impl PinnedTable {
    /// `files` of `schema`, read by `readers`.
    pub fn new(
        schema: SchemaRef,
        readers: Arc<PinnedReaders>,
        files: Vec<PartitionedFile>,
        statistics: Option<Statistics>,
    ) -> Self {
        PinnedTable { schema, readers, files, statistics }
    }
}

#[async_trait]
impl TableProvider for PinnedTable {
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
        self.statistics.clone()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(state.table_options().parquet.clone())
            .with_parquet_file_reader_factory(self.readers.clone());
        let mut config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(PINNED_STORE_URL)?, Arc::new(source))
            .with_file_group(FileGroup::new(self.files.clone()))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit);
        if let Some(statistics) = &self.statistics {
            config = config.with_statistics(statistics.clone());
        }
        Ok(DataSourceExec::from_data_source(config.build()))
    }
}
