//! A package registry on any object store, in quilt3's layout (version 1):
//!
//! ```text
//! .quilt/packages/<top_hash>                          manifests (JSONL)
//! .quilt/named_packages/<owner>/<name>/latest         pointer to the newest revision
//! .quilt/named_packages/<owner>/<name>/<unix_seconds> one pointer per pushed revision
//! .sheaf/blobs/<hex sha2-256-chunked digest>          content-addressed file data
//! .sheaf/tags/<owner>/<name>/<tag>                    named tags (Sheaf extension)
//! .sheaf/locks/, .sheaf/tmp/                          pointer locks and staging (local disk)
//! .sheaf/sessions/<id>/                               write sessions and their staged parts
//! ```
//!
//! [`Registry::gc`] removes what interrupted writes leave in `.sheaf/`.
//!
//! quilt3 reads and writes the `.quilt` part; it ignores `.sheaf`. Manifests
//! reference blobs through absolute physical keys, as quilt3 requires.

mod beneath;
mod commit;
mod diff;
mod error;
mod extra_files;
mod gc;
mod hints;
mod install;
mod lineage;
mod local_blobs;
mod local_copy;
mod location;
mod manifest_index;
mod metered;
mod names;
mod own;
mod pointers;
mod push;
mod quiltignore;
mod selection;
mod session;
mod session_end;
mod staged;
mod table_schema;

pub use commit::{Base, CommitFile, CommitReport};
pub use diff::Diff;
pub use error::{Error, Result, hide_credentials, storage_full};
pub use gc::{Action as GcAction, GarbageKind, GcOptions, GcReport, Leftover};
pub use install::{InstallReport, VerifyReport};
pub use lineage::{LineageInput, LineageNode, is_top_hash};
pub use location::{Location, ReadPolicy, Resolved};
pub use manifest_index::{BLOCK_ENTRIES, Block, ManifestIndex};
pub use names::{PackageName, PackageRef, Revision, validate_tag};
pub use own::TTL as OWN_REVISION_TTL;
pub use pointers::{DeleteReport, PackageSummary, RevisionInfo, now_secs};
pub use push::{PushOptions, PushReport};
pub use selection::Selection;
pub use session::{DEFAULT_TTL_SECS, MAX_PART, PartRecord, SessionSpec, WriteMode, WriteOutcome, is_file_table};
pub use table_schema::{columns_of, table_entries};

use crate::manifest::hash::StreamHasher;
use crate::manifest::{Entry, Manifest};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetResult, GetResultPayload, ObjectStore, ObjectStoreExt};
use std::sync::Arc;

const MANIFESTS: &str = ".quilt/packages";
const NAMED: &str = ".quilt/named_packages";
const BLOBS: &str = ".sheaf/blobs";
const TAGS: &str = ".sheaf/tags";
const LOCKS: &str = ".sheaf/locks";
const TMP: &str = ".sheaf/tmp";

/// How many object-store requests one operation keeps in flight.
const IO_CONCURRENCY: usize = 8;

/// A pool of threads for work that both reads or writes files and hashes
/// them (push, install, verify): two per core, so that while some wait for
/// the disk, others hash.
fn io_pool(what: &str) -> Result<rayon::ThreadPool> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| Error::io(what, std::io::Error::other(e)))
}

/// Hands `items` to `each` a round of `size` at a time (each round usually
/// run on an [`io_pool`]), so memory holds one round whatever the count;
/// stops at the first error of either.
fn in_rounds<T>(
    mut items: impl Iterator<Item = Result<T>>,
    size: usize,
    mut each: impl FnMut(Vec<T>) -> Result<()>,
) -> Result<()> {
    loop {
        let round = items.by_ref().take(size).collect::<Result<Vec<T>>>()?;
        if round.is_empty() {
            return Ok(());
        }
        each(round)?;
    }
}

/// A hasher for the entry's data, or an error naming the entry when Sheaf
/// cannot compute its hash type (never read as if verified).
fn hasher_for(entry: &Entry) -> Result<StreamHasher> {
    StreamHasher::new(&entry.hash, entry.size).ok_or_else(|| {
        let why =
            crate::manifest::Error::UnverifiableHash { key: entry.logical_key.clone(), kind: entry.hash.kind.clone() };
        Error::invalid(why.to_string())
    })
}

