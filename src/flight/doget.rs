//! DoGet's pipeline as one named stream: a ticket's encoded messages, from
//! the [`super::cache::StreamCache`] when it was read before, else scanned (taking turns on
//! the [`Gates`]), encoded and recorded for the cache; counted into the
//! metrics and logged once when the stream ends.

use super::cache::{Messages, Recording};
use super::encode::{self, WireMessage};
use super::pipeline::{self, Gates, StreamLimits};
use crate::metrics;
use crate::query::{Compression, Execution, ReadStats};
use arrow::ipc::CompressionType;
use arrow::ipc::writer::IpcWriteOptions;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Status;

/// The messages of one DoGet.
pub struct DoGetStream {
    messages: BoxStream<'static, Result<WireMessage, Status>>,
    /// Set while the stream is being recorded for the cache.
    recording: Option<Recording>,
    /// Taken when the stream ends (its log line is written once).
    tally: Option<Tally>,
}

impl DoGetStream {
    /// Replays cached messages.
    pub fn cached(messages: Messages, what: String) -> Self {
        metrics::DO_GET_CACHED.add(1);
        tracing::debug!(ticket = %what, "DoGet from the cache");
        let replay = stream::iter((0..messages.len()).map(move |i| Ok(messages[i].clone())));
        let tally = Tally::new(what, true, None);
        DoGetStream { messages: replay.boxed(), recording: None, tally: Some(tally) }
    }

    /// Scans an execution, encoding its batches (IPC body `compression`) and
    /// recording them for the cache (when given a recording). The scan starts when the stream is first
    /// polled (no request timeout while it waits for a permit).
    pub fn scanned(
        execution: Execution,
        compression: Compression,
        (gates, limits): (Gates, StreamLimits),
        recording: Option<Recording>,
        what: String,
    ) -> Result<Self, Status> {
        let codec = match compression {
            Compression::None => None,
            Compression::Zstd => Some(CompressionType::ZSTD),
            Compression::Lz4 => Some(CompressionType::LZ4_FRAME),
        };
        let options = IpcWriteOptions::default()
            .try_with_compression(codec)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::debug!(ticket = %what, "DoGet");
        let batches = pipeline::scan(execution.batches, gates, limits, what.clone());
        let encoded = encode::encode(execution.schema, options, compression != Compression::None, batches);
        let tally = Tally::new(what, false, Some(execution.stats));
        Ok(DoGetStream { messages: encoded.boxed(), recording, tally: Some(tally) })
    }

    /// Sends messages encoded elsewhere (Flight SQL's catalog answers).
    pub fn encoded(messages: BoxStream<'static, Result<WireMessage, Status>>, what: String) -> Self {
        DoGetStream { messages, recording: None, tally: Some(Tally::new(what, false, None)) }
    }
}

impl Stream for DoGetStream {
    type Item = Result<WireMessage, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(tally) = this.tally.as_mut() else { return Poll::Ready(None) };
        match this.messages.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(m))) => {
                tally.message(&m);
                if let Some(recording) = this.recording.as_mut() {
                    recording.push(&m);
                }
                Poll::Ready(Some(Ok(m)))
            }
            // An error ends the stream; its recording is dropped uncached.
            Poll::Ready(Some(Err(status))) => {
                tally.finish(Some(&status));
                (this.tally, this.recording) = (None, None);
                Poll::Ready(Some(Err(status)))
            }
            Poll::Ready(None) => {
                tally.finish(None);
                this.tally = None;
                if let Some(recording) = this.recording.take() {
                    recording.finish();
                }
                Poll::Ready(None)
            }
        }
    }
}

/// Counts what one DoGet sent, and logs it when the stream ends.
struct Tally {
    what: String,
    started: Instant,
    cached: bool,
    rows: u64,
    batches: u64,
    bytes: u64,
    stats: Option<Arc<ReadStats>>,
}

impl Tally {
    fn new(what: String, cached: bool, stats: Option<Arc<ReadStats>>) -> Self {
        Tally { what, started: Instant::now(), cached, rows: 0, batches: 0, bytes: 0, stats }
    }

    fn message(&mut self, m: &WireMessage) {
        let bytes = m.bytes();
        self.bytes += bytes;
        metrics::BYTES_SENT.add(bytes);
        if let Some(rows) = m.batch_rows() {
            self.batches += 1;
            self.rows += rows;
            metrics::BATCHES_SENT.add(1);
            metrics::ROWS_SENT.add(rows);
        }
    }

    fn finish(&self, error: Option<&Status>) {
        let (rows_scanned, bytes_scanned) =
            self.stats.as_ref().map_or((0, 0), |s| (s.rows_scanned(), s.bytes_scanned()));
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match error {
            None => {
                tracing::info!(ticket = %self.what, cached = self.cached, rows_sent = self.rows, batches_sent = self.batches,
                bytes_sent = self.bytes, rows_scanned, bytes_scanned, elapsed_ms, "DoGet finished")
            }
            Some(e) => {
                tracing::warn!(ticket = %self.what, rows_sent = self.rows, code = ?e.code(), error = %e.message(),
                elapsed_ms, "DoGet failed")
            }
        }
    }
}
