//! Fault injection under the registry and the query engine.
//!
//! [`FaultStore`] wraps a real object store (object_store's `InMemory`, or
//! `LocalFileSystem` over a temporary folder) and, per kind of operation,
//! injects errors, latency, short reads (a read returns fewer bytes than it
//! claims) and truncated GET streams (the body ends early, silently or with
//! an error), at the Nth eligible call. Registries are built over it with
//! [`Registry::with_store`].
//!
//! Every test sweeps the fault position: fail at call 1, 2, ... until an
//! attempt completes without reaching the fault. Each attempt must end in a
//! clean error (no panic, no hang; its message names the package, path, key
//! or hash involved) or in success with exactly the right bytes or rows. After
//! every attempt, read without faults: every revision a pointer names (latest,
//! timestamp pointers, tags) has its manifest and every blob, with the right
//! hashes; an install folder holds no partial file and no file with wrong
//! content; a DoGet stream never ends early looking complete, and a failed
//! one is not served again from the stream cache.
//!
//! Known bugs in `src/` have their own failing tests, `#[ignore = "BUG: ..."]`.

#[allow(dead_code)]
#[path = "fuzz/targets.rs"]
mod targets;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use prost::Message;
use sheaf::flight::SheafFlight;
use sheaf::flight::cache::StreamCache;
use sheaf::flight::encode::WireMessage;
use sheaf::progress::NoProgress;
use sheaf::query::{DatasetUri, Engine};
use sheaf::registry::{Base, CommitFile, PushOptions};
use sheaf::{PackageName, PackageRef, Registry, Revision};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;
use tonic::Code;

// ---------------------------------------------------------------------------
// The fault-injecting store
// ---------------------------------------------------------------------------

/// The kinds of object-store operation, as faults select them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    PutMultipart,
    PutPart,
    Complete,
    Abort,
    /// A whole-object GET.
    Get,
    /// A GET of a byte range (`get_range`, and ranged `get_opts`).
    GetRange,
    Head,
    GetRanges,
    List,
    ListDelimiter,
    Delete,
    Copy,
    Rename,
}

/// Every operation.
fn any_op(_: Op) -> bool {
    true
}

/// Operations that return object bytes.
fn reads(op: Op) -> bool {
    matches!(op, Op::Get | Op::GetRange | Op::GetRanges)
}

/// Operations that return a body stream (GETs, whole or ranged).
fn streams(op: Op) -> bool {
    matches!(op, Op::Get | Op::GetRange)
}

fn multi_ranged(op: Op) -> bool {
    matches!(op, Op::GetRanges)
}

/// What happens at the armed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The call fails (a storage error that names nothing).
    Error,
    /// A read returns half the bytes it claims in one piece (`get_opts` keeps
    /// the full range in its result; `get_ranges` shortens one buffer).
    ShortRead,
    /// A GET body stream ends silently after half the bytes.
    TruncatedStream,
    /// A GET body stream fails after half the bytes.
    StreamError,
}

const FAULTS: [(Fault, fn(Op) -> bool); 4] = [
    (Fault::Error, any_op),
    (Fault::ShortRead, reads),
    (Fault::TruncatedStream, streams),
    (Fault::StreamError, streams),
];

#[derive(Clone, Copy)]
struct Armed {
    fault: Fault,
    eligible: fn(Op) -> bool,
    at: u64,
}

#[derive(Default)]
struct State {
    armed: Option<Armed>,
    /// Eligible calls seen since arming.
    calls: u64,
    /// The fault injected since arming, described.
    hit: Option<String>,
    /// Random latency on every call: `(max milliseconds, xorshift state)`.
    jitter: Option<(u64, u64)>,
    /// Bytes a short or truncated read keeps (default: half of them).
    keep: Option<u64>,
}

/// The switchboard shared by a [`FaultStore`] and its test.
#[derive(Clone, Default)]
struct Faults(Arc<Mutex<State>>);

impl Faults {
    /// Injects `fault` at the `at`-th call (1-based) for which `eligible` holds.
    fn arm(&self, fault: Fault, eligible: fn(Op) -> bool, at: u64) {
        let mut s = self.0.lock().unwrap();
        s.armed = Some(Armed { fault, eligible, at });
        s.calls = 0;
        s.hit = None;
    }

    /// Stops injecting; returns the fault injected since arming, if any.
    fn disarm(&self) -> Option<String> {
        let mut s = self.0.lock().unwrap();
        s.armed = None;
        s.hit.take()
    }

    /// Short and truncated reads keep at most `bytes` bytes (instead of half).
    fn keep(&self, bytes: u64) {
        self.0.lock().unwrap().keep = Some(bytes);
    }

    /// How many of `len` bytes a short or truncated read keeps.
    fn kept(&self, len: u64) -> u64 {
        match self.0.lock().unwrap().keep {
            Some(k) => k.min(len.saturating_sub(1)),
            None => len / 2,
        }
    }

    /// Delays every call by 0..=`max_ms` milliseconds, pseudo-randomly.
    fn jitter(&self, max_ms: u64, seed: u64) {
        self.0.lock().unwrap().jitter = Some((max_ms, seed | 1));
    }

    /// Records a call; returns the fault to inject and the latency to add.
    fn on_call(&self, op: Op, path: &str) -> (Option<Fault>, Duration) {
        let mut s = self.0.lock().unwrap();
        let delay = match s.jitter.as_mut() {
            Some((max, x)) => {
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                Duration::from_micros(*x % (*max * 1000 + 1))
            }
            None => Duration::ZERO,
        };
        let mut fault = None;
        if let Some(armed) = s.armed
            && (armed.eligible)(op)
        {
            s.calls += 1;
            if s.calls == armed.at {
                fault = Some(armed.fault);
                s.hit = Some(format!("{:?} at eligible call {} ({op:?} {path})", armed.fault, armed.at));
            }
        }
        (fault, delay)
    }
}

/// The injected store error. It deliberately names no path: the caller's
/// error must say what was being read or written.
fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic { store: "FaultStore", source: format!("injected {what}").into() }
}

/// An object store that injects [`Fault`]s into an inner store.
#[derive(Debug)]
struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    faults: Faults,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults")
    }
}