/// A registry: an object-store location plus the policy for reading physical
/// keys that point outside it.
#[derive(Clone)]
pub struct Registry {
    location: Location,
    store: Arc<dyn ObjectStore>,
    policy: ReadPolicy,
    /// Set when a revision named by hash must be one of the package's own
    /// ([`Registry::with_own_revisions`]): the revisions confirmed so.
    own_revisions: Option<Arc<own::OwnRevisions>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("url", &self.location.url.as_str()).finish()
    }
}

/// A local registry's folder that is not there (see `Registry::folder_gone`).
struct StorageGone(String);

impl StorageGone {
    /// The storage error for doing `context`: UNAVAILABLE to clients, the
    /// folder named only in the log.
    fn context(self, context: String) -> Error {
        Error::Storage {
            context,
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!("the registry folder {} is gone (deleted or unmounted)", self.0).into(),
            },
        }
    }
}

impl Registry {
    /// Opens the registry at `spec` (a path or URL, see [`Location::parse`]).
    /// Physical keys outside it are followed ([`ReadPolicy::AllowAll`]); a
    /// server should call [`Registry::with_policy`].
    pub fn open(spec: &str) -> Result<Self> {
        let location = Location::parse(spec)?;
        let store = location.open()?;
        Ok(Registry { location, store, policy: ReadPolicy::AllowAll, own_revisions: None })
    }

    /// A registry at `spec` whose objects are read and written through
    /// `store` instead of the store `spec` names (tests wrap the real store,
    /// for example to inject faults). Physical keys are still written as
    /// URLs under `spec`.
    pub fn with_store(spec: &str, store: Arc<dyn ObjectStore>) -> Result<Self> {
        let location = Location::parse(spec)?;
        // The same checks and counters as every store the registry opens.
        let store = metered::Metered::wrap(store);
        Ok(Registry { location, store, policy: ReadPolicy::AllowAll, own_revisions: None })
    }

