//! The scan stage of a DoGet: an execution's batches produced on their own
//! task, a few ahead of the client, under the limits a shared server needs.
//!
//! - A storage scan permit (`Gates::scans`) is held only while a batch is
//!   being produced, never while the stream waits for its client: idle or
//!   slow clients do not starve everyone else's reads. The permits bound the
//!   scans working at once (CPU and storage requests).
//! - An open-scan slot (`Gates::open`) is held for the stream's life: a
//!   paused scan keeps its decoder's state and read-ahead buffer, so these
//!   slots bound the memory of all open scans. Idle clients can hold them
//!   only until `stall_timeout`.
//! - A client that takes nothing for `stall_timeout` loses its stream, which
//!   releases the scan's memory at once.
//! - The work of one stream is bounded by `time_budget` (time spent
//!   producing batches, not waiting on the client).
//! - A client that goes away cancels the work at its next step.
//! - A panic, an error or a task that vanishes ends the stream with an error
//!   status; only an explicit end is a clean end, so a truncated stream can
//!   never look complete (and is never cached).

use super::status;
use crate::query;
pub use crate::query::panic_message;
use arrow::array::RecordBatch;
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tonic::Status;

/// Batches produced ahead of the client.
const READ_AHEAD: usize = 4;

/// Limits of one DoGet stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// How long a stream may wait for its client to take a message.
    pub stall_timeout: Duration,
    /// Time a stream may spend producing batches.
    pub time_budget: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits { stall_timeout: Duration::from_secs(60), time_budget: Duration::from_secs(30 * 60) }
    }
}

type Message = crate::query::channel::Message<RecordBatch, Status>;

/// The semaphores DoGet scans take turns on.
#[derive(Debug, Clone)]
pub struct Gates {
    /// Scans producing a batch at once.
    pub scans: Arc<Semaphore>,
    /// Scans open at once (producing or waiting for their client).
    pub open: Arc<Semaphore>,
}

impl Gates {
    /// `scans` producing and `open` open at once (at least one each, and at
    /// least as many open as producing).
    pub fn new(scans: usize, open: usize) -> Self {
        let scans = scans.max(1);
        Gates { scans: Arc::new(Semaphore::new(scans)), open: Arc::new(Semaphore::new(open.max(scans))) }
    }
}

/// Produces `batches` on a task under the `gates` and `limits`; `what`
/// names the read in errors.
pub fn scan(
    batches: BoxStream<'static, Result<RecordBatch, query::Error>>,
    gates: Gates,
    limits: StreamLimits,
    what: String,
) -> BoxStream<'static, Result<RecordBatch, Status>> {
    let outcome: Arc<Mutex<Option<Status>>> = Arc::default();
    let failed = outcome.clone();
    let producer = async move {
        let (tx, rx) = mpsc::channel::<Message>(READ_AHEAD);
        let task_what = what.clone();
        tokio::spawn(produce(batches, tx, gates, limits, task_what, failed));
        let vanished = async move {
            outcome
                .lock()
                .expect("outcome poisoned")
                .take()
                .unwrap_or_else(|| Status::internal(format!("reading {what}: the scan ended without finishing")))
        };
        crate::query::channel::until_end(rx, vanished)
    };
    stream::once(producer).flatten().boxed()
}

