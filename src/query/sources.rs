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
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use futures::TryStreamExt;
use futures::stream::{BoxStream, StreamExt};
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
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
    let unreadable = |e: &dyn std::fmt::Display| {
        Error::invalid(format!("{} is not a readable Parquet file: {e}", entry.logical_key))
    };
    // With the page index: scans of the part use this metadata (it is cached)
    // instead of reading the footer again.
    let footer = DFParquetMetadata::new(located.store.as_ref(), &meta)
        .with_page_index_policy(Some(parquet::file::metadata::PageIndexPolicy::Optional))
        .fetch_metadata()
        .await;
    let footer = match footer {
        Ok(footer) => footer,
        // Tell a missing or unreachable object (NOT_FOUND, UNAVAILABLE) from
        // bytes that are not Parquet (INVALID_ARGUMENT).
        Err(e) => {
            let what = format!(
                "data of {} at {}",
                entry.logical_key,
                entry.physical_keys.first().map(String::as_str).unwrap_or("")
            );
            return Err(match located.store.head(&meta.location).await {
                Err(store_error) => crate::registry::Error::storage(what, store_error).into(),
                // The object is there: a read that failed is the storage's
                // fault, not the bytes'.
                Ok(_) if super::error::from_storage(&e) => {
                    Error::engine(format!("reading the footer of {}", entry.logical_key), e)
                }
                Ok(_) => unreadable(&e),
            });
        }
    };
    let footer = super::float_bounds::without_float_bounds(footer);
    ArrowReaderMetadata::try_new(footer, ArrowReaderOptions::new()).map_err(|e| unreadable(&e))
}

/// Reads an entry's bytes whole, checked against its hash.
pub async fn read_whole(registry: &Registry, entry: &Entry) -> Result<Bytes, Error> {
    let chunks: Vec<Bytes> = registry.open_entry_verified(entry).await?.try_collect().await?;
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
/// few chunks ahead; dropping the reader ends that task (and the GET). The
/// bytes are checked against the entry's hash before their end is reached
/// ([`Registry::open_entry_verified`]), and the stream must deliver exactly
/// the entry's size: a stream that ends early (or whose feeding task
/// vanished) is an error, never an end of file.
///
/// Why not tokio-util's `SyncIoBridge` over a `StreamReader`: the bridge
/// needs tokio-util's `io-util` feature, and DataFusion depends on
/// tokio-util, so enabling it rebuilds all of DataFusion (the cold CI build
/// is the budget that matters); the exact-size check above would also have
/// to be written around it.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, Error>>,
    current: Bytes,
    key: String,
    expected: u64,
    seen: u64,
    failure: SourceFailure,
}

/// The error that made a [`ChunkReader`] fail, kept typed: arrow's readers
/// turn the I/O errors of their input into text (a CSV reader's `CsvError`
/// string), and a storage failure or a hash mismatch must reach the client
/// as itself (UNAVAILABLE, DATA_LOSS), not as "not a CSV file".
#[derive(Clone, Default)]
struct SourceFailure(Arc<std::sync::Mutex<Option<Error>>>);

impl SourceFailure {
    /// Records `e`; returns the I/O error the reader reports.
    fn fail(&self, kind: std::io::ErrorKind, e: Error) -> std::io::Error {
        let io = std::io::Error::new(kind, e.to_string());
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        io
    }

    /// The reader's own error, if it failed.
    fn take(&self) -> Option<Error> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl ChunkReader {
    async fn open(registry: &Registry, entry: &Entry) -> Result<Self, Error> {
        let mut stream = registry.open_entry_verified(entry).await?;
        let (tx, chunks) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let chunk = tokio::select! {
                    _ = tx.closed() => return,
                    chunk = stream.next() => chunk,
                };
                let Some(chunk) = chunk else { return };
                if tx.send(chunk.map_err(Error::from)).await.is_err() {
                    return;
                }
            }
        });
        Ok(ChunkReader {
            chunks,
            current: Bytes::new(),
            key: entry.logical_key.clone(),
            expected: entry.size,
            seen: 0,
            failure: SourceFailure::default(),
        })
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.seen += chunk.len() as u64;
                    if self.seen > self.expected {
                        return Err(std::io::Error::other(format!(
                            "{} holds more than the {} bytes its manifest records",
                            self.key, self.expected
                        )));
                    }
                    self.current = chunk;
                }
                Some(Err(e)) => return Err(self.failure.fail(std::io::ErrorKind::Other, e)),
                None if self.seen == self.expected => return Ok(0),
                None => {
                    // Cut short in transit (a stored object of the wrong
                    // size fails its hash check first): worth a retry.
                    let cut =
                        crate::registry::Error::cut_short(format!("data of {}", self.key), self.seen, self.expected);
                    return Err(self.failure.fail(std::io::ErrorKind::UnexpectedEof, cut.into()));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Runs a blocking reader, turning a panic into an error naming `key`.
async fn blocking<T: Send + 'static>(
    key: String,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let panicked = |what: String| Error::Panicked(format!("reading {key} ({what})"));
    match tokio::task::spawn_blocking(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(panicked(super::error::panic_message(panic.as_ref()))),
        Err(e) => Err(panicked(e.to_string())),
    }
}

