//! Process-wide counters of the work the server does, for operators and for
//! the benchmarks (which must not guess what was read). Cumulative since the
//! process started; read a snapshot before and after a request for per-request
//! figures. Each DoGet also logs its own figures (see `flight::service`).
//! [`prometheus`] exposes them, with per-RPC request counts and latencies,
//! in the Prometheus text format; [`otlp`] exports the calls' spans to an
//! OpenTelemetry collector.

pub mod otlp;
pub mod prometheus;

use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A counter that only grows.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// A gauge at zero.
    pub const fn new() -> Self {
        Gauge(AtomicI64::new(0))
    }

    /// Adds `n` (negative to subtract).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds one until the returned guard is dropped (work in progress).
    pub fn track(&'static self) -> GaugeGuard {
        self.add(1);
        GaugeGuard(self)
    }
}

/// Takes one off its gauge when dropped ([`Gauge::track`]).
#[derive(Debug)]
pub struct GaugeGuard(&'static Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

/// Bytes fetched from storage: the lengths of every GET and range GET of
/// every object store the process opened (registry and `--allow` locations),
/// Parquet footers included. Metadata requests (HEAD, LIST) are not counted.
pub static BYTES_READ: Counter = Counter::new();
/// Rows decoded from storage before filters were applied.
pub static ROWS_SCANNED: Counter = Counter::new();
/// DoGet streams started.
pub static DO_GET: Counter = Counter::new();
/// DoGet streams answered from the encoded-message cache.
pub static DO_GET_CACHED: Counter = Counter::new();
/// Rows sent by DoGet.
pub static ROWS_SENT: Counter = Counter::new();
/// Record batches sent by DoGet.
pub static BATCHES_SENT: Counter = Counter::new();
/// Bytes of Flight messages (IPC header and body) sent by DoGet.
pub static BYTES_SENT: Counter = Counter::new();
/// Revisions committed by DoPut.
pub static DO_PUT: Counter = Counter::new();
/// Storage requests (reads and writes) that failed, other than "not found".
pub static STORAGE_ERRORS: Counter = Counter::new();
/// Password logins refused (wrong password, unknown user, too many tries).
pub static LOGINS_FAILED: Counter = Counter::new();
/// Streams evicted from the stream cache to make room.
pub static CACHE_EVICTIONS: Counter = Counter::new();
/// Bytes held by the stream cache (entries and running recordings).
pub static CACHE_BYTES: Gauge = Gauge::new();
/// DoGet streams reading storage (holding an open-scan slot).
pub static SCANS_OPEN: Gauge = Gauge::new();
/// DoGet streams waiting for an open-scan slot.
pub static SCANS_WAITING: Gauge = Gauge::new();

/// A snapshot of every counter, as the `metrics` action returns it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`BYTES_READ`].
    pub bytes_read: u64,
    /// See [`ROWS_SCANNED`].
    pub rows_scanned: u64,
    /// See [`DO_GET`].
    pub do_get: u64,
    /// See [`DO_GET_CACHED`].
    pub do_get_cached: u64,
    /// See [`ROWS_SENT`].
    pub rows_sent: u64,
    /// See [`BATCHES_SENT`].
    pub batches_sent: u64,
    /// See [`BYTES_SENT`].
    pub bytes_sent: u64,
    /// See [`DO_PUT`].
    pub do_put: u64,
}

/// The counters now.
pub fn snapshot() -> Snapshot {
    Snapshot {
        bytes_read: BYTES_READ.get(),
        rows_scanned: ROWS_SCANNED.get(),
        do_get: DO_GET.get(),
        do_get_cached: DO_GET_CACHED.get(),
        rows_sent: ROWS_SENT.get(),
        batches_sent: BATCHES_SENT.get(),
        bytes_sent: BYTES_SENT.get(),
        do_put: DO_PUT.get(),
    }
}