impl std::fmt::Display for FaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl FaultStore {
    async fn enter(&self, op: Op, path: &str) -> Option<Fault> {
        let (fault, delay) = self.faults.on_call(op, path);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        fault
    }

    /// A listing that may be delayed, or fail after its first item.
    fn listing(
        &self,
        op: Op,
        prefix: Option<&Path>,
        inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (fault, delay) = self.faults.on_call(op, prefix.map(|p| p.as_ref()).unwrap_or(""));
        let wait = stream::once(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        })
        .filter_map(|()| futures::future::ready(None::<object_store::Result<ObjectMeta>>));
        match fault {
            None => wait.chain(inner).boxed(),
            // A partial listing, then the error.
            Some(_) => wait
                .chain(inner.take(1))
                .chain(stream::once(futures::future::ready(Err(injected("listing error")))))
                .boxed(),
        }
    }
}

/// The first `keep` bytes of `inner`, then the end (or an error if `fail`).
fn cut_stream(
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    keep: u64,
    fail: bool,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    stream::unfold((inner, 0u64, false), move |(mut inner, sent, done)| async move {
        if done {
            return None;
        }
        if sent >= keep {
            return fail.then(|| (Err(injected("error mid-stream")), (inner, sent, true)));
        }
        match inner.next().await {
            Some(Ok(chunk)) => {
                let room = (keep - sent) as usize;
                let chunk = if chunk.len() > room { chunk.slice(..room) } else { chunk };
                let n = chunk.len() as u64;
                Some((Ok(chunk), (inner, sent + n, false)))
            }
            Some(Err(e)) => Some((Err(e), (inner, sent, true))),
            None => None,
        }
    })
    .boxed()
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.enter(Op::Put, location.as_ref()).await.is_some() {
            return Err(injected("put error"));
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if self.enter(Op::PutMultipart, location.as_ref()).await.is_some() {
            return Err(injected("multipart error"));
        }
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload { inner, faults: self.faults.clone(), path: location.to_string() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let op = if options.head {
            Op::Head
        } else if options.range.is_some() {
            Op::GetRange
        } else {
            Op::Get
        };
        let fault = self.enter(op, location.as_ref()).await;
        let fault = match (fault, op) {
            (None, _) => return self.inner.get_opts(location, options).await,
            (Some(Fault::Error), _) => return Err(injected("get error")),
            // Reads faults do not apply to HEAD (which `reads` excludes anyway).
            (Some(_), Op::Head) => return self.inner.get_opts(location, options).await,
            (Some(f), _) => f,
        };
        let GetResult { payload, meta, range, attributes } = self.inner.get_opts(location, options).await?;
        let whole = GetResult { payload, meta: meta.clone(), range: range.clone(), attributes: Attributes::default() };
        let keep = self.faults.kept(range.end - range.start);
        let body = match fault {
            Fault::ShortRead => {
                let data = whole.bytes().await?;
                let short = data.slice(..(keep as usize).min(data.len()));
                stream::once(futures::future::ready(Ok(short))).boxed()
            }
            Fault::TruncatedStream => cut_stream(whole.into_stream(), keep, false),
            Fault::StreamError => cut_stream(whole.into_stream(), keep, true),
            Fault::Error => unreachable!(),
        };
        // The result still claims the whole range.
        Ok(GetResult { payload: GetResultPayload::Stream(body), meta, range, attributes })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        match self.enter(Op::GetRanges, location.as_ref()).await {
            None => self.inner.get_ranges(location, ranges).await,
            Some(Fault::Error) => Err(injected("get_ranges error")),
            // Streams: `get_ranges` has none (`streams` excludes it).
            Some(Fault::StreamError | Fault::TruncatedStream) => self.inner.get_ranges(location, ranges).await,
            Some(Fault::ShortRead) => {
                let mut data = self.inner.get_ranges(location, ranges).await?;
                if let Some(b) = data.iter_mut().rev().find(|b| !b.is_empty()) {
                    *b = b.slice(..self.faults.kept(b.len() as u64) as usize);
                }
                Ok(data)
            }
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (fault, _) = self.faults.on_call(Op::Delete, "");
        match fault {
            None => self.inner.delete_stream(locations),
            Some(_) => stream::once(futures::future::ready(Err(injected("delete error")))).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.list(prefix);
        self.listing(Op::List, prefix, inner)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.list_with_offset(prefix, offset);
        self.listing(Op::List, prefix, inner)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        if self.enter(Op::ListDelimiter, prefix.map(|p| p.as_ref()).unwrap_or("")).await.is_some() {
            return Err(injected("listing error"));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        if self.enter(Op::Copy, to.as_ref()).await.is_some() {
            return Err(injected("copy error"));
        }
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        if self.enter(Op::Rename, to.as_ref()).await.is_some() {
            return Err(injected("rename error"));
        }
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose parts, completion and abort may fail. A failed
/// part is not sent to the inner upload, so completing anyway would store
/// an object with a part missing.
#[derive(Debug)]
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Faults,
    path: String,
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (fault, delay) = self.faults.on_call(Op::PutPart, &self.path);
        let part = match fault {
            None => Some(self.inner.put_part(data)),
            Some(_) => None,
        };
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match part {
                Some(part) => part.await,
                None => Err(injected("part upload error")),
            }
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let (fault, delay) = self.faults.on_call(Op::Complete, &self.path);
        tokio::time::sleep(delay).await;
        if fault.is_some() {
            return Err(injected("complete error"));
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let (fault, delay) = self.faults.on_call(Op::Abort, &self.path);
        tokio::time::sleep(delay).await;
        if fault.is_some() {
            return Err(injected("abort error"));
        }
        self.inner.abort().await
    }
}

// ---------------------------------------------------------------------------
// Registries over it
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Local,
}

const BACKENDS: [Backend; 2] = [Backend::Memory, Backend::Local];

/// A registry reached through a [`FaultStore`], and the same registry
/// without faults, for checking.
struct Env {
    faults: Faults,
    faulty: Registry,
    clean: Registry,
    _dir: Option<tempfile::TempDir>,
}

fn env(backend: Backend) -> Env {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (spec, inner, dir): (String, Arc<dyn ObjectStore>, _) = match backend {
        Backend::Memory => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            (format!("memory://faults-{}-{n}", std::process::id()), Arc::new(InMemory::new()), None)
        }
        Backend::Local => {
            let dir = tempfile::tempdir().unwrap();
            let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
            (dir.path().to_str().unwrap().to_owned(), Arc::new(store), Some(dir))
        }
    };
    let faults = Faults::default();
    let faulty =
        Registry::with_store(&spec, Arc::new(FaultStore { inner: inner.clone(), faults: faults.clone() })).unwrap();
    let clean = Registry::with_store(&spec, inner).unwrap();
    Env { faults, faulty, clean, _dir: dir }
}

fn pkg(s: &str) -> PackageName {
    s.parse().unwrap()
}

fn at(p: &PackageName, top_hash: &str) -> PackageRef {
    format!("{p}@{top_hash}").parse().unwrap()
}

type Files = BTreeMap<String, Vec<u8>>;

fn write_tree(root: &FsPath, files: &Files) {
    for (key, data) in files {
        let p = root.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// Files of a folder, by `/`-separated relative path.
fn read_tree(root: &FsPath) -> Files {
    let mut out = Files::new();
    for item in walkdir::WalkDir::new(root).sort_by_file_name() {
        let item = item.unwrap();
        if item.file_type().is_file() {
            let rel = item.path().strip_prefix(root).unwrap();
            let rel = rel.components().map(|c| c.as_os_str().to_str().unwrap()).collect::<Vec<_>>().join("/");
            out.insert(rel, std::fs::read(item.path()).unwrap());
        }
    }
    out
}

fn bytes_of(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Revision A's files: small, empty, ~300 kB (several stream chunks), nested.
fn tree_a() -> Files {
    let mut f = Files::new();
    f.insert("a.txt".into(), b"Hello, World!".to_vec());
    f.insert("empty".into(), vec![]);
    f.insert("sub/deep/x.bin".into(), bytes_of(1, 300_000));
    f.insert("sub/y.bin".into(), bytes_of(2, 20_000));
    f
}

/// Revision B's files: shares `a.txt` and `empty` with A, changes one file,
/// adds one, drops one.
fn tree_b() -> Files {
    let mut f = tree_a();
    f.insert("sub/deep/x.bin".into(), bytes_of(3, 300_000));
    f.remove("sub/y.bin");
    f.insert("new/z.bin".into(), bytes_of(4, 70_000));
    f
}

async fn push(reg: &Registry, p: &PackageName, files: &Files, message: &str) -> Result<String, sheaf::Error> {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), files);
    let opts = PushOptions { message: Some(message.into()), ..Default::default() };
    Ok(reg.push(p, dir.path(), &opts, &NoProgress).await?.top_hash)
}

/// Installs a revision with the clean registry and returns its files.
async fn content(clean: &Registry, r: &PackageRef) -> Result<Files, sheaf::Error> {
    let dest = tempfile::tempdir().unwrap();
    clean.install(r, dest.path(), &NoProgress).await?;
    Ok(read_tree(dest.path()))
}

/// Every revision the package's pointers name (latest, timestamp pointers,
/// tags) must be complete: its manifest and every blob present, with the
/// right hashes (install verifies each). Returns latest and its files.
async fn check_complete(clean: &Registry, p: &PackageName, label: &str) -> (String, Files) {
    let latest = clean
        .resolve(p, &Revision::Latest)
        .await
        .unwrap_or_else(|e| panic!("{label}: latest of {p} cannot be read after the attempt: {e}"));
    let mut hashes: BTreeSet<String> = clean
        .revisions(p)
        .await
        .unwrap_or_else(|e| panic!("{label}: revisions of {p}: {e}"))
        .into_iter()
        .map(|r| r.top_hash)
        .collect();
    hashes.extend(clean.tags(p).await.unwrap().into_iter().map(|(_, h)| h));
    hashes.insert(latest.clone());
    let mut latest_files = None;
    for h in &hashes {
        let files = content(clean, &at(p, h))
            .await
            .unwrap_or_else(|e| panic!("{label}: revision {h} of {p} is named by a pointer but incomplete: {e}"));
        if *h == latest {
            latest_files = Some(files);
        }
    }
    (latest, latest_files.unwrap())
}

// ---------------------------------------------------------------------------
// Sweeps
// ---------------------------------------------------------------------------

/// Attempts with the fault at the 1st, 2nd, ... eligible call until one
/// completes without reaching it.
async fn sweep<F, Fut>(label: &str, mut attempt: F) -> u64
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    const MAX_ATTEMPTS: u64 = 400;
    for n in 1..=MAX_ATTEMPTS {
        if !attempt(n).await {
            return n;
        }
    }
    panic!("{label}: still reaching the fault after {MAX_ATTEMPTS} attempts");
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics anywhere in the process (spawned tasks included, whose
/// panics tokio would otherwise swallow).
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Only panics of runtime threads: a test's own thread panics
            // for its failed assertions (and `guarded` catches the rest).
            if std::thread::current().name().is_some_and(|n| n.starts_with("tokio-runtime")) {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Runs `fut` (in this task, so it need not be `Send` or `'static`): a
/// panic, here or in a task it spawned, or a hang fails the test, naming
/// the attempt.
async fn guarded<T>(label: &str, fut: impl Future<Output = T>) -> T {
    use futures::FutureExt;
    let before = PANICS.load(Ordering::SeqCst);
    let out =
        match tokio::time::timeout(Duration::from_secs(60), std::panic::AssertUnwindSafe(fut).catch_unwind()).await {
            Err(_) => panic!("{label}: hung for 60 s"),
            Ok(Err(_)) => panic!("{label}: panicked (message above)"),
            Ok(Ok(v)) => v,
        };
    // Tasks the operation spawned may still be unwinding.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let after = PANICS.load(Ordering::SeqCst);
    assert_eq!(before, after, "{label}: a task panicked during the attempt (see the panic message above)");
    out
}

/// An error's message must name one of `names` (package, path, key or
/// hash), or some full hash (a revision being written, a blob).
fn assert_names(label: &str, message: &str, names: &[String]) {
    assert!(!message.trim().is_empty(), "{label}: empty error message");
    let full_hash = message.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() == 64);
    assert!(
        full_hash || names.iter().any(|n| message.contains(n.as_str())),
        "{label}: the error names none of {names:?} and no hash: {message}"
    );
}

fn names(p: &PackageName, hashes: &[&str], files: &[&Files]) -> Vec<String> {
    let mut out = vec![p.to_string()];
    out.extend(hashes.iter().map(|h| h[..12].to_owned()));
    for f in files {
        out.extend(f.keys().filter(|k| k.len() > 2).cloned());
    }
    out
}

/// Which gRPC code an error maps to (the server's mapping).
fn registry_code(e: &sheaf::Error) -> Code {
    sheaf::flight::status::from_registry(e).code()
}

/// Codes acceptable for an attempt under `fault`: storage errors are
/// UNAVAILABLE, bad bytes DATA_LOSS (or UNAVAILABLE when the store's error
/// surfaced first).
fn acceptable_code(fault: Fault, code: Code) -> bool {
    match fault {
        Fault::Error | Fault::StreamError => matches!(code, Code::Unavailable),
        Fault::ShortRead | Fault::TruncatedStream => matches!(code, Code::DataLoss | Code::Unavailable),
    }
}

/// Codes the sweeps saw that [`acceptable_code`] does not expect, by
/// `(fault, code, message shape)`. Not a failure of the sweeps (their
/// invariants are about data); the dedicated tests below pin the cases
/// that are bugs. Printed with `--nocapture`.
static ODD_CODES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn note_code(label: &str, fault: Fault, code: Code, message: &str) {
    if !acceptable_code(fault, code) {
        // One line per test and kind: hashes and numbers vary between attempts.
        let test = label.split(' ').next().unwrap_or_default();
        let shape = mask_numbers(message);
        let line = format!("{test} {fault:?} -> {code:?}: {shape}");
        if ODD_CODES.lock().unwrap().insert(line) {
            eprintln!("unexpected code {code:?} under {fault:?} ({label}): {message}");
        }
    }
}

/// `message` with hashes and numbers as `#`.
fn mask_numbers(message: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let numeric = word.chars().all(|c| c.is_ascii_digit())
            || (word.len() >= 6 && word.chars().all(|c| c.is_ascii_hexdigit()));
        out.push_str(if numeric && !word.is_empty() { "#" } else { word });
        word.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn label(test: &str, backend: Backend, fault: Fault, n: u64) -> String {
    format!("{test} on {backend:?} with {fault:?} at call {n}")
}

// ---------------------------------------------------------------------------
// push
// ---------------------------------------------------------------------------

/// Revision B plus a 17 MiB file, which push uploads in parts.
fn tree_b_big() -> Files {
    let mut f = tree_b();
    f.insert("big/large.bin".into(), bytes_of(5, 17 * 1024 * 1024 + 123));
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_under_faults() {
    count_panics();
    let (a, b) = (tree_a(), tree_b_big());
    let p = pkg("t/p");
    let b_dir = tempfile::tempdir().unwrap();
    write_tree(b_dir.path(), &b);
    for backend in BACKENDS {
        for (fault, eligible) in FAULTS {
            let attempts = sweep(&format!("push {backend:?} {fault:?}"), |n| {
                let (a, b, p) = (a.clone(), b.clone(), p.clone());
                let b_path = b_dir.path().to_path_buf();
                async move {
                    let label = label("push", backend, fault, n);
                    let env = env(backend);
                    let ha = push(&env.clean, &p, &a, "first").await.unwrap();
                    env.faults.arm(fault, eligible, n);
                    let faulty = env.faulty.clone();
                    let p2 = p.clone();
                    let result = guarded(&label, async move {
                        let opts = PushOptions { message: Some("second".into()), ..Default::default() };
                        faulty.push(&p2, &b_path, &opts, &NoProgress).await
                    })
                    .await;
                    let hit = env.faults.disarm();
                    let (latest, files) = check_complete(&env.clean, &p, &label).await;
                    match &result {
                        Ok(report) => {
                            assert_eq!(latest, report.top_hash, "{label}: push succeeded but latest is elsewhere");
                            assert_eq!(files, b, "{label}: pushed content differs");
                        }
                        Err(e) => {
                            assert!(hit.is_some(), "{label}: failed without a fault: {e}");
                            assert_names(&label, &e.to_string(), &names(&p, &[&ha], &[&a, &b]));
                            note_code(&label, fault, registry_code(e), &e.to_string());
                            assert!(latest == ha || files == b, "{label}: latest {latest} is neither revision");
                        }
                    }
                    hit.is_some()
                }
            })
            .await;
            eprintln!("push {backend:?} {fault:?}: {attempts} attempts");
        }
    }
}

// ---------------------------------------------------------------------------
// install and verify
// ---------------------------------------------------------------------------

/// No partial download and no file with wrong content in the folder.
fn check_install_dir(label: &str, dest: &FsPath, expected: &Files) {
    for (rel, data) in read_tree(dest) {
        assert!(!rel.contains("sheaf-partial"), "{label}: partial file {rel} left in the install folder");
        match expected.get(&rel) {
            None => panic!("{label}: unexpected file {rel} in the install folder"),
            Some(want) => assert!(
                *want == data,
                "{label}: {rel} was installed with wrong content ({} bytes, want {})",
                data.len(),
                want.len()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_under_faults() {
    count_panics();
    let a = tree_a();
    let p = pkg("t/p");
    for backend in BACKENDS {
        let env = env(backend);
        let ha = push(&env.clean, &p, &a, "first").await.unwrap();
        let r = at(&p, &ha[..10]);
        let latest_ref: PackageRef = "t/p".parse().unwrap();
        let sub_ref: PackageRef = "t/p/sub".parse().unwrap();
        let sub_files: Files =
            a.iter().filter_map(|(k, v)| k.strip_prefix("sub/").map(|k| (k.to_owned(), v.clone()))).collect();
        for (what, r, expected) in [("pinned", &r, &a), ("latest", &latest_ref, &a), ("sub-path", &sub_ref, &sub_files)]
        {
            for (fault, eligible) in FAULTS {
                // Fresh folders show each attempt alone; a kept folder shows
                // that what earlier failed attempts left does not stop later ones.
                for keep_dest in [false, true] {
                    let kept = tempfile::tempdir().unwrap();
                    let attempts = sweep(&format!("install {what} {backend:?} {fault:?}"), |n| {
                        let (faulty, faults, r, expected) =
                            (env.faulty.clone(), env.faults.clone(), r.clone(), expected.clone());
                        let kept = kept.path().to_path_buf();
                        let p = p.clone();
                        let ha = ha.clone();
                        async move {
                            let label =
                                format!("{} ({what}, keep_dest={keep_dest})", label("install", backend, fault, n));
                            let fresh = tempfile::tempdir().unwrap();
                            let dest = if keep_dest { kept } else { fresh.path().to_path_buf() };
                            faults.arm(fault, eligible, n);
                            let d = dest.clone();
                            let result =
                                guarded(&label, async move { faulty.install(&r, &d, &NoProgress).await }).await;
                            let hit = faults.disarm();
                            check_install_dir(&label, &dest, &expected);
                            match &result {
                                Ok(report) => {
                                    assert_eq!(read_tree(&dest), expected, "{label}: install reported success");
                                    assert_eq!(report.top_hash, ha);
                                }
                                Err(e) => {
                                    assert!(hit.is_some(), "{label}: failed without a fault: {e}");
                                    assert_names(&label, &e.to_string(), &names(&p, &[&ha], &[&expected]));
                                    note_code(&label, fault, registry_code(e), &e.to_string());
                                }
                            }
                            hit.is_some()
                        }
                    })
                    .await;
                    eprintln!("install {what} {backend:?} {fault:?} keep={keep_dest}: {attempts} attempts");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_under_faults() {
    count_panics();
    let a = tree_a();
    let p = pkg("t/p");
    for backend in BACKENDS {
        let env = env(backend);
        let ha = push(&env.clean, &p, &a, "first").await.unwrap();
        let good = tempfile::tempdir().unwrap();
        write_tree(good.path(), &a);
        let bad = tempfile::tempdir().unwrap();
        let mut changed = a.clone();
        changed.insert("sub/deep/x.bin".into(), bytes_of(9, 300_000));
        write_tree(bad.path(), &changed);
        for (dir, ok) in [(good.path(), true), (bad.path(), false)] {
            for (fault, eligible) in FAULTS {
                let attempts = sweep(&format!("verify {backend:?} {fault:?}"), |n| {
                    let (faulty, faults, dir) = (env.faulty.clone(), env.faults.clone(), dir.to_path_buf());
                    let (p, ha, a) = (p.clone(), ha.clone(), a.clone());
                    async move {
                        let label = format!("{} (folder ok: {ok})", label("verify", backend, fault, n));
                        faults.arm(fault, eligible, n);
                        let r: PackageRef = "t/p".parse().unwrap();
                        let result =
                            guarded(&label, async move { faulty.verify(&r, &dir, false, &NoProgress).await }).await;
                        let hit = faults.disarm();
                        match &result {
                            Ok(report) => {
                                assert_eq!(report.ok, ok, "{label}: {report:?}");
                                assert_eq!(report.top_hash, ha);
                                assert_eq!(report.checked, a.len());
                            }
                            Err(e) => {
                                assert!(hit.is_some(), "{label}: failed without a fault: {e}");
                                assert_names(&label, &e.to_string(), &names(&p, &[&ha], &[]));
                                note_code(&label, fault, registry_code(e), &e.to_string());
                            }
                        }
                        hit.is_some()
                    }
                })
                .await;
                eprintln!("verify {backend:?} {fault:?} ok={ok}: {attempts} attempts");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// commit
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_under_faults() {
    count_panics();
    let a = tree_a();
    let p = pkg("t/p");
    let added = bytes_of(7, 50_000);
    let replaced = bytes_of(8, 1000);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("added"), &added).unwrap();
    std::fs::write(src.path().join("replaced"), &replaced).unwrap();
    let mut expected = a.clone();
    expected.insert("up/added.bin".into(), added.clone());
    expected.insert("a.txt".into(), replaced.clone());
    for backend in BACKENDS {
        for pinned in [false, true] {
            for (fault, eligible) in FAULTS {
                let attempts =
                    sweep(&format!("commit {backend:?} {fault:?}"), |n| {
                        let (a, p, expected) = (a.clone(), p.clone(), expected.clone());
                        let src = src.path().to_path_buf();
                        async move {
                            let label = format!("{} (pinned base: {pinned})", label("commit", backend, fault, n));
                            let env = env(backend);
                            let ha = push(&env.clean, &p, &a, "first").await.unwrap();
                            let base = if pinned { Base::Exactly(ha.clone()) } else { Base::Latest };
                            let files = vec![
                                CommitFile::new("up/added.bin", src.join("added")),
                                CommitFile::new("a.txt", src.join("replaced")),
                            ];
                            env.faults.arm(fault, eligible, n);
                            let (faulty, p2) = (env.faulty.clone(), p.clone());
                            let result = guarded(&label, async move {
                                faulty.commit(&p2, files, &base, Some("commit".into())).await
                            })
                            .await;
                            let hit = env.faults.disarm();
                            let (latest, files) = check_complete(&env.clean, &p, &label).await;
                            match &result {
                                Ok(report) => {
                                    assert_eq!(
                                        latest, report.top_hash,
                                        "{label}: commit succeeded but latest is elsewhere"
                                    );
                                    assert_eq!(report.previous.as_deref(), Some(ha.as_str()));
                                    assert_eq!(files, expected, "{label}: committed content differs");
                                }
                                Err(e) => {
                                    assert!(hit.is_some(), "{label}: failed without a fault: {e}");
                                    assert_names(&label, &e.to_string(), &names(&p, &[&ha], &[&expected]));
                                    note_code(&label, fault, registry_code(e), &e.to_string());
                                    assert!(
                                        latest == ha || files == expected,
                                        "{label}: latest {latest} is neither revision"
                                    );
                                }
                            }
                            hit.is_some()
                        }
                    })
                    .await;
                eprintln!("commit {backend:?} {fault:?} pinned={pinned}: {attempts} attempts");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// log (revision messages)
// ---------------------------------------------------------------------------

/// `revisions` reads each message from the head of its manifest; a short
/// read must not turn a message into "no message".
async fn log_sweep(backends: &[Backend], faults_list: &[(Fault, fn(Op) -> bool)]) {
    count_panics();
    let p = pkg("t/p");
    for &backend in backends {
        let env = env(backend);
        // Cut inside the header line, where the message is.
        env.faults.keep(10);
        push(&env.clean, &p, &tree_a(), "first").await.unwrap();
        push(&env.clean, &p, &tree_b(), "second").await.unwrap();
        let want: Vec<Option<String>> = env.clean.revisions(&p).await.unwrap().into_iter().map(|r| r.message).collect();
        assert_eq!(want, [Some("second".to_owned()), Some("first".to_owned())]);
        for &(fault, eligible) in faults_list {
            sweep(&format!("log {backend:?} {fault:?}"), |n| {
                let (faulty, faults, p, want) = (env.faulty.clone(), env.faults.clone(), p.clone(), want.clone());
                async move {
                    let label = label("log", backend, fault, n);
                    faults.arm(fault, eligible, n);
                    let p2 = p.clone();
                    let result = guarded(&label, async move { faulty.revisions(&p2).await }).await;
                    let hit = faults.disarm();
                    match &result {
                        Ok(revs) => {
                            let got: Vec<Option<String>> = revs.iter().map(|r| r.message.clone()).collect();
                            assert_eq!(got, want, "{label}: a log listed wrong messages as complete");
                        }
                        Err(e) => {
                            assert!(hit.is_some(), "{label}: failed without a fault: {e}");
                            assert_names(&label, &e.to_string(), &names(&p, &[], &[]));
                        }
                    }
                    hit.is_some()
                }
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_under_errors() {
    log_sweep(&BACKENDS, &FAULTS[..1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_under_short_reads() {
    log_sweep(&BACKENDS, &FAULTS[1..]).await;
}

// ---------------------------------------------------------------------------
// DoGet: Engine::plan, then each ticket through SheafFlight::messages
// ---------------------------------------------------------------------------

const ROWS: i64 = 3000;

fn table() -> RecordBatch {
    let ids: Vec<i64> = (0..ROWS).collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids.clone())) as Arc<dyn Array>),
        ("name", Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("row-{i}"))))),
        ("x", Arc::new(Float64Array::from_iter_values(ids.iter().map(|i| *i as f64 / 7.0)))),
    ])
    .unwrap()
}

fn parquet_bytes(batch: &RecordBatch, row_group_rows: usize) -> Vec<u8> {
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(row_group_rows)).build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    out
}

fn csv_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    arrow::csv::Writer::new(&mut out).write(batch).unwrap();
    out
}

fn jsonl_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
    w.write(batch).unwrap();
    w.finish().unwrap();
    w.into_inner()
}

fn ipc_stream_bytes(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    for start in (0..batch.num_rows()).step_by(500) {
        w.write(&batch.slice(start, 500.min(batch.num_rows() - start))).unwrap();
    }
    w.finish().unwrap();
    out
}

/// The package read by the DoGet tests: a 3-row-group Parquet table and
/// the same rows as CSV, JSON lines and an Arrow IPC stream.
fn tables() -> Files {
    let t = table();
    let mut f = Files::new();
    f.insert("t/data.parquet".into(), parquet_bytes(&t, 1000));
    f.insert("t/rows.csv".into(), csv_bytes(&t));
    f.insert("t/rows.jsonl".into(), jsonl_bytes(&t));
    f.insert("t/rows.arrows".into(), ipc_stream_bytes(&t));
    f.insert("notes.txt".into(), b"not a table".to_vec());
    f
}

/// A failed read: the message and the gRPC code the client sees.
#[derive(Debug)]
struct ReadError {
    message: String,
    code: Code,
}

impl From<sheaf::query::Error> for ReadError {
    fn from(e: sheaf::query::Error) -> Self {
        ReadError { message: e.to_string(), code: sheaf::flight::status::from_query(&e).code() }
    }
}

impl From<tonic::Status> for ReadError {
    fn from(s: tonic::Status) -> Self {
        ReadError { message: s.message().to_owned(), code: s.code() }
    }
}

/// GetFlightInfo then DoGet of every endpoint, as a client would: the
/// schema and the batches of all endpoints in order.
async fn read_all(
    engine: &Engine,
    flight: &SheafFlight,
    uri: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), ReadError> {
    let uri = DatasetUri::parse(uri)?;
    let plan = engine.plan(&uri).await?;
    let mut batches = Vec::new();
    for ticket in &plan.tickets {
        let messages = targets::redeem(flight, Bytes::from(ticket.encode_to_vec())).await?;
        let data = messages.map_ok(WireMessage::into_flight_data).map_err(|s| FlightError::Tonic(Box::new(s)));
        let decoded: Vec<RecordBatch> =
            FlightRecordBatchStream::new_from_flight_data(data).try_collect().await.map_err(|e| match e {
                FlightError::Tonic(s) => ReadError::from(*s),
                other => ReadError { message: other.to_string(), code: Code::Internal },
            })?;
        batches.extend(decoded);
    }
    Ok((plan.schema, batches))
}

/// GetFlightInfo's plan, then each ticket straight through
/// `Engine::execute` (without the Flight service's pipeline and encoding).
async fn read_direct(engine: &Engine, uri: &str) -> Result<(SchemaRef, Vec<RecordBatch>), ReadError> {
    let uri = DatasetUri::parse(uri)?;
    let plan = engine.plan(&uri).await?;
    let mut batches = Vec::new();
    for ticket in &plan.tickets {
        let execution = engine.execute(ticket.clone()).await?;
        let got: Vec<RecordBatch> = execution.batches.try_collect().await?;
        batches.extend(got);
    }
    Ok((plan.schema, batches))
}

/// How a DoGet sweep reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `SheafFlight::messages`, decoded as a client would.
    Flight,
    /// `Engine::execute`.
    Engine,
}

fn flight_over(engine: Arc<Engine>) -> SheafFlight {
    targets::new_flight(engine, StreamCache::new(256 << 20, 1))
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn same_rows(a: &(SchemaRef, Vec<RecordBatch>), b: &(SchemaRef, Vec<RecordBatch>)) -> bool {
    let concat =
        |(schema, batches): &(SchemaRef, Vec<RecordBatch>)| arrow::compute::concat_batches(schema, batches).unwrap();
    let (x, y) = (concat(a), concat(b));
    x.num_rows() == y.num_rows()
        && x.num_columns() == y.num_columns()
        && x.columns().iter().zip(y.columns()).all(|(c, d)| c.to_data() == d.to_data())
}

/// Reads of the DoGet tests and the rows each returns.
const READS: &[(&str, usize)] = &[
    ("sheaf://t/p/t/data.parquet", ROWS as usize),
    ("sheaf://t/p/t/data.parquet?partitions=3", ROWS as usize),
    ("sheaf://t/p/t/data.parquet?filter=id%20%25%202%20%3D%200", ROWS as usize / 2),
    ("sheaf://t/p/t/data.parquet?columns=name&limit=1500", 1500),
    ("sheaf://t/p/t/data.parquet?sample_rows=100&seed=3", 100),
];

/// Reads of whole-file tables and of the manifest table's contents.
const SEQUENTIAL_READS: &[(&str, usize)] = &[
    ("sheaf://t/p/t/rows.csv", ROWS as usize),
    ("sheaf://t/p/t/rows.jsonl", ROWS as usize),
    ("sheaf://t/p/t/rows.arrows", ROWS as usize),
    ("sheaf://t/p?content=true", 5),
];

/// Under faults, plans each read and redeems its tickets (`tag` starts the
/// attempts' labels).
async fn doget_sweep(
    tag: &'static str,
    via: Via,
    reads: &[(&'static str, usize)],
    backends: &[Backend],
    faults_list: &[(Fault, fn(Op) -> bool)],
) {
    count_panics();
    let p = pkg("t/p");
    let files = tables();
    for &backend in backends {
        let env = env(backend);
        let top = push(&env.clean, &p, &files, "tables").await.unwrap();
        for &(uri, want_rows) in reads {
            let clean_engine = Engine::new(env.clean.clone());
            let baseline =
                read_all(&clean_engine, &flight_over(Arc::new(Engine::new(env.clean.clone()))), uri).await.unwrap();
            assert_eq!(rows(&baseline.1), want_rows, "baseline read of {uri}");
            let baseline = Arc::new(baseline);
            for &(fault, eligible) in faults_list {
                let attempts = sweep(&format!("doget {uri} {backend:?} {fault:?}"), |n| {
                    let (faulty, faults, p, top, baseline, files) =
                        (env.faulty.clone(), env.faults.clone(), p.clone(), top.clone(), baseline.clone(), files.clone());
                    async move {
                        let label = format!("{tag} {} reading {uri} via {via:?}", label("DoGet", backend, fault, n));
                        // A fresh engine and server per attempt: nothing cached yet.
                        let engine = Arc::new(Engine::new(faulty));
                        let flight = Arc::new(flight_over(engine.clone()));
                        faults.arm(fault, eligible, n);
                        let (e2, f2) = (engine.clone(), flight.clone());
                        let result = guarded(&label, async move {
                            match via {
                                Via::Flight => read_all(&e2, &f2, uri).await,
                                Via::Engine => read_direct(&e2, uri).await,
                            }
                        })
                        .await;
                        let hit = faults.disarm();
                        match &result {
                            Ok(got) => assert!(
                                same_rows(got, &baseline),
                                "{label}: the read succeeded with {} rows where the table gives {} (or different values){}",
                                rows(&got.1),
                                rows(&baseline.1),
                                hit.as_deref().map(|h| format!("; fault: {h}")).unwrap_or_default()
                            ),
                            Err(e) => {
                                assert!(hit.is_some(), "{label}: failed without a fault: {e:?}");
                                assert_names(&label, &e.message, &names(&p, &[&top], &[&files]));
                                note_code(&label, fault, e.code, &e.message);
                            }
                        }
                        // Without faults, the same server (its caches, its
                        // stream cache) must now return the whole table.
                        let again = guarded(&label, async move { read_all(&engine, &flight, uri).await }).await;
                        match again {
                            Ok(got) => assert!(
                                same_rows(&got, &baseline),
                                "{label}: after the faulted attempt the same server returns {} rows instead of {}",
                                rows(&got.1),
                                rows(&baseline.1)
                            ),
                            Err(e) => panic!("{label}: after the faulted attempt the same server fails: {e:?}"),
                        }
                        hit.is_some()
                    }
                })
                .await;
                eprintln!("DoGet {uri} via {via:?} {backend:?} {fault:?}: {attempts} attempts");
            }
        }
    }
}

/// Faults for Parquet reads: short reads only of whole and ranged GETs
/// (manifests, pointers); `get_ranges`, which Parquet footers and pages
/// come through, has its own test below.
const PARQUET_FAULTS: [(Fault, fn(Op) -> bool); 4] = [
    (Fault::Error, any_op),
    (Fault::ShortRead, streams),
    (Fault::TruncatedStream, streams),
    (Fault::StreamError, streams),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doget_parquet_under_faults() {
    for via in [Via::Flight, Via::Engine] {
        doget_sweep("doget_parquet", via, READS, &BACKENDS, &PARQUET_FAULTS).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doget_parquet_under_short_reads() {
    doget_sweep("doget_parquet_short", Via::Flight, READS, &BACKENDS, &[(Fault::ShortRead, multi_ranged)]).await;
}

/// Storage failures mid-read should reach the client as UNAVAILABLE (worth a
/// retry) and corrupt or short data as DATA_LOSS, never as INVALID_ARGUMENT
/// (the client's fault) or INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_faults_get_unavailable_or_data_loss() {
    let reads = [READS[0], READS[2], SEQUENTIAL_READS[0], SEQUENTIAL_READS[2]];
    doget_sweep("codes", Via::Flight, &reads, &[Backend::Memory], &PARQUET_FAULTS).await;
    let odd: Vec<String> = ODD_CODES.lock().unwrap().iter().filter(|l| l.starts_with("codes ")).cloned().collect();
    assert!(odd.is_empty(), "storage faults answered with unexpected codes:\n{}", odd.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doget_sequential_under_faults() {
    for via in [Via::Flight, Via::Engine] {
        doget_sweep("doget_sequential", via, SEQUENTIAL_READS, &BACKENDS, &FAULTS).await;
    }
}

// ---------------------------------------------------------------------------
// DoPut through SheafFlight::do_put
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doput_under_faults() {
    count_panics();
    let p = pkg("t/p");
    let a = tree_a();
    let batch = table();
    let uri = "sheaf://t/p/up/new.parquet";
    let messages = targets::flight_io::put_messages(uri, &[batch.slice(0, 1000), batch.slice(1000, 2000)]);
    for backend in BACKENDS {
        for (fault, eligible) in FAULTS {
            let attempts = sweep(&format!("doput {backend:?} {fault:?}"), |n| {
                let (a, p, messages) = (a.clone(), p.clone(), messages.clone());
                async move {
                    let label = label("DoPut", backend, fault, n);
                    let env = env(backend);
                    let ha = push(&env.clean, &p, &a, "first").await.unwrap();
                    let flight = Arc::new(flight_over(Arc::new(Engine::new(env.faulty.clone()))));
                    env.faults.arm(fault, eligible, n);
                    let result =
                        guarded(&label, async move { targets::flight_io::do_put(&flight, messages).await }).await;
                    let hit = env.faults.disarm();
                    let (latest, files) = check_complete(&env.clean, &p, &label).await;
                    let read_back = || async {
                        let clean = Engine::new(env.clean.clone());
                        let got = read_all(
                            &clean,
                            &flight_over(Arc::new(Engine::new(env.clean.clone()))),
                            "sheaf://t/p/up/new.parquet",
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{label}: the uploaded table cannot be read: {e:?}"));
                        rows(&got.1)
                    };
                    match &result {
                        Ok(json) => {
                            assert_eq!(
                                json["top_hash"].as_str(),
                                Some(latest.as_str()),
                                "{label}: DoPut succeeded but latest is elsewhere"
                            );
                            assert_eq!(json["rows"], 3000);
                            assert_eq!(read_back().await, 3000, "{label}");
                        }
                        Err(s) => {
                            assert!(hit.is_some(), "{label}: failed without a fault: {s:?}");
                            assert_names(
                                &label,
                                s.message(),
                                &[p.to_string(), ha[..12].to_owned(), "up/new.parquet".to_owned()],
                            );
                            note_code(&label, fault, s.code(), s.message());
                            if latest != ha {
                                assert!(
                                    files.contains_key("up/new.parquet"),
                                    "{label}: latest moved to {latest} without the upload"
                                );
                                assert_eq!(read_back().await, 3000, "{label}: a failed DoPut left a partial table");
                            }
                        }
                    }
                    hit.is_some()
                }
            })
            .await;
            eprintln!("DoPut {backend:?} {fault:?}: {attempts} attempts");
        }
    }
}

// ---------------------------------------------------------------------------
// Latency: reordered calls, concurrent writers
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_reorders_calls_but_never_loses_writes() {
    count_panics();
    let p = pkg("t/p");
    for backend in BACKENDS {
        let env = env(backend);
        env.faults.jitter(3, 0x5eed);
        // Concurrent pushes: every revision lands and is complete.
        let trees: Vec<Files> = (0..4u8)
            .map(|i| {
                let mut t = tree_a();
                t.insert(format!("only/{i}.bin"), bytes_of(i, 10_000 + i as usize));
                t
            })
            .collect();
        let pushes: Vec<_> = trees
            .iter()
            .map(|t| {
                let (reg, p, t) = (env.faulty.clone(), p.clone(), t.clone());
                tokio::spawn(async move { push(&reg, &p, &t, "concurrent").await })
            })
            .collect();
        let mut pushed = Vec::new();
        for h in pushes {
            pushed.push(h.await.unwrap().unwrap());
        }
        let (latest, _) = check_complete(&env.clean, &p, "concurrent pushes").await;
        assert!(pushed.contains(&latest));
        let logged: Vec<String> = env.clean.revisions(&p).await.unwrap().into_iter().map(|r| r.top_hash).collect();
        for h in &pushed {
            assert!(logged.contains(h), "{backend:?}: pushed revision {h} missing from the log");
        }
        // Concurrent unpinned commits of distinct files: all of them land.
        let src = tempfile::tempdir().unwrap();
        let commits: Vec<_> = (0..8u8)
            .map(|i| {
                let path = src.path().join(format!("c{i}"));
                std::fs::write(&path, bytes_of(100 + i, 5000)).unwrap();
                let (reg, p) = (env.faulty.clone(), p.clone());
                tokio::spawn(async move {
                    reg.commit(&p, vec![CommitFile::new(format!("c/{i}.bin"), path)], &Base::Latest, None).await
                })
            })
            .collect();
        for (i, c) in commits.into_iter().enumerate() {
            c.await.unwrap().unwrap_or_else(|e| panic!("{backend:?}: concurrent commit {i} failed: {e}"));
        }
        let (_, files) = check_complete(&env.clean, &p, "concurrent commits").await;
        for i in 0..8u8 {
            assert_eq!(
                files.get(&format!("c/{i}.bin")),
                Some(&bytes_of(100 + i, 5000)),
                "{backend:?}: commit {i} lost"
            );
        }
        // Reads under latency return the whole table.
        push(&env.clean, &p, &tables(), "tables").await.unwrap();
        let engine = Arc::new(Engine::new(env.faulty.clone()));
        let flight = flight_over(engine.clone());
        for &(uri, want) in READS.iter().chain(SEQUENTIAL_READS) {
            let (_, batches) =
                read_all(&engine, &flight, uri).await.unwrap_or_else(|e| panic!("{backend:?} {uri}: {e:?}"));
            assert_eq!(rows(&batches), want, "{backend:?} {uri}");
        }
    }
}