/// An Arrow IPC file read front to back: after the 6-byte magic and zero
/// padding (2 bytes in the format's spec, up to the writer's alignment in
/// practice: arrow-rs pads to 64) it holds the stream format, starting with
/// a non-zero continuation marker and ended by an end-of-stream marker
/// before the footer, so no seeking is needed.
fn ipc_file_as_stream(mut reader: impl Read) -> Result<impl Read, ArrowError> {
    let bad = |e: std::io::Error| ArrowError::IpcError(format!("reading the file header: {e}"));
    let mut magic = [0u8; 6];
    reader.read_exact(&mut magic).map_err(bad)?;
    if &magic != b"ARROW1" {
        return Err(ArrowError::IpcError("not an Arrow IPC file (no ARROW1 magic)".into()));
    }
    let mut byte = [0u8; 1];
    for _ in 0..=64 {
        reader.read_exact(&mut byte).map_err(bad)?;
        if byte[0] != 0 {
            return Ok(std::io::Cursor::new(byte).chain(reader));
        }
    }
    Err(ArrowError::IpcError("no stream after the file header's padding".into()))
}

fn csv_format(format: Format) -> arrow::csv::reader::Format {
    let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
    arrow::csv::reader::Format::default().with_header(true).with_delimiter(delimiter)
}

/// A sequential reader's failure: the input's own error when it caused it
/// (storage, hash check, data cut short: see [`SourceFailure`]), so it keeps
/// its kind; else the data is not in the format.
fn unreadable(format: Format, key: &str, e: ArrowError, input: &SourceFailure) -> Error {
    input.take().unwrap_or_else(|| Error::invalid(format!("cannot read {key} as {}: {e}", format.name())))
}

/// The schema of a file in a sequential format, reading only what that
/// needs: the first 1000 records of CSV and JSON lines (planning and reading
/// always use this schema), the schema message of Arrow IPC.
pub async fn sequential_schema(registry: &Registry, entry: &Entry, format: Format) -> Result<SchemaRef, Error> {
    let reader = ChunkReader::open(registry, entry).await?;
    let input = reader.failure.clone();
    let key = entry.logical_key.clone();
    blocking(entry.logical_key.clone(), move || {
        let bad = |e| unreadable(format, &key, e, &input);
        let schema = match format {
            Format::Csv | Format::Tsv => csv_format(format).infer_schema(reader, Some(INFER_RECORDS)).map_err(bad)?.0,
            Format::JsonLines => {
                arrow::json::reader::infer_json_schema(BufReader::new(reader), Some(INFER_RECORDS)).map_err(bad)?.0
            }
            Format::ArrowFile => {
                let stream = ipc_file_as_stream(reader).map_err(bad)?;
                return Ok(arrow::ipc::reader::StreamReader::try_new(stream, None).map_err(bad)?.schema());
            }
            Format::ArrowStream => {
                return Ok(arrow::ipc::reader::StreamReader::try_new(reader, None).map_err(bad)?.schema());
            }
            Format::Parquet | Format::Manifest => unreachable!("not a sequential file format"),
        };
        Ok(Arc::new(schema))
    })
    .await
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
    let input = reader.failure.clone();
    let key = entry.logical_key.clone();
    // The decoder runs on a blocking thread (see `channel` for how its end
    // is told from a decoder that panics or vanishes).
    let (tx, rx) = tokio::sync::mpsc::channel::<super::channel::Message<RecordBatch, Error>>(2);
    let task_key = key.clone();
    let task = blocking(key.clone(), move || {
        let key = task_key;
        let bad = |e| unreadable(format, &key, e, &input);
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
        for batch in batches? {
            let batch = batch.map_err(bad);
            let failed = batch.is_err();
            if tx.blocking_send(Some(batch)).is_err() || failed {
                return Ok(());
            }
        }
        let _ = tx.blocking_send(None);
        Ok(())
    });
    let task = tokio::spawn(task);
    // Closed without an end: the task's own error says why.
    let vanished = async move {
        match task.await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => Error::Panicked(format!("reading {key} (the decoder stopped without finishing)")),
            Err(e) => Error::Panicked(format!("reading {key} ({e})")),
        }
    };
    Ok(super::channel::until_end(rx, vanished))
}
