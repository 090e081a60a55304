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
use futures::stream::{self, BoxStream, StreamExt};
use std::io::{BufReader, Read};
use std::sync::Arc;

/// Rows read to infer the schema of CSV and JSON-lines files.
const INFER_RECORDS: usize = 1000;
/// Rows per batch for the whole-file readers.
pub const BATCH_ROWS: usize = 8192;
/// Rows per batch of Parquet scans: about 1-4 MB for typical rows, so a read
/// travels in a few hundred messages rather than thousands (the per-message
/// cost on both ends of a Flight stream is what small batches pay).
pub const PARQUET_BATCH_ROWS: usize = 65_536;

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

/// A blocking [`Read`] over an entry's byte stream, for arrow's synchronous
/// CSV, JSON and IPC readers running on a blocking thread. A task feeds it a
/// few chunks ahead; dropping the reader ends that task (and the GET).
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, Error>>,
    current: Bytes,
}

impl ChunkReader {
    async fn open(registry: &Registry, entry: &Entry) -> Result<Self, Error> {
        let mut stream = registry.open_entry(entry).await?;
        let (tx, chunks) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                if tx.send(chunk.map_err(Error::from)).await.is_err() {
                    break;
                }
            }
        });
        Ok(ChunkReader { chunks, current: Bytes::new() })
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// An Arrow IPC file read front to back: after the 8-byte magic and padding
/// it holds the stream format, ended by an end-of-stream marker before the
/// footer, so no seeking is needed.
fn ipc_file_as_stream(mut reader: impl Read) -> Result<impl Read, ArrowError> {
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|e| ArrowError::IpcError(format!("reading the file header: {e}")))?;
    if &magic[..6] != b"ARROW1" {
        return Err(ArrowError::IpcError("not an Arrow IPC file (no ARROW1 magic)".into()));
    }
    Ok(reader)
}

fn csv_format(format: Format) -> arrow::csv::reader::Format {
    let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
    arrow::csv::reader::Format::default().with_header(true).with_delimiter(delimiter)
}

fn unreadable(format: Format, key: &str, e: ArrowError) -> Error {
    Error::invalid(format!("cannot read {key} as {}: {e}", format.name()))
}

/// The schema of a file in a sequential format, reading only what that
/// needs: the first 1000 records of CSV and JSON lines (planning and reading
/// always use this schema), the schema message of Arrow IPC.
pub async fn sequential_schema(registry: &Registry, entry: &Entry, format: Format) -> Result<SchemaRef, Error> {
    let reader = ChunkReader::open(registry, entry).await?;
    let key = entry.logical_key.clone();
    tokio::task::spawn_blocking(move || {
        let bad = |e| unreadable(format, &key, e);
        let schema = match format {
            Format::Csv | Format::Tsv => csv_format(format).infer_schema(reader, Some(INFER_RECORDS)).map_err(bad)?.0,
            Format::JsonLines => {
                arrow::json::reader::infer_json_schema(BufReader::new(reader), Some(INFER_RECORDS)).map_err(bad)?.0
            }
            Format::ArrowFile => {
                let stream = ipc_file_as_stream(reader).map_err(bad)?;
                return Ok(arrow::ipc::reader::StreamReader::try_new(stream, None).map_err(bad)?.schema());
            }
            Format::ArrowStream => return Ok(arrow::ipc::reader::StreamReader::try_new(reader, None).map_err(bad)?.schema()),
            Format::Parquet | Format::Manifest => unreachable!("not a sequential file format"),
        };
        Ok(Arc::new(schema))
    })
    .await
    .expect("schema task panicked")
}

/// Streams the batches of a file in a sequential format, decoded on a
/// blocking thread a couple of batches ahead of the consumer: memory stays
/// bounded whatever the file size, and dropping the stream stops the read.
pub async fn read_sequential(
    registry: &Registry,
    entry: &Entry,
    format: Format,
    schema: SchemaRef,
) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> {
    let reader = ChunkReader::open(registry, entry).await?;
    let key = entry.logical_key.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, Error>>(2);
    tokio::task::spawn_blocking(move || {
        let bad = |e| unreadable(format, &key, e);
        let batches: Result<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>, Error> = match format {
            Format::Csv | Format::Tsv => arrow::csv::ReaderBuilder::new(schema)
                .with_format(csv_format(format))
                .with_batch_size(BATCH_ROWS)
                .build(reader)
                .map(|r| Box::new(r) as _)
                .map_err(bad),
            Format::JsonLines => arrow::json::ReaderBuilder::new(schema)
                .with_batch_size(BATCH_ROWS)
                .build(BufReader::new(reader))
                .map(|r| Box::new(r) as _)
                .map_err(bad),
            Format::ArrowFile => ipc_file_as_stream(reader)
                .and_then(|s| arrow::ipc::reader::StreamReader::try_new(s, None))
                .map(|r| Box::new(r) as _)
                .map_err(bad),
            Format::ArrowStream => {
                arrow::ipc::reader::StreamReader::try_new(reader, None).map(|r| Box::new(r) as _).map_err(bad)
            }
            Format::Parquet | Format::Manifest => unreachable!("not a sequential file format"),
        };
        let batches = match batches {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        for batch in batches {
            if tx.blocking_send(batch.map_err(bad)).is_err() {
                return;
            }
        }
    });
    Ok(stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }).boxed())
}
