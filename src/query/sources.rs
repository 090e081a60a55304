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
use futures::stream::{self, BoxStream, StreamExt};
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
            return Err(match checked_object(located.store.as_ref(), &meta.location, what, entry.size).await {
                Err(wrong) => wrong,
                // The object is there: a read that failed is the storage's
                // fault, not the bytes'.
                Ok(()) if super::error::from_storage(&e) => {
                    Error::engine(format!("reading the footer of {}", entry.logical_key), e)
                }
                Ok(()) => unreadable(registry, entry, e.to_string()).await,
            });
        }
    };
    let footer = super::float_bounds::without_float_bounds(footer);
    match ArrowReaderMetadata::try_new(footer, ArrowReaderOptions::new()) {
        Ok(metadata) => Ok(metadata),
        Err(e) => Err(unreadable(registry, entry, e.to_string()).await),
    }
}

/// The error for a Parquet file whose footer does not decode: its bytes are
/// checked against the entry's hash first (read whole, on this error path
/// only), so that damage in storage is DATA_LOSS, and only a file that was
/// never Parquet is INVALID_ARGUMENT.
async fn unreadable(registry: &Registry, entry: &Entry, why: String) -> Error {
    let checked = match registry.open_entry_verified(entry).await {
        Ok(stream) => stream.try_for_each(|_| async { Ok(()) }).await,
        Err(e) => Err(e),
    };
    match checked {
        Err(damaged) => damaged.into(),
        Ok(()) => Error::invalid(format!("{} is not a readable Parquet file: {why}", entry.logical_key)),
    }
}

/// Checks, after a read of it failed, that the object holding `what` (the
/// data of a logical key) is there with the `size` its manifest records: a
/// missing or refused object is the registry's storage error (naming it),
/// one of another size is an integrity failure (DATA_LOSS: a blob cut
/// short fails its reads with range errors that look like an outage).
pub(crate) async fn checked_object(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
    what: String,
    size: u64,
) -> Result<(), Error> {
    match store.head(path).await {
        Err(e) => Err(crate::registry::Error::storage(what, e).into()),
        Ok(meta) if meta.size != size => Err(crate::registry::Error::Integrity {
            what,
            expected: format!("{size} bytes"),
            actual: format!("{} bytes", meta.size),
        }
        .into()),
        Ok(_) => Ok(()),
    }
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
/// few chunks ahead; dropping the reader ends that task (and the GET) unless
/// a [`Verdict`] waits for the rest to be checked. The bytes are checked
/// against the entry's hash before their end is reached
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
    /// The bytes; an `Err` when they failed (the failure is the [`Verdict`]'s).
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, ()>>,
    current: Bytes,
    key: String,
    expected: u64,
    seen: u64,
    failure: SourceFailure,
}

/// The error a [`ChunkReader`] found itself (its stream ended early), kept
/// typed: arrow's readers turn the I/O errors of their input into text (a
/// CSV reader's `CsvError` string), and such a failure must reach the client
/// as itself (UNAVAILABLE), not as "not a CSV file". Failures of the bytes
/// (storage, hash or size) are the [`Verdict`]'s, typed the same way.
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
    /// Opens `entry`'s bytes for a blocking reader, and the [`Verdict`] on
    /// all of them.
    async fn open(registry: &Registry, entry: &Entry) -> Result<(Self, Verdict), Error> {
        let mut stream = registry.open_entry_verified(entry).await?;
        let (tx, chunks) = tokio::sync::mpsc::channel(4);
        let (decided, verdict) = tokio::sync::watch::channel(false);
        let outcome: Arc<std::sync::Mutex<Option<Error>>> = Arc::default();
        let verdict = Verdict { decided: verdict, outcome: outcome.clone(), key: entry.logical_key.clone() };
        tokio::spawn(async move {
            let mut delivering = true;
            let failure = loop {
                let chunk = if delivering {
                    tokio::select! {
                        _ = tx.closed() => { delivering = false; continue }
                        chunk = stream.next() => chunk,
                    }
                } else {
                    // The reader stopped before the end: the rest is read
                    // only to check the hash, while someone waits for that.
                    tokio::select! {
                        _ = decided.closed() => return,
                        chunk = stream.next() => chunk,
                    }
                };
                match chunk {
                    None => break None,
                    Some(Ok(bytes)) => {
                        if delivering && tx.send(Ok(bytes)).await.is_err() {
                            delivering = false;
                        }
                    }
                    // Kept for the verdict whether or not the reader gets
                    // this far (a sent error may never be read).
                    Some(Err(e)) => break Some(Error::from(e)),
                }
            };
            let failed = failure.is_some();
            *outcome.lock().unwrap_or_else(|p| p.into_inner()) = failure;
            let _ = decided.send(true);
            if failed && delivering {
                let _ = tx.send(Err(())).await;
            }
        });
        let reader = ChunkReader {
            chunks,
            current: Bytes::new(),
            key: entry.logical_key.clone(),
            expected: entry.size,
            seen: 0,
            failure: SourceFailure::default(),
        };
        Ok((reader, verdict))
    }
}