/// The producing task of [`scan`]: waits for an open-scan slot, then for
/// each batch waits for room in the client's buffer (at most the stall
/// timeout) and for a scan turn, and produces it within the time budget.
/// A failure it cannot send is left in `failed`.
async fn produce(
    mut batches: BoxStream<'static, Result<RecordBatch, query::Error>>,
    tx: mpsc::Sender<Message>,
    gates: Gates,
    limits: StreamLimits,
    what: String,
    failed: Arc<Mutex<Option<Status>>>,
) {
    let fail = |status: Status| *failed.lock().expect("outcome poisoned") = Some(status);
    let waiting = crate::metrics::SCANS_WAITING.track();
    let _open = tokio::select! {
        _ = tx.closed() => return,
        slot = gates.open.clone().acquire_owned() => slot.expect("the open-scan semaphore is never closed"),
    };
    drop(waiting);
    let _running = crate::metrics::SCANS_OPEN.track();
    let scans = gates.scans;
    let mut busy = Duration::ZERO;
    loop {
        // Room in the buffer means the client is taking data.
        let slot = match tokio::time::timeout(limits.stall_timeout, tx.reserve()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return, // the client went away
            Err(_) => {
                tracing::warn!(read = %what, timeout_s = limits.stall_timeout.as_secs_f64(), "DoGet stalled: the client took no data; stream ended");
                return fail(Status::deadline_exceeded(format!(
                    "reading {what}: the client took no data for {:?}; the stream was ended",
                    limits.stall_timeout
                )));
            }
        };
        let turn = tokio::select! {
            _ = tx.closed() => return,
            turn = scans.clone().acquire_owned() => turn.expect("the scan semaphore is never closed"),
        };
        let started = Instant::now();
        let left = limits.time_budget.saturating_sub(busy);
        let next = tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(left) => {
                return slot.send(Some(Err(Status::deadline_exceeded(format!(
                    "reading {what} used its time budget of {:?}; ask for less (columns, filter, partitions)",
                    limits.time_budget
                )))));
            }
            next = AssertUnwindSafe(batches.next()).catch_unwind() => next,
        };
        busy += started.elapsed();
        drop(turn);
        match next {
            Ok(Some(Ok(batch))) => slot.send(Some(Ok(batch))),
            Ok(Some(Err(e))) => return slot.send(Some(Err(status::from_query(&e)))),
            Ok(None) => return slot.send(None),
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(read = %what, panic = ?message, "a DoGet scan panicked");
                return slot.send(Some(Err(status::from_query(&query::Error::Panicked(format!("reading {what}"))))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use futures::TryStreamExt;

    fn batch(n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![n])) as _)]).unwrap()
    }

    fn limits() -> StreamLimits {
        StreamLimits { stall_timeout: Duration::from_millis(200), time_budget: Duration::from_secs(60) }
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_an_end() {
        let input = stream::iter(0..5).map(|i| if i == 3 { panic!("boom at {i}") } else { Ok(batch(i)) }).boxed();
        let out: Vec<_> = scan(input, Gates::new(1, 4), limits(), "t".into()).collect().await;
        assert_eq!(out.len(), 4);
        assert!(out[..3].iter().all(|r| r.is_ok()));
        let err = out[3].as_ref().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn a_clean_end_is_complete() {
        let input = stream::iter((0..10).map(|i| Ok(batch(i)))).boxed();
        let out: Vec<_> = scan(input, Gates::new(1, 4), limits(), "t".into()).try_collect().await.unwrap();
        assert_eq!(out.len(), 10);
    }

    #[tokio::test]
    async fn idle_streams_hold_no_permit_and_stalled_ones_end() {
        let scans = Gates::new(1, 2);
        // A stream nobody reads fills its buffer, then waits without a permit.
        let mut idle =
            scan(stream::iter((0..100).map(|i| Ok(batch(i)))).boxed(), scans.clone(), limits(), "idle".into());
        let first = idle.next().await.unwrap();
        assert!(first.is_ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let other = scan(stream::iter((0..10).map(|i| Ok(batch(i)))).boxed(), scans.clone(), limits(), "other".into());
        assert_eq!(other.try_collect::<Vec<_>>().await.unwrap().len(), 10);
        // After the stall timeout, the idle stream ends with an error once drained.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let rest: Vec<_> = idle.collect().await;
        let last = rest.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), tonic::Code::DeadlineExceeded, "{last}");
        assert!(rest.len() < 100);
    }

    #[tokio::test]
    async fn open_slots_wait_until_a_stalled_stream_is_ended() {
        let gates = Gates::new(1, 1);
        let mut idle =
            scan(stream::iter((0..100).map(|i| Ok(batch(i)))).boxed(), gates.clone(), limits(), "idle".into());
        assert!(idle.next().await.unwrap().is_ok());
        // The only open slot is taken until the idle stream stalls out.
        let other = scan(stream::iter((0..3).map(|i| Ok(batch(i)))).boxed(), gates, limits(), "other".into());
        let started = std::time::Instant::now();
        assert_eq!(other.try_collect::<Vec<_>>().await.unwrap().len(), 3);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn the_time_budget_ends_a_slow_scan() {
        let slow = stream::unfold(0, |i| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(batch(i)), i + 1))
        })
        .boxed();
        let limits = StreamLimits { stall_timeout: Duration::from_secs(5), time_budget: Duration::from_millis(350) };
        let out: Vec<_> = scan(slow, Gates::new(1, 1), limits, "slow".into()).collect().await;
        let last = out.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), tonic::Code::DeadlineExceeded);
    }
}
