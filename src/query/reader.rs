//! Parquet readers of pinned parts for DataFusion scans: each part's bytes
//! come from the store it lives in (as the registry located it, after the
//! read policy), and its metadata (footer and page index) from the engine's
//! cache, read once per part however many scans use it. Scans name their
//! files by logical key under [`PINNED_STORE_URL`], a URL registered once in
//! the engine's long-lived context: no store is registered per request.

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use datafusion::common::Statistics;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{ParquetFileMetrics, ParquetFileReaderFactory};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// The object-store URL DataFusion scans of pinned parts name. Registered
/// once (to an empty store); the readers below never use it.
pub const PINNED_STORE_URL: &str = "sheaf-pinned://parts";

/// One Parquet part of a pinned revision, located and described.
#[derive(Debug, Clone)]
pub struct PinnedPart {
    /// The part's logical key: the name the scan gives its file.
    pub name: String,
    /// The store holding it.
    pub store: Arc<dyn ObjectStore>,
    /// Its path in that store.
    pub path: Path,
    /// Its size in bytes.
    pub size: u64,
    /// Its footer (with the page index when the file has one).
    pub metadata: Arc<ParquetMetaData>,
}

impl PinnedPart {
    /// The file a scan lists for this part, with statistics from its footer
    /// in `schema` (row counts exact, so `count(*)` needs no read).
    pub fn file(&self, schema: &SchemaRef) -> PartitionedFile {
        let file = PartitionedFile::new(self.name.clone(), self.size);
        match DFParquetMetadata::statistics_from_parquet_metadata(&self.metadata, schema) {
            Ok(stats) => file.with_statistics(Arc::new(stats)),
            Err(_) => file.with_statistics(Arc::new(Statistics::new_unknown(schema))),
        }
    }
}

/// A [`ParquetFileReaderFactory`] over a set of pinned parts, keyed by the
/// name their scans give them.
#[derive(Debug, Default)]
pub struct PinnedReaders {
    parts: HashMap<String, PinnedPart>,
}

impl PinnedReaders {
    /// Readers of `parts`.
    pub fn new(parts: impl IntoIterator<Item = PinnedPart>) -> Self {
        PinnedReaders { parts: parts.into_iter().map(|p| (Path::from(p.name.as_str()).to_string(), p)).collect() }
    }
}

impl ParquetFileReaderFactory for PinnedReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let name = file.object_meta.location.as_ref();
        let part = self.parts.get(name).cloned().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!("no pinned Parquet part is named {name}"))
        })?;
        let metrics = ParquetFileMetrics::new(partition_index, name, metrics);
        Ok(Box::new(PinnedReader { part, metrics }))
    }
}

/// Reads one pinned part: ranges from its store, metadata from memory.
struct PinnedReader {
    part: PinnedPart,
    metrics: ParquetFileMetrics,
}

fn storage_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for PinnedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.metrics.bytes_scanned.add((range.end - range.start) as usize);
        self.part.store.get_range(&self.part.path, range).map_err(storage_error).boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.metrics.bytes_scanned.add(total as usize);
        async move { self.part.store.get_ranges(&self.part.path, &ranges).await.map_err(storage_error) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let metadata = self.part.metadata.clone();
        async move { Ok(metadata) }.boxed()
    }
}
