//! The runtime SQL plans run on: a tokio runtime of its own, so a query
//! that computes for a long time between two batches (a nested-loop join, a
//! large sort) never holds the threads that serve gRPC, keep time or read
//! storage for other requests. Its results cross over a bounded channel; the
//! consumer keeps the query's deadline on the server's runtime and, on the
//! deadline, a cancellation or a client going away, raises the query's
//! [`Stop`] flag (checked inside operators that compute without yielding)
//! and aborts the producing task (which stops at its next await).

use super::stop::Stop;
use crate::query::Error;
use arrow::array::RecordBatch;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::time::Duration;

/// Batches produced ahead of the consumer.
const AHEAD: usize = 2;

/// A runtime for SQL execution; stopped without waiting when dropped.
pub struct CpuRuntime {
    /// `None` if it could not start: queries then run on the caller's.
    runtime: Option<tokio::runtime::Runtime>,
}

impl CpuRuntime {
    /// A runtime of `threads` worker threads, named `sheaf-sql`.
    pub fn new(threads: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("sheaf-sql")
            .thread_stack_size(8 << 20)
            .enable_all()
            .build();
        match runtime {
            Ok(runtime) => CpuRuntime { runtime: Some(runtime) },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the SQL runtime; queries share the server's");
                CpuRuntime { runtime: None }
            }
        }
    }

    /// Runs `produce` (a stream of batches made on this runtime, given the
    /// flag that stops it) and hands its batches to the caller's runtime.
    /// The stream fails (never just ends) once `deadline` passes; dropping
    /// it raises the flag and aborts the production.
    pub fn run<F>(
        &self,
        produce: F,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> BoxStream<'static, Result<RecordBatch, Error>>
    where
        F: FnOnce(Stop) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, Error>>(AHEAD);
        let stop = Stop::default();
        let flag = stop.clone();
        let production = async move {
            let mut batches = match produce(flag) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(item) = batches.next().await {
                let last = item.is_err();
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        };
        let task = match &self.runtime {
            Some(runtime) => runtime.spawn(production),
            None => tokio::spawn(production),
        };
        let state = Producing { rx, task: AbortOnDrop { task, stop }, deadline, timeout };
        futures::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            match tokio::time::timeout_at(state.deadline, state.rx.recv()).await {
                Err(_) => Some((
                    Err(Error::TimedOut(format!(
                        "the query ran past its time limit of {} (sheaf serve --sql-timeout)",
                        humantime::format_duration(state.timeout)
                    ))),
                    None,
                )),
                Ok(Some(Ok(batch))) => Some((Ok(batch), Some(state))),
                Ok(Some(Err(e))) => Some((Err(e), None)),
                // The producer ended: a clean end only if it finished.
                Ok(None) => match state.task.finished_cleanly().await {
                    true => None,
                    false => Some((Err(Error::Panicked("running the statement".into())), None)),
                },
            }
        })
        .boxed()
    }
}

impl CpuRuntime {
    /// Runs `work` (planning: it computes without yielding) on this runtime
    /// and waits for it for at most `timeout`: past it, or when the caller
    /// goes away, the work is aborted at its next await (computation already
    /// under way runs on to that point, on this runtime's threads, not the
    /// server's). `what` names it in errors.
    pub async fn compute<T, W>(&self, work: W, timeout: Duration, what: &str) -> Result<T, Error>
    where
        T: Send + 'static,
        W: std::future::Future<Output = Result<T, Error>> + Send + 'static,
    {
        let task = match &self.runtime {
            Some(runtime) => runtime.spawn(work),
            None => tokio::spawn(work),
        };
        let mut task = AbortOnDrop { task, stop: Stop::default() };
        match tokio::time::timeout(timeout, &mut task.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) if e.is_panic() => Err(Error::Panicked(what.into())),
            Ok(Err(_)) => Err(Error::internal(what, "the task was cancelled")),
            Err(_) => Err(Error::TimedOut(format!(
                "{what} took longer than the time limit of {} (sheaf serve --sql-timeout); simplify the statement",
                humantime::format_duration(timeout)
            ))),
        }
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The consumer's side of a running query.
struct Producing {
    rx: tokio::sync::mpsc::Receiver<Result<RecordBatch, Error>>,
    task: AbortOnDrop,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

/// Stops the producing task when the consumer goes away.
struct AbortOnDrop<T = ()> {
    task: tokio::task::JoinHandle<T>,
    stop: Stop,
}

impl AbortOnDrop {
    /// Whether the task returned (rather than panicked).
    async fn finished_cleanly(&mut self) -> bool {
        (&mut self.task).await.is_ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.stop.raise();
        self.task.abort();
    }
}
