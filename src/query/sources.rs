//! Reading table data: Parquet footers and DataFusion scans of row-group
//! slices, and whole-file readers for CSV, TSV, JSON lines and Arrow IPC.

use super::Error;
use super::table::Format;
use crate::manifest::Entry;
use crate::registry::Registry;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use object_store::{ObjectMeta, ObjectStoreExt};
use std::io::Cursor;
use std::sync::Arc;

/// Rows read to infer the schema of CSV and JSON-lines files.
const INFER_RECORDS: usize = 1000;
/// Rows per batch for the whole-file readers.
pub const BATCH_ROWS: usize = 8192;

/// Reads a Parquet file's footer (schema, row groups) through the registry's
/// read policy.
pub async fn parquet_metadata(registry: &Registry, entry: &Entry) -> Result<ArrowReaderMetadata, Error> {
    let located = registry.locate(entry).await?;
    let meta = ObjectMeta {
        location: located.path,
        last_modified: Default::default(),
        size: entry.size,
        e_tag: None,
        version: located.version,
    };
    let unreadable = |e: &dyn std::fmt::Display| Error::invalid(format!("{} is not a readable Parquet file: {e}", entry.logical_key));
    let footer = match DFParquetMetadata::new(located.store.as_ref(), &meta).fetch_metadata().await {
        Ok(footer) => footer,
        // Tell a missing or unreachable object (NOT_FOUND, UNAVAILABLE) from
        // bytes that are not Parquet (INVALID_ARGUMENT).
        Err(e) => {
            let what = format!("data of {} at {}", entry.logical_key, entry.physical_keys.first().map(String::as_str).unwrap_or(""));
            return Err(match located.store.head(&meta.location).await {
                Err(store_error) => crate::registry::Error::storage(what, store_error).into(),
                Ok(_) => unreadable(&e),
            });
        }
    };
    ArrowReaderMetadata::try_new(footer, ArrowReaderOptions::new()).map_err(|e| unreadable(&e))
}

/// Reads an entry's bytes whole.
pub async fn read_whole(registry: &Registry, entry: &Entry) -> Result<Bytes, Error> {
    let chunks: Vec<Bytes> = registry.open_entry(entry).await?.try_collect().await?;
    if chunks.len() == 1 {
        return Ok(chunks.into_iter().next().expect("one chunk"));
    }
    let mut all = Vec::with_capacity(entry.size as usize);
    for c in chunks {
        all.extend_from_slice(&c);
    }
    Ok(Bytes::from(all))
}

/// Batches of a whole file in a sequential format, with its schema.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Opens a whole file of a sequential format: its schema and its batches.
/// CSV and JSON-lines schemas are inferred from the first 1000 records, so
/// planning and reading always agree.
pub fn open_sequential(format: Format, data: Bytes, key: &str) -> Result<(SchemaRef, Batches), Error> {
    let bad = |e: ArrowError| Error::invalid(format!("cannot read {key} as {}: {e}", format.name()));
    match format {
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
            let csv_format = arrow::csv::reader::Format::default().with_header(true).with_delimiter(delimiter);
            let (schema, _) = csv_format.infer_schema(Cursor::new(&data[..]), Some(INFER_RECORDS)).map_err(bad)?;
            let schema = Arc::new(schema);
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_format(csv_format)
                .with_batch_size(BATCH_ROWS)
                .build(Cursor::new(data))
                .map_err(bad)?;
            Ok((schema, Box::new(reader)))
        }
        Format::JsonLines => {
            let (schema, _) =
                arrow::json::reader::infer_json_schema(Cursor::new(&data[..]), Some(INFER_RECORDS)).map_err(bad)?;
            let schema = Arc::new(schema);
            let reader = arrow::json::ReaderBuilder::new(schema.clone())
                .with_batch_size(BATCH_ROWS)
                .build(Cursor::new(data))
                .map_err(bad)?;
            Ok((schema, Box::new(reader)))
        }
        Format::ArrowFile => {
            let reader = arrow::ipc::reader::FileReader::try_new(Cursor::new(data), None).map_err(bad)?;
            Ok((reader.schema(), Box::new(reader)))
        }
        Format::ArrowStream => {
            let reader = arrow::ipc::reader::StreamReader::try_new(Cursor::new(data), None).map_err(bad)?;
            Ok((reader.schema(), Box::new(reader)))
        }
        Format::Parquet | Format::Manifest => unreachable!("not a sequential file format"),
    }
}
