//! `gc`: removes what interrupted writes leave behind in a registry's `.sheaf/`
//! area and, only when asked, blobs that no manifest references. quilt3 never
//! deletes data; this is Sheaf's own addition, and it is careful in the ways
//! `git gc`/`git prune` and `restic prune` are:
//!
//! - **A dry run unless told otherwise** ([`GcOptions::delete`]): the report
//!   lists every file that would go, with its size, age and why it is garbage.
//! - **Only Sheaf's own areas.** Nothing outside `.sheaf/` is ever touched
//!   (manifests and pointers under `.quilt/` stay, referenced or not), nor
//!   `.sheaf/tags/` (tags) or `.sheaf/locks/` (removing a lock file another
//!   process holds would let a second writer take the "same" lock).
//! - **A grace period** ([`GcOptions::older_than`], by last-modified time):
//!   a leftover younger than it may belong to a write that is still running,
//!   and is kept.
//! - **Never anything a manifest references.** Every manifest in
//!   `.quilt/packages/` (every revision of every package, pointed to or not) is
//!   read first, and every path it can lead a reader to is protected: the blob
//!   named by each `sha2-256-chunked` hash (Sheaf reads a registry's own copy
//!   of an entry by its hash) and the `.sheaf/...` part of each physical key,
//!   whatever location it names (a copied registry reads keys of the original
//!   from itself). If any manifest cannot be listed, read or parsed as JSON
//!   lines, gc stops before removing anything.
//!
//! What is garbage:
//!
//! - [`GarbageKind::PartialUpload`]: `<name>#<digits>` files anywhere under
//!   `.sheaf/` (in practice `.sheaf/blobs/<hex>#N`). object_store's local-disk
//!   store writes a put or a multipart upload to `<target>#N` and renames it
//!   into place when it completes, so a killed push leaves `#N` files behind;
//!   that store hides them from listings and refuses to open them, so no
//!   reader ever uses one. (A blob or tag name never contains `#`.)
//! - [`GarbageKind::Staging`]: files under `.sheaf/tmp/`, where Sheaf stages
//!   manifests, pointers and tags on local disk before linking or renaming
//!   them into place (`Registry::put_small`).
//! - [`GarbageKind::ExpiredSession`]: the files of a write session
//!   (`.sheaf/sessions/<id>/`: its record, staged parts, outcome) once it
//!   has expired, or when its record is gone (an abort that stopped half
//!   way). A session's record holding a broken expiry counts as expired.
//! - [`GarbageKind::Unreferenced`] (opt-in, [`GcOptions::unreferenced`]):
//!   blobs `.sheaf/blobs/<64 hex>` that no manifest references, such as those
//!   of a push killed before it wrote its manifest. This is opt-in because it
//!   is only safe while nothing writes to the registry: a push decides which
//!   blobs it needs to upload before it writes the manifest that references
//!   them, so it may be about to reference an old unreferenced blob, and a push
//!   that runs longer than the grace period has blobs its manifest does not
//!   name yet. Manifests of other registries that point at this registry's
//!   blobs are not seen either. Just before removing, gc lists the manifests
//!   again and keeps whatever a manifest written meanwhile references; that
//!   narrows the window, it does not close it.
//!
//! Listing and removing work on every store. On local disk they walk the
//! folder directly (object_store's local store cannot list or delete `#N`
//! files, and its listing follows symbolic links): links are never followed
//! nor removed, and each removal opens every folder on the way with
//! `O_NOFOLLOW` and checks again that the file is a regular file last
//! modified before the grace period, so a link or a write that appeared since
//! the listing cannot redirect or hurt it. Elsewhere (S3 and other object
//! stores) they are object-store listings and deletes. Killed multipart
//! uploads to S3 leave no object at all but an incomplete upload that no
//! listing shows; a bucket lifecycle rule (`AbortIncompleteMultipartUpload`)
//! removes those.
//!
//! A file that cannot be removed is reported with its error and the others are
//! still processed ([`GcReport::failed_files`]).