/// Whether all of an entry's bytes matched its hash, known once they were
/// all read: by the reader, or, when the reader stopped before the end (a
/// read with a limit, a decoder that failed), by reading the rest only to
/// check it while a `Verdict` waits for that. A failure is reported once
/// (to the first to wait, or to the reader that received it).
#[derive(Clone)]
pub struct Verdict {
    decided: tokio::sync::watch::Receiver<bool>,
    outcome: Arc<std::sync::Mutex<Option<Error>>>,
    key: String,
}

impl Verdict {
    /// Waits for the verdict; call it after the reader is dropped.
    pub async fn wait(mut self) -> Result<(), Error> {
        if self.decided.wait_for(|d| *d).await.is_err() {
            return Err(Error::Panicked(format!("checking {} (the check stopped before the end)", self.key)));
        }
        match self.outcome.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// [`Verdict::wait`] from a blocking thread.
    fn wait_blocking(self) -> Result<(), Error> {
        tokio::runtime::Handle::current().block_on(self.wait())
    }

    /// Why a decoder failed on the entry's bytes with `e`, once the reader
    /// is dropped: the bytes' own failure when they had one (storage, a
    /// hash or size mismatch: damaged data often fails to decode before its
    /// end is reached), else the data is not in the format.
    fn explain(self, format: Format, e: ArrowError, input: &SourceFailure) -> Error {
        if let Some(failure) = input.take() {
            return failure;
        }
        let key = self.key.clone();
        match self.wait_blocking() {
            Err(failure) => failure,
            Ok(()) => {
                // A value or field the inferred schema does not fit.
                let text = e.to_string();
                let misfit = text.contains("missing from schema") || text.contains("while parsing");
                let inferred = match format {
                    Format::Csv | Format::Tsv | Format::JsonLines if misfit => {
                        format!(" (its columns and their types are inferred from its first {INFER_RECORDS} records)")
                    }
                    _ => String::new(),
                };
                Error::invalid(format!("cannot read {key} as {}: {e}{inferred}", format.name()))
            }
        }
    }
}

/// `batches`, then the verdict on the bytes they were decoded from: a
/// stream that ends before its input did (a limit) still fails when the
/// input's bytes did not match their hash.
pub fn verified_at_end(
    batches: BoxStream<'static, Result<RecordBatch, Error>>,
    verdict: Verdict,
) -> BoxStream<'static, Result<RecordBatch, Error>> {
    stream::unfold(Some((batches, verdict)), |state| async move {
        let (mut batches, verdict) = state?;
        match batches.next().await {
            Some(Err(e)) => Some((Err(e), None)),
            Some(Ok(batch)) => Some((Ok(batch), Some((batches, verdict)))),
            None => {
                // Dropping the plan drops the reader, so the rest is read.
                drop(batches);
                verdict.wait().await.err().map(|e| (Err(e), None))
            }
        }
    })
    .boxed()
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
                Some(Err(())) => {
                    return Err(std::io::Error::other(format!("the data of {} failed (see its verdict)", self.key)));
                }
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
    // The panic's message is logged (it may quote the data), not answered.
    match tokio::task::spawn_blocking(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            tracing::error!(read = %key, panic = ?super::error::panic_message(panic.as_ref()), "a decoder panicked");
            Err(Error::Panicked(format!("reading {key}")))
        }
        Err(e) => Err(Error::Panicked(format!("reading {key} ({e})"))),
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

/// The Arrow IPC stream of a file of `size` bytes in `format` (a file's
/// stream follows its header), each message checked before arrow decodes it
/// ([`super::ipc::CheckedStream`]): a stored file is anyone's upload.
fn checked_ipc(reader: impl Read + 'static, format: Format, size: u64) -> Result<impl Read, ArrowError> {
    use super::ipc::{CheckedStream, IpcLimits};
    let reader: Box<dyn Read> = match format {
        Format::ArrowFile => Box::new(ipc_file_as_stream(reader)?),
        _ => Box::new(reader),
    };
    Ok(CheckedStream::new(reader, size, IpcLimits::STORED))
}

fn csv_format(format: Format) -> arrow::csv::reader::Format {
    let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
    arrow::csv::reader::Format::default().with_header(true).with_delimiter(delimiter)
}

/// The schema of a file in a sequential format, reading only what that
/// needs: the first 1000 records of CSV and JSON lines (planning and reading
/// always use this schema), the schema message of Arrow IPC.
pub async fn sequential_schema(registry: &Registry, entry: &Entry, format: Format) -> Result<SchemaRef, Error> {
    let (reader, verdict) = ChunkReader::open(registry, entry).await?;
    let size = entry.size;
    let input = reader.failure.clone();
    blocking(entry.logical_key.clone(), move || {
        // The readers below take `reader` and drop it on failure.
        let bad = |e| verdict.explain(format, e, &input);
        let schema = match format {
            Format::Csv | Format::Tsv => csv_format(format).infer_schema(reader, Some(INFER_RECORDS)).map_err(bad)?.0,
            Format::JsonLines => {
                arrow::json::reader::infer_json_schema(BufReader::new(reader), Some(INFER_RECORDS)).map_err(bad)?.0
            }
            Format::ArrowFile | Format::ArrowStream => {
                let read =
                    checked_ipc(reader, format, size).and_then(|s| arrow::ipc::reader::StreamReader::try_new(s, None));
                return Ok(read.map_err(bad)?.schema());
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
/// A consumer that stops before the end (a limit) checks the bytes it did
/// not read through the [`Verdict`] ([`verified_at_end`]).
pub async fn read_sequential(
    registry: &Registry,
    entry: &Entry,
    format: Format,
    schema: SchemaRef,
) -> Result<(BoxStream<'static, Result<RecordBatch, Error>>, Verdict), Error> {
    let (reader, verdict) = ChunkReader::open(registry, entry).await?;
    let size = entry.size;
    let input = reader.failure.clone();
    let key = entry.logical_key.clone();
    let task_verdict = verdict.clone();
    // The decoder runs on a blocking thread (see `channel` for how its end
    // is told from a decoder that panics or vanishes).
    let (tx, rx) = tokio::sync::mpsc::channel::<super::channel::Message<RecordBatch, Error>>(2);
    let task = blocking(key.clone(), move || {
        let verdict = task_verdict;
        let built: Result<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>, ArrowError> = match format {
            Format::Csv | Format::Tsv => arrow::csv::ReaderBuilder::new(schema)
                .with_format(csv_format(format))
                .with_batch_size(BATCH_ROWS)
                .build(reader)
                .map(|r| Box::new(r) as _),
            // Strict: a field the inferred schema lacks (first seen after
            // the records inference read) fails, rather than being dropped.
            Format::JsonLines => arrow::json::ReaderBuilder::new(schema)
                .with_batch_size(BATCH_ROWS)
                .with_strict_mode(true)
                .build(BufReader::new(reader))
                .map(|r| Box::new(r) as _),
            Format::ArrowFile | Format::ArrowStream => checked_ipc(reader, format, size)
                .and_then(|s| arrow::ipc::reader::StreamReader::try_new(s, None))
                .map(|r| Box::new(r) as _),
            Format::Parquet | Format::Manifest => unreachable!("not a sequential file format"),
        };
        let mut batches = match built {
            Ok(batches) => batches,
            Err(e) => return Err(verdict.explain(format, e, &input)),
        };
        loop {
            match batches.next() {
                Some(Ok(batch)) => {
                    if tx.blocking_send(Some(Ok(batch))).is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => {
                    drop(batches);
                    let _ = tx.blocking_send(Some(Err(verdict.explain(format, e, &input))));
                    return Ok(());
                }
                None => {
                    let _ = tx.blocking_send(None);
                    return Ok(());
                }
            }
        }
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
    Ok((super::channel::until_end(rx, vanished), verdict))
}