    /// Restricts which physical keys outside the registry may be read.
    pub fn with_policy(mut self, policy: ReadPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// With `own` set, `owner/name@hash` names only a revision of
    /// `owner/name` (one its timestamps, `latest` or a tag point to): a
    /// server whose callers have grants sets it, so that a caller may not
    /// read another package's revision through a package it may read.
    /// Unset (the CLI, as quilt3), a full hash names any manifest in the
    /// registry and a prefix falls back to any manifest it begins. A full
    /// hash found among the package's revisions is remembered for
    /// [`OWN_REVISION_TTL`] (its pointers are not read again meanwhile).
    pub fn with_own_revisions(mut self, own: bool) -> Self {
        self.own_revisions = own.then(|| Arc::new(own::OwnRevisions::new()));
        self
    }

    /// Fails as a missing revision unless `top_hash` is a revision of
    /// `pkg` (only when [`Registry::with_own_revisions`] is set): for a hash
    /// that comes pinned from a client rather than resolved here.
    pub async fn check_own_revision(&self, pkg: &PackageName, top_hash: &str) -> Result<()> {
        let Some(own) = &self.own_revisions else { return Ok(()) };
        if own.knows(pkg, top_hash) || self.own_hashes(pkg).await?.iter().any(|h| h == top_hash) {
            return Ok(());
        }
        Err(Error::NotFound(format!("revision {top_hash} of {pkg}")))
    }

    /// The package's revisions (timestamps, `latest`, tags), read now and,
    /// with [`Registry::with_own_revisions`], remembered as its own.
    async fn own_hashes(&self, pkg: &PackageName) -> Result<Vec<String>> {
        let hashes = self.pointed_hashes(pkg).await?;
        if let Some(own) = &self.own_revisions {
            own.confirm(pkg, &hashes);
        }
        Ok(hashes)
    }

    /// The registry's root URL.
    pub fn url(&self) -> &url::Url {
        &self.location.url
    }

    /// The error for a package this registry does not have, or that the
    /// caller may not see (both answer alike, so a name leaks nothing).
    pub fn package_not_found(&self, package: impl std::fmt::Display) -> Error {
        match self.folder_gone() {
            Some(e) => e.context(format!("reading package {package}")),
            None => Error::NotFound(format!("package {package} in {}", self.url())),
        }
    }

    /// For a local registry whose folder is gone (deleted, or a volume
    /// unmounted), the storage failure to report: nothing in it can be
    /// said not to exist, and a retry (elsewhere) may succeed.
    fn folder_gone(&self) -> Option<StorageGone> {
        let root = self.location.local_root.as_ref()?;
        (!root.is_dir()).then(|| StorageGone(root.display().to_string()))
    }

    /// Whether the registry's storage answers: the first page of a listing
    /// of its manifests folder (a server is not ready before it does); a
    /// local registry's folder must exist.
    pub async fn reachable(&self) -> Result<()> {
        if let Some(e) = self.folder_gone() {
            return Err(e.context(format!("listing {MANIFESTS}")));
        }
        // The first page only (one request): a ready server repeats this
        // check, and a registry may hold many manifests.
        match self.store.list(Some(&Path::from(MANIFESTS))).next().await {
            None | Some(Ok(_)) | Some(Err(object_store::Error::NotFound { .. })) => Ok(()), // NotFound: an empty registry
            Some(Err(e)) => Err(Error::storage(format!("listing {MANIFESTS} in {}", self.url()), e)),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn manifest_path(top_hash: &str) -> Path {
        Path::from(MANIFESTS).join(top_hash)
    }

    fn named_dir(pkg: &PackageName) -> Path {
        Path::from(NAMED).join(pkg.owner.as_str()).join(pkg.name.as_str())
    }

    fn latest_path(pkg: &PackageName) -> Path {
        Self::named_dir(pkg).join("latest")
    }

    fn tags_dir(pkg: &PackageName) -> Path {
        Path::from(TAGS).join(pkg.owner.as_str()).join(pkg.name.as_str())
    }

    fn blob_path(hex: &str) -> Path {
        Path::from(BLOBS).join(hex)
    }

    /// Reads and parses the manifest named `top_hash`, checking that its
    /// content really hashes to that name.
    pub async fn read_manifest(&self, top_hash: &str) -> Result<Manifest> {
        self.read_manifest_parsed(top_hash).await.map(|(m, _)| m)
    }

    async fn read_manifest_parsed(&self, top_hash: &str) -> Result<(Manifest, crate::manifest::Parsed)> {
        let what = format!("manifest {top_hash} in {}", self.url());
        let bytes = self.get_bytes(&Self::manifest_path(top_hash), &what).await?;
        let (manifest, parsed) =
            Manifest::parse_hashed(&bytes).map_err(|source| Error::Manifest { top_hash: top_hash.into(), source })?;
        if parsed.top_hash != top_hash {
            return Err(Error::Integrity {
                what: format!("manifest {top_hash} (corrupt)"),
                expected: top_hash.into(),
                actual: parsed.top_hash,
            });
        }
        Ok((manifest, parsed))
    }

    /// The header of a revision (message, user metadata), read from its
    /// manifest's first line only.
    async fn read_header(&self, top_hash: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        let path = Self::manifest_path(top_hash);
        let what = format!("manifest {top_hash}");
        let head = match self.store.get_range(&path, 0..64 * 1024).await {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Err(Error::NotFound(what)),
            // A short manifest: ranges past the end are refused by some stores.
            Err(_) => self.get_bytes(&path, &what).await?,
        };
        // The header is the first line. When it does not parse from this
        // head (a header over 64 KiB, or a read cut short), the whole
        // manifest is read and checked against its hash instead: a damaged
        // read must fail, never report "no message".
        let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
        match serde_json::from_slice::<serde_json::Value>(first) {
            Ok(serde_json::Value::Object(h)) if head.contains(&b'\n') => Ok(h),
            _ => Ok(self.read_manifest(top_hash).await?.header),
        }
    }

    async fn get_bytes(&self, path: &Path, what: &str) -> Result<Bytes> {
        let result = self.store.get(path).await.map_err(|e| Error::storage(what, e))?;
        let expected = result.range.end - result.range.start;
        let bytes = result.bytes().await.map_err(|e| Error::storage(what, e))?;
        // A body that ends early is a failed read (worth a retry), not a
        // malformed object.
        if bytes.len() as u64 != expected {
            return Err(Error::cut_short(what, bytes.len() as u64, expected));
        }
        Ok(bytes)
    }

    /// Resolves a reference to a full top hash: the latest pointer, a tag, or a
    /// hash prefix (6+ characters, unique among the package's revisions, else
    /// among all manifests of the registry).
    pub async fn resolve(&self, pkg: &PackageName, revision: &Revision) -> Result<String> {
        match revision {
            Revision::Latest => {
                self.read_pointer(&Self::latest_path(pkg)).await?.ok_or_else(|| self.package_not_found(pkg))
            }
            Revision::Tag(tag) => self
                .read_pointer(&Self::tags_dir(pkg).join(tag.as_str()))
                .await?
                .ok_or_else(|| Error::NotFound(format!("tag {tag} of {pkg}"))),
            Revision::Hash(prefix) if prefix.len() == 64 && self.own_revisions.is_none() => {
                match self.store.head(&Self::manifest_path(prefix)).await {
                    Ok(_) => Ok(prefix.clone()),
                    Err(e) => Err(Error::storage(format!("revision {prefix} of {pkg}"), e)),
                }
            }
            Revision::Hash(hash) if self.own_revisions.as_ref().is_some_and(|o| o.knows(pkg, hash)) => Ok(hash.clone()),
            Revision::Hash(prefix) => {
                let mut own: Vec<String> =
                    self.own_hashes(pkg).await?.into_iter().filter(|h| h.starts_with(prefix.as_str())).collect();
                // Any manifest the prefix begins, unless only own revisions count.
                if own.is_empty() && self.own_revisions.is_none() {
                    own = self.manifests_with_prefix(prefix).await?;
                }
                own.sort();
                own.dedup();
                match own.len() {
                    0 => Err(Error::NotFound(format!("revision {prefix} of {pkg}"))),
                    1 => Ok(own.pop().unwrap()),
                    _ => Err(Error::Ambiguous { package: pkg.to_string(), prefix: prefix.clone(), candidates: own }),
                }
            }
        }
    }

    /// Resolves a reference and reads its manifest.
    pub async fn load(&self, r: &PackageRef) -> Result<(String, Manifest)> {
        let top_hash = self.resolve(&r.package, &r.revision).await?;
        let manifest = self.read_manifest(&top_hash).await?;
        Ok((top_hash, manifest))
    }

    async fn manifests_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = Path::from(MANIFESTS);
        self.store
            .list(Some(&dir))
            .try_filter_map(|meta| {
                let name = meta.location.filename().unwrap_or_default().to_owned();
                futures::future::ready(Ok(name.starts_with(prefix).then_some(name)))
            })
            .try_collect()
            .await
            .map_err(|e| Error::storage(format!("listing manifests in {}", self.url()), e))
    }

    /// This registry's content-addressed copy of an entry's data, if it has one.
    async fn own_blob(&self, entry: &Entry) -> Option<Path> {
        let path = Self::blob_path(&entry.hash.blob_hex()?);
        self.store.head(&path).await.ok().map(|_| path)
    }

    /// Streams the bytes of an entry, subject to the read policy. Data is read
    /// from the registry itself when the physical key points into it, or when
    /// the registry holds a blob with the entry's hash (a copied registry, or
    /// a quilt3-built revision whose files Sheaf has since pushed); otherwise
    /// from wherever the physical key points.
    pub async fn open_entry(&self, entry: &Entry) -> Result<BoxStream<'static, Result<Bytes>>> {
        Ok(self.open_entry_at(entry).await?.0)
    }

    /// As [`Registry::open_entry`], with the URL of what is read: the
    /// physical key, or this registry's blob of the entry's hash.
    pub(crate) async fn open_entry_at(&self, entry: &Entry) -> Result<(BoxStream<'static, Result<Bytes>>, String)> {
        let Resolved { store, path, version } = self.locate(entry).await?;
        let physical_key = entry.physical_keys.first().map(String::as_str).unwrap_or_default();
        let from = match Arc::ptr_eq(&store, &self.store) {
            true => format!("{}/{path}", self.url()),
            false => physical_key.to_owned(),
        };
        let what = format!("data of {} at {from}", entry.logical_key);
        let options = GetOptions { version, ..Default::default() };
        let result = store.get_opts(&path, options).await.map_err(|e| Error::storage(what.clone(), e))?;
        Ok((body_stream(result).map_err(move |e| Error::storage(what.clone(), e)).boxed(), from))
    }

    /// Streams the bytes of an entry (as [`Registry::open_entry`]) checked
    /// against its hash: the last chunk is held back until everything has
    /// been hashed, so a reader never reaches the end of data that does not
    /// match; it gets [`Error::Integrity`] instead. An entry whose hash type
    /// Sheaf cannot verify is refused before anything is read.
    pub async fn open_entry_verified(&self, entry: &Entry) -> Result<BoxStream<'static, Result<Bytes>>> {
        let hasher = hasher_for(entry)?;
        let body = self.open_entry(entry).await?;
        let (what, expected, size) = (format!("data of {}", entry.logical_key), entry.hash.clone(), entry.size);
        struct State {
            body: BoxStream<'static, Result<Bytes>>,
            hasher: Option<StreamHasher>,
            held: Option<Bytes>,
        }
        let state = State { body, hasher: Some(hasher), held: None };
        Ok(futures::stream::unfold(Some(state), move |state| {
            let (what, expected) = (what.clone(), expected.clone());
            async move {
                let mut state = state?;
                loop {
                    match state.body.next().await {
                        Some(Ok(chunk)) => {
                            if let Some(h) = state.hasher.as_mut() {
                                h.update(&chunk);
                            }
                            if let Some(previous) = state.held.replace(chunk) {
                                return Some((Ok(previous), Some(state)));
                            }
                        }
                        Some(Err(e)) => return Some((Err(e), None)),
                        None => {
                            let verdict = match state.hasher.take()?.finish() {
                                Ok(h) if h == expected => Ok(()),
                                Ok(h) => Err(Error::Integrity {
                                    what,
                                    expected: expected.to_string(),
                                    actual: h.to_string(),
                                }),
                                Err(seen) => Err(Error::Integrity {
                                    what,
                                    expected: format!("{size} bytes"),
                                    actual: format!("{seen} bytes"),
                                }),
                            };
                            return match (verdict, state.held.take()) {
                                (Err(e), _) => Some((Err(e), None)),
                                (Ok(()), Some(last)) => Some((Ok(last), None)),
                                (Ok(()), None) => None,
                            };
                        }
                    }
                }
            }
        })
        .boxed())
    }