use super::session::SESSIONS;
use super::{BLOBS, Error, IO_CONCURRENCY, LOCKS, MANIFESTS, Registry, Result, TMP};
use crate::manifest::hash::EntryHash;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path as FsPath;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The folder of everything Sheaf adds to a registry.
const SHEAF_DIR: &str = ".sheaf";

/// What `gc` does.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// The grace period: only files last modified at least this long ago are
    /// garbage (default 1 hour).
    pub older_than: Duration,
    /// Also blobs no manifest references (see the module documentation for
    /// why this is opt-in).
    pub unreferenced: bool,
    /// Remove the garbage; without it, only report it (a dry run).
    pub delete: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { older_than: Duration::from_secs(3600), unreferenced: false, delete: false }
    }
}

/// Why a file is garbage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GarbageKind {
    /// `<name>#<digits>`: a local-disk upload that never completed.
    PartialUpload,
    /// A file under `.sheaf/tmp/`: a staged manifest, pointer or tag write
    /// that never completed.
    Staging,
    /// A blob in `.sheaf/blobs/` that no manifest references.
    Unreferenced,
    /// A file of a write session that expired (or whose record is gone: an
    /// abort that did not finish).
    ExpiredSession,
}

impl GarbageKind {
    /// One line saying why such a file is garbage.
    pub fn explain(self) -> &'static str {
        match self {
            GarbageKind::PartialUpload => {
                "partial upload: an upload's staging file (<target>#N) never renamed into place"
            }
            GarbageKind::Staging => "staging file of a manifest, pointer or tag write that never completed",
            GarbageKind::Unreferenced => "blob that no manifest of the registry references",
            GarbageKind::ExpiredSession => "file of a write session that expired or was aborted",
        }
    }
}

/// What gc did (or, in a dry run, would do) with a leftover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A dry run: it would be removed.
    WouldRemove,
    /// It was removed (or was already gone).
    Removed,
    /// Removing it failed; `detail` says why.
    Failed,
    /// It is kept; `detail` says why (younger than the grace period,
    /// referenced by a manifest, not a regular file, changed meanwhile).
    Kept,
}

/// One file gc considered.
#[derive(Debug, Clone, Serialize)]
pub struct Leftover {
    /// The path relative to the registry root, for example
    /// `.sheaf/blobs/<hex>#1`.
    pub path: String,
    /// What kind of garbage it is.
    pub kind: GarbageKind,
    /// Why that kind is garbage, in words.
    pub why: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Seconds since it was last modified (0 if unknown).
    pub age_secs: u64,
    /// What happened to it.
    pub action: Action,
    /// For [`Action::Kept`], why it was kept; for [`Action::Failed`], the error
    /// (naming the path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The outcome of a gc run.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// The registry's URL.
    pub registry: String,
    /// Nothing was removed: the run only reported.
    pub dry_run: bool,
    /// The grace period, in seconds.
    pub older_than_secs: u64,
    /// Whether unreferenced blobs were considered.
    pub unreferenced: bool,
    /// Manifests read to find what is referenced.
    pub manifests: usize,
    /// Every leftover found (garbage and kept), sorted by path.
    pub leftovers: Vec<Leftover>,
    /// Files that are garbage: removed, to be removed, or failed.
    pub garbage_files: usize,
    /// Their bytes.
    pub garbage_bytes: u64,
    /// Files removed.
    pub removed_files: usize,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// Files that could not be removed.
    pub failed_files: usize,
    /// Leftovers kept (younger than the grace period, referenced, ...).
    pub kept_files: usize,
}

impl GcReport {
    /// Whether every removal asked for succeeded.
    pub fn ok(&self) -> bool {
        self.failed_files == 0
    }
}

/// A file found under `.sheaf/`.
struct Found {
    /// Registry-relative, `/`-separated.
    rel: String,
    /// The store path (object stores only).
    store_path: Option<Path>,
    size: u64,
    modified: Option<SystemTime>,
    /// A regular file (always true on object stores).
    regular: bool,
}

/// How a file under `.sheaf/` is classified, or `None` if gc never touches it.
fn classify(rel: &str, unreferenced: bool, dead_sessions: &HashSet<String>) -> Option<GarbageKind> {
    let locks = format!("{LOCKS}/");
    if !rel.starts_with(&format!("{SHEAF_DIR}/")) || rel.starts_with(&locks) {
        return None;
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if let Some((_, suffix)) = name.rsplit_once('#')
        && !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_digit())
    {
        return Some(GarbageKind::PartialUpload);
    }
    if rel.starts_with(&format!("{TMP}/")) {
        return Some(GarbageKind::Staging);
    }
    if let Some(id) = session_of(rel)
        && dead_sessions.contains(id)
    {
        return Some(GarbageKind::ExpiredSession);
    }
    if unreferenced
        && let Some(hex) = rel.strip_prefix(&format!("{BLOBS}/"))
        && is_blob_name(hex)
    {
        return Some(GarbageKind::Unreferenced);
    }
    None
}

/// The write session a file belongs to (`.sheaf/sessions/<id>/...`).
fn session_of(rel: &str) -> Option<&str> {
    rel.strip_prefix(&format!("{SESSIONS}/"))?.split_once('/').map(|(id, _)| id)
}

/// A blob's name: 64 lowercase hex digits (a `sha2-256-chunked` digest).
fn is_blob_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Adds to `into` every registry-relative `.sheaf/...` path that a physical
/// key can lead a reader to: the rest of the key's path from each `.sheaf`
/// segment on, whatever location the key names (a copy of a registry reads
/// keys naming the original's blobs from itself). Keys that are not URLs are
/// taken as plain paths.
fn sheaf_paths_of_key(key: &str, into: &mut HashSet<String>) {
    let segments: Vec<String> = match url::Url::parse(key) {
        Ok(url) => url
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect(),
        Err(_) => key.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    };
    for (i, segment) in segments.iter().enumerate() {
        if segment == SHEAF_DIR {
            into.insert(segments[i..].join("/"));
        }
    }
}

/// Adds to `into` every `.sheaf/...` path line `line_no` of the manifest
/// `name` references: the blob of a `sha2-256-chunked` hash and the `.sheaf/`
/// part of each physical key. Deliberately lenient about everything else (any
/// JSON object is accepted), but a line that is not a JSON object, or physical
/// keys that are not strings, fail: what such a manifest references cannot be
/// known.
fn line_references(name: &str, line_no: usize, raw: &[u8], into: &mut HashSet<String>) -> Result<()> {
    let bad = |message: String| Error::Manifest {
        top_hash: format!("{name} (gc removes nothing while a manifest cannot be read)"),
        source: crate::manifest::Error::Parse { line: line_no, message },
    };
    let line = std::str::from_utf8(raw).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    if line.trim().is_empty() {
        return Ok(());
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line) else {
        return Err(bad("not a JSON object".into()));
    };
    if let Some(hash) = obj.get("hash")
        && let Ok(h) = serde_json::from_value::<EntryHash>(hash.clone())
        && let Some(hex) = h.blob_hex()
    {
        into.insert(format!("{BLOBS}/{hex}"));
    }
    match obj.get("physical_keys") {
        None | Some(Value::Null) => {}
        Some(Value::String(key)) => sheaf_paths_of_key(key, into),
        Some(Value::Array(keys)) => {
            for key in keys {
                let Value::String(key) = key else {
                    return Err(bad("physical_keys holds something other than strings".into()));
                };
                sheaf_paths_of_key(key, into);
            }
        }
        Some(_) => return Err(bad("physical_keys is not a list of strings".into())),
    }
    Ok(())
}

/// [`line_references`] over a whole manifest held in memory.
#[cfg(test)]
fn references_of(name: &str, bytes: &[u8], into: &mut HashSet<String>) -> Result<()> {
    bytes.split(|&b| b == b'\n').enumerate().try_for_each(|(i, raw)| line_references(name, i + 1, raw, into))
}