    /// Where an entry's data is (see [`Registry::open_entry`]), after the read
    /// policy allowed it.
    pub async fn locate(&self, entry: &Entry) -> Result<Resolved> {
        let physical_key = entry
            .physical_keys
            .first()
            .ok_or_else(|| Error::invalid(format!("entry {} has no physical key", entry.logical_key)))?;
        let root = format!("{}/", self.url());
        let inside = |path| Resolved { store: self.store.clone(), path, version: None };
        if let Some(rel) = physical_key.strip_prefix(&root) {
            let path =
                Path::from_url_path(rel).map_err(|e| Error::invalid(format!("physical key {physical_key}: {e}")))?;
            return Ok(inside(path));
        }
        if let Some(blob) = self.own_blob(entry).await {
            return Ok(inside(blob));
        }
        location::resolve_external(physical_key, &self.policy).map_err(|e| match e {
            Error::Forbidden { physical_key, .. } => {
                Error::Forbidden { physical_key, logical_key: entry.logical_key.clone() }
            }
            other => other,
        })
    }
}

/// How much of a local file [`body_stream`] reads per step.
const LOCAL_CHUNK: u64 = 1024 * 1024;

/// The body of `result` as a stream of chunks. object_store streams a local
/// file 8 KiB at a time, each read on a blocking thread (two thread wake-ups
/// per 8 KiB: a third of the CPU of reading a manifest went to them); here
/// local files are read 1 MiB at a time. A file shorter than the range it
/// was opened for is an error, not a short body.
fn body_stream(result: GetResult) -> BoxStream<'static, object_store::Result<Bytes>> {
    let range = result.range;
    match result.payload {
        GetResultPayload::File(file, path) => {
            let file = Arc::new(file);
            futures::stream::try_unfold(range.start, move |pos| {
                let (file, path) = (file.clone(), path.clone());
                async move {
                    if pos >= range.end {
                        return Ok(None);
                    }
                    let len = (range.end - pos).min(LOCAL_CHUNK);
                    let read = tokio::task::spawn_blocking(move || {
                        use std::os::unix::fs::FileExt;
                        let mut buf = vec![0u8; len as usize];
                        file.read_exact_at(&mut buf, pos).map(|()| buf).map_err(|e| object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: format!("reading {} at {pos}: {e}", path.display()).into(),
                        })
                    });
                    let buf = read.await.expect("read task panicked")?;
                    Ok(Some((Bytes::from(buf), pos + len)))
                }
            })
            .boxed()
        }
        GetResultPayload::Stream(s) => s,
    }
}