fn system_time(t: chrono::DateTime<chrono::Utc>) -> SystemTime {
    let secs = t.timestamp();
    if secs < 0 {
        return UNIX_EPOCH;
    }
    UNIX_EPOCH + Duration::new(secs as u64, t.timestamp_subsec_nanos().min(999_999_999))
}

/// Walks `root/.sheaf` without following symbolic links, skipping
/// `.sheaf/locks`. Non-UTF-8 names are not Sheaf's and are skipped; a file
/// that vanishes during the walk is skipped.
fn walk_local(root: &FsPath) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    let mut pending = vec![(root.join(SHEAF_DIR), SHEAF_DIR.to_owned())];
    while let Some((dir, rel)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(dir.display().to_string(), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir.display().to_string(), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let child = format!("{rel}/{name}");
            if child == LOCKS {
                continue;
            }
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(entry.path().display().to_string(), e)),
            };
            if meta.is_dir() {
                pending.push((entry.path(), child));
                continue;
            }
            out.push(Found {
                rel: child,
                store_path: None,
                size: meta.len(),
                modified: meta.modified().ok(),
                regular: meta.is_file(),
            });
        }
    }
    Ok(out)
}

/// Removes `root/rel` if it is still a regular file last modified no later
/// than `cutoff`. Every folder on the way is opened with `O_NOFOLLOW` from the
/// root (`openat`), so a symbolic link swapped in since the listing makes the
/// removal fail instead of leading it outside the registry. `Ok(false)`: the
/// file changed since it was listed and was left alone.
fn unlink_local(root: &FsPath, rel: &str, cutoff: SystemTime) -> std::io::Result<bool> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| std::io::Error::other("a NUL byte in the path"));
    let root_c = cstr(root.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
    let fd = unsafe { libc::open(root_c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let mut dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let parts: Vec<&str> = rel.split('/').collect();
    let (name, folders) = parts.split_last().expect("split yields at least one part");
    for part in parts.iter() {
        if part.is_empty() || *part == "." || *part == ".." {
            return Err(std::io::Error::other("an empty, . or .. segment"));
        }
    }
    for folder in folders {
        let c = cstr(folder.as_bytes())?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `dir` is an open directory; `c` is NUL-terminated.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        dir = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    let c = cstr(name.as_bytes())?;
    // SAFETY: a zeroed `stat` is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open, `c` NUL-terminated, `st` writable.
    if unsafe { libc::fstatat(dir.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(false);
    }
    let mtime = if st.st_mtime < 0 {
        UNIX_EPOCH
    } else {
        UNIX_EPOCH + Duration::new(st.st_mtime as u64, (st.st_mtime_nsec as u32).min(999_999_999))
    };
    if mtime > cutoff {
        return Ok(false);
    }
    // SAFETY: as above.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

impl Registry {
    /// Finds (and with [`GcOptions::delete`] removes) garbage in the
    /// registry's `.sheaf/` area; see the [module documentation](self) for
    /// what counts and what is never touched. Fails, removing nothing, when
    /// the registry cannot be listed or a manifest cannot be read; a file
    /// that cannot be removed is reported in [`GcReport::leftovers`] and the
    /// others are still removed.
    pub async fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let (seen, mut protected) = self.gc_references(&HashSet::new()).await?;
        let found = self.gc_list().await?;
        let dead_sessions = self.gc_dead_sessions(&found).await?;
        let now = SystemTime::now();
        let cutoff = now.checked_sub(opts.older_than).unwrap_or(UNIX_EPOCH);
        let grace = humantime::format_duration(opts.older_than).to_string();

        let mut leftovers: Vec<(Leftover, Option<Path>)> = Vec::new();
        for f in found {
            let Some(kind) = classify(&f.rel, opts.unreferenced, &dead_sessions) else { continue };
            if kind == GarbageKind::Unreferenced && protected.contains(&f.rel) {
                continue; // a blob in use, not a leftover
            }
            let age = f.modified.and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
            let kept = if !f.regular {
                Some("not a regular file (symbolic links are never followed nor removed)".to_owned())
            } else if protected.contains(&f.rel) {
                Some("referenced by a manifest".to_owned())
            } else if f.modified.is_none_or(|m| m > cutoff) {
                Some(format!("younger than {grace}: a write may still be using it"))
            } else {
                None
            };
            let leftover = Leftover {
                path: f.rel,
                kind,
                why: kind.explain(),
                size: f.size,
                age_secs: age.as_secs(),
                action: if kept.is_some() { Action::Kept } else { Action::WouldRemove },
                detail: kept,
            };
            leftovers.push((leftover, f.store_path));
        }

        // Manifests written since the first read (by a push that was running)
        // may reference blobs that looked unreferenced a moment ago.
        let doomed_blob = |l: &Leftover| l.action == Action::WouldRemove && l.kind == GarbageKind::Unreferenced;
        let mut manifests = seen.len();
        if opts.delete && leftovers.iter().any(|(l, _)| doomed_blob(l)) {
            let (newer, more) = self.gc_references(&seen).await?;
            manifests += newer.len();
            protected.extend(more);
            for (l, _) in leftovers.iter_mut().filter(|(l, _)| doomed_blob(l)) {
                if protected.contains(&l.path) {
                    l.action = Action::Kept;
                    l.detail = Some("referenced by a manifest written while gc ran".into());
                }
            }
        }

        if opts.delete {
            self.gc_remove(&mut leftovers, cutoff).await;
        }

        let mut leftovers: Vec<Leftover> = leftovers.into_iter().map(|(l, _)| l).collect();
        leftovers.sort_by(|a, b| a.path.cmp(&b.path));
        let garbage = leftovers.iter().filter(|l| l.action != Action::Kept);
        let removed = leftovers.iter().filter(|l| l.action == Action::Removed);
        Ok(GcReport {
            registry: self.url().to_string(),
            dry_run: !opts.delete,
            older_than_secs: opts.older_than.as_secs(),
            unreferenced: opts.unreferenced,
            manifests,
            garbage_files: garbage.clone().count(),
            garbage_bytes: garbage.map(|l| l.size).sum(),
            removed_files: removed.clone().count(),
            removed_bytes: removed.map(|l| l.size).sum(),
            failed_files: leftovers.iter().filter(|l| l.action == Action::Failed).count(),
            kept_files: leftovers.iter().filter(|l| l.action == Action::Kept).count(),
            leftovers,
        })
    }

    /// Removes the leftovers marked [`Action::WouldRemove`], recording each
    /// outcome: removed, kept (changed since it was listed), or failed.
    async fn gc_remove(&self, leftovers: &mut [(Leftover, Option<Path>)], cutoff: SystemTime) {
        let root = self.location.local_root.clone();
        let url = self.url().to_string();
        let results: Vec<(usize, Result<bool, String>)> = stream::iter(leftovers.iter().enumerate())
            .filter(|(_, (l, _))| futures::future::ready(l.action == Action::WouldRemove))
            .map(|(i, (l, store_path))| {
                let (root, rel, store_path, url) = (root.clone(), l.path.clone(), store_path.clone(), url.clone());
                async move {
                    let outcome = match (root, store_path) {
                        (Some(root), _) => tokio::task::spawn_blocking(move || {
                            unlink_local(&root, &rel, cutoff).or_else(|e| match e.kind() {
                                std::io::ErrorKind::NotFound => Ok(true),
                                _ => Err(format!("removing {}: {e}", root.join(&rel).display())),
                            })
                        })
                        .await
                        .unwrap_or_else(|e| Err(format!("removal task failed: {e}"))),
                        (None, Some(path)) => match self.store().delete(&path).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                            Err(e) => Err(format!("removing {path} from {url}: {e}")),
                        },
                        (None, None) => Err(format!("removing {rel}: no store path")),
                    };
                    (i, outcome)
                }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .collect()
            .await;
        for (i, outcome) in results {
            let l = &mut leftovers[i].0;
            match outcome {
                Ok(true) => l.action = Action::Removed,
                Ok(false) => {
                    l.action = Action::Kept;
                    l.detail = Some("changed since it was listed (a write is using it)".into());
                }
                Err(message) => {
                    l.action = Action::Failed;
                    l.detail = Some(message);
                }
            }
        }
    }

    /// Reads every manifest in `.quilt/packages/` not in `skip`; returns the
    /// names read and every `.sheaf/` path they reference.
    async fn gc_references(&self, skip: &HashSet<String>) -> Result<(HashSet<String>, HashSet<String>)> {
        let dir = Path::from(MANIFESTS);
        let listing: Vec<Path> = self
            .store()
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| Error::storage(format!("listing manifests in {}", self.url()), e))?;
        let todo: Vec<Path> =
            listing.into_iter().filter(|p| !skip.contains(p.filename().unwrap_or_default())).collect();
        let names: HashSet<String> = todo.iter().map(|p| p.filename().unwrap_or_default().to_owned()).collect();
        // Each manifest is streamed line by line: one may be hundreds of MB.
        let found: Vec<HashSet<String>> = stream::iter(todo)
            .map(|path| async move {
                let name = path.filename().unwrap_or_default().to_owned();
                let what =
                    format!("manifest {path} in {} (gc removes nothing while a manifest cannot be read)", self.url());
                let result = self.store().get(&path).await.map_err(|e| Error::storage(what.clone(), e))?;
                let mut body = super::body_stream(result);
                let (mut pending, mut line_no, mut refs) = (Vec::new(), 0, HashSet::new());
                while let Some(chunk) = body.try_next().await.map_err(|e| Error::storage(what.clone(), e))? {
                    let mut rest = &chunk[..];
                    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                        pending.extend_from_slice(&rest[..end]);
                        line_no += 1;
                        line_references(&name, line_no, &pending, &mut refs)?;
                        pending.clear();
                        rest = &rest[end + 1..];
                    }
                    pending.extend_from_slice(rest);
                }
                line_references(&name, line_no + 1, &pending, &mut refs)?;
                Ok::<_, Error>(refs)
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        Ok((names, found.into_iter().flatten().collect()))
    }

    /// Every file under `.sheaf/` (but `.sheaf/locks/`).
    /// The write sessions among `found` that are over: expired, or without
    /// a record (an abort that stopped half way). A record that cannot be
    /// read stops gc before anything is removed.
    async fn gc_dead_sessions(&self, found: &[Found]) -> Result<HashSet<String>> {
        let mut ids: HashSet<&str> = found.iter().filter_map(|f| session_of(&f.rel)).collect();
        let records: Vec<&str> = found
            .iter()
            .filter_map(|f| f.rel.strip_suffix("/session.json").and_then(|d| d.strip_prefix(&format!("{SESSIONS}/"))))
            .filter(|id| !id.contains('/'))
            .collect();
        let now = super::now_secs();
        for id in records {
            let path = Path::from(SESSIONS).join(id).join("session.json");
            let bytes = self.get_bytes(&path, &format!("write session {id}")).await?;
            let expires = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v["expires_at"].as_u64());
            if expires.is_some_and(|t| t > now) {
                ids.remove(id);
            }
        }
        Ok(ids.into_iter().map(str::to_owned).collect())
    }

    async fn gc_list(&self) -> Result<Vec<Found>> {
        if let Some(root) = self.location.local_root.clone() {
            return tokio::task::spawn_blocking(move || walk_local(&root)).await.expect("listing task panicked");
        }
        let prefix = Path::from(SHEAF_DIR);
        self.store()
            .list(Some(&prefix))
            .map_ok(|meta| Found {
                rel: meta.location.to_string(),
                store_path: Some(meta.location.clone()),
                size: meta.size,
                modified: Some(system_time(meta.last_modified)),
                regular: true,
            })
            .try_collect()
            .await
            .map_err(|e| Error::storage(format!("listing {SHEAF_DIR}/ in {}", self.url()), e))
    }
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
