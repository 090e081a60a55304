//! `push`: a local folder becomes a new immutable revision.
//!
//! Order of writes, so that a crash at any moment leaves either the old or the
//! new revision visible and never a manifest pointing at missing data:
//! blobs (content-addressed, each written atomically), then the manifest, then
//! the timestamp pointer, then `latest` by compare-and-swap.

use super::hints::Hints;
use super::local_blobs::BlobDirs;
use super::quiltignore::QuiltIgnore;
use super::staged::Staged;
use super::{Error, IO_CONCURRENCY, PackageName, Registry, Result};
use crate::manifest::hash::{self, EntryHash, StreamHasher};
use crate::manifest::writer::{self, ManifestWriter, WriteError};
use crate::manifest::{Entry, key};
use crate::progress::{NoProgress, Progress};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path as FsPath, PathBuf};
use tokio::io::AsyncReadExt;

/// Files at most this large are uploaded in one put; larger ones in parts.
pub(super) const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3 needs at least 5 MiB).
pub(super) const PART_SIZE: usize = 16 * 1024 * 1024;

/// What to record with a pushed revision.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Commit message (`null` in the manifest when `None`, as quilt3 writes).
    pub message: Option<String>,
    /// Package-level metadata (the header's `user_meta`).
    pub user_meta: Option<Map<String, Value>>,
    /// The same metadata with its numbers as written, when it holds numbers
    /// `user_meta`'s values cannot (integers beyond 64 bits): the header is
    /// then written and hashed from it, as quilt3 would.
    pub exact_user_meta: Option<crate::manifest::json::Exact>,
    /// Profile every Parquet and CSV file ([`crate::profile`]) into its
    /// entry's metadata (`sheaf.profile`). Off, a folder gets the top hash
    /// quilt3 would give it.
    pub profile: bool,
}

/// The outcome of a push.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `owner/name`.
    pub package: String,
    /// The new revision's top hash.
    pub top_hash: String,
    /// Files in the revision.
    pub files: usize,
    /// Bytes in the revision.
    pub bytes: u64,
    /// Blobs uploaded (the rest were already in the registry).
    pub uploaded_files: usize,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Files stored as copy-on-write clones of their source (a local registry
    /// on a file system that shares blocks, such as XFS or Btrfs): no bytes
    /// written for them.
    pub cloned_files: usize,
    /// `latest` already pointed at this exact revision: nothing was written.
    pub unchanged: bool,
    /// Where `latest` pointed before.
    pub previous: Option<String>,
}

impl PushReport {
    /// The report of a push of `files` files (`bytes` bytes) as `top_hash`,
    /// before anything was uploaded.
    fn new(pkg: &PackageName, top_hash: &str, files: usize, bytes: u64) -> Self {
        PushReport {
            package: pkg.to_string(),
            top_hash: top_hash.to_owned(),
            files,
            bytes,
            uploaded_files: 0,
            uploaded_bytes: 0,
            cloned_files: 0,
            unchanged: false,
            previous: None,
        }
    }
}

pub(super) struct LocalFile {
    pub(super) path: PathBuf,
    pub(super) key: String,
    pub(super) size: u64,
}

/// Files stored per round of the walk: each round is spread over every core,
/// then its entries are written to the manifest in walk order, so memory
/// holds one round's files, not the package's.
const ROUND: usize = 2048;

/// One file of a round, stored (or hashed, for a remote registry).
struct Stored {
    file: LocalFile,
    hash: EntryHash,
    /// Its blob was written by this push.
    new: bool,
    /// Entry metadata (a profile, with `--profile`).
    meta: Value,
}

/// What the walk wrote: the manifest (staged, not yet published) and counts.
struct Walked {
    manifest: Staged,
    top_hash: String,
    files: usize,
    bytes: u64,
    stored_files: usize,
    stored_bytes: u64,
    cloned_files: usize,
}

impl Registry {
    /// Pushes the folder `dir` as a new revision of `pkg`.
    ///
    /// The folder is walked in walk order (the manifest's), a round of
    /// files at a time: each round is hashed on every core (on local disk
    /// while it is copied into the registry, see `local_blobs`; elsewhere it
    /// is then uploaded), and its entries are appended to the manifest,
    /// which is staged in a file. Memory follows a round and the largest
    /// folder's listing, not the package's size. Files that the latest
    /// revision holds under the same logical key with the same size are
    /// probably unchanged (`hints`): on local disk those are only hashed, and
    /// copied (read again and checked against that hash) only when their
    /// blob is missing, so re-pushing a folder writes nothing it need not.
    pub async fn push(
        &self,
        pkg: &PackageName,
        dir: &FsPath,
        opts: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        self.refuse_pushing_itself(dir)?;
        // A first walk checks every name and sizes the progress bar before
        // anything is written.
        let root = dir.to_path_buf();
        let total =
            tokio::task::spawn_blocking(move || walk(&root)?.try_fold(0u64, |total, f| f.map(|f| total + f.size)))
                .await
                .expect("walk task panicked")?;
        let latest = self.latest_unless_damaged(pkg).await?;
        let local = self.location.local_root.is_some();
        let hints = match &latest {
            Some(previous) if local => self.hints(previous),
            _ => Hints::none(),
        };
        let staged = self.stage().map_err(|e| Error::io("a staging file for the manifest", e))?;
        let manifest = match &opts.exact_user_meta {
            Some(meta) => {
                ManifestWriter::new_exact(staged, &writer::new_header_exact(opts.message.clone(), meta.clone()))
            }
            None => ManifestWriter::new(staged, writer::new_header(opts.message.clone(), opts.user_meta.clone())),
        }
        .map_err(|e| Error::io("the manifest's staging file", e))?;

        progress.start(if local { "hashing and copying" } else { "hashing and uploading" }, total);
        let (advance_tx, mut advance_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (round_tx, mut round_rx) = tokio::sync::mpsc::channel::<Vec<(LocalFile, EntryHash)>>(1);
        let (registry, root, profile) = (self.clone(), dir.to_path_buf(), opts.profile);
        let work = tokio::task::spawn_blocking(move || {
            let advance = |n: u64| {
                let _ = advance_tx.send(n);
            };
            let rounds = (!local).then_some(round_tx);
            registry.walk_and_store(&root, hints, profile, manifest, rounds, &advance)
        });
        let mut uploaded = (0usize, 0u64);
        loop {
            tokio::select! {
                Some(n) = advance_rx.recv() => progress.advance(n),
                round = round_rx.recv() => match round {
                    Some(round) => {
                        let (files, bytes) = self.upload_missing(round, &NoProgress).await?;
                        uploaded = (uploaded.0 + files, uploaded.1 + bytes);
                    }
                    None => break,
                },
            }
        }
        while let Some(n) = advance_rx.recv().await {
            progress.advance(n);
        }
        let walked = work.await.expect("push task panicked")?;
        progress.finish();
        if local {
            uploaded = (walked.stored_files, walked.stored_bytes);
        }

        let top_hash = walked.top_hash;
        let mut report = PushReport {
            uploaded_files: uploaded.0,
            uploaded_bytes: uploaded.1,
            cloned_files: walked.cloned_files,
            ..PushReport::new(pkg, &top_hash, walked.files, walked.bytes)
        };
        // `latest` is read again: another push may have moved it meanwhile.
        let latest = self.latest_unless_damaged(pkg).await?;
        if latest.as_deref() == Some(top_hash.as_str()) {
            report.unchanged = true;
            report.previous = latest;
            return Ok(report);
        }
        self.publish_manifest(walked.manifest, &top_hash).await?;
        report.previous = self.record_revision(pkg, &top_hash).await?;
        Ok(report)
    }

    /// The walk of [`Registry::push`], on a blocking thread: rounds of files
    /// stored (local disk) or hashed, appended to `manifest`, and for a
    /// remote registry handed to `rounds` to upload.
    fn walk_and_store(
        &self,
        dir: &FsPath,
        mut hints: Hints,
        profile: bool,
        mut manifest: ManifestWriter<Staged>,
        rounds: Option<tokio::sync::mpsc::Sender<Vec<(LocalFile, EntryHash)>>>,
        advance: &(dyn Fn(u64) + Sync),
    ) -> Result<Walked> {
        let dirs = self.location.local_root.as_deref().map(BlobDirs::open).transpose()?;
        let pool = super::io_pool("the push thread pool")?;
        let files = walk(dir)?.map(|f| {
            f.map(|f| {
                let hint = hints.lookup(&f.key);
                (f, hint)
            })
        });
        let (mut count, mut bytes, mut stored_files, mut stored_bytes) = (0, 0, 0, 0);
        super::in_rounds(files, ROUND, |round| {
            let stored: Vec<Stored> = pool.install(|| {
                round
                    .into_par_iter()
                    .map(|(f, hint)| store_one(dirs.as_ref(), f, hint, profile, advance))
                    .collect::<Result<_>>()
            })?;
            for s in &stored {
                let entry = Entry { meta: s.meta.clone(), ..self.blob_entry(&s.file, &s.hash) };
                manifest.entry(&entry).map_err(|e| match e {
                    WriteError::Manifest(source) => {
                        Error::Manifest { top_hash: format!("being built from {}", dir.display()), source }
                    }
                    WriteError::Io(e) => Error::io("the manifest's staging file", e),
                })?;
                count += 1;
                bytes += s.file.size;
                if s.new {
                    stored_files += 1;
                    stored_bytes += s.file.size;
                }
            }
            if let Some(rounds) = &rounds {
                let round = stored.into_iter().map(|s| (s.file, s.hash)).collect();
                if rounds.blocking_send(round).is_err() {
                    // The uploads failed: their error is the push's.
                    return Err(Error::invalid("push stopped"));
                }
            }
            Ok(())
        })?;
        let (manifest, top_hash) = manifest.finish();
        let cloned_files = dirs.as_ref().map_or(0, |d| d.cloned() as usize);
        Ok(Walked { manifest, top_hash, files: count, bytes, stored_files, stored_bytes, cloned_files })
    }

    /// Manifest entries for hashed local files, their physical keys naming
    /// the registry's content-addressed blobs.
    pub(super) fn blob_entries(&self, hashed: &[(LocalFile, EntryHash)]) -> Vec<Entry> {
        hashed.iter().map(|(f, h)| self.blob_entry(f, h)).collect()
    }

    /// The manifest entry of a hashed local file, its physical key naming
    /// the registry's content-addressed blob.
    fn blob_entry(&self, f: &LocalFile, h: &EntryHash) -> Entry {
        Entry {
            logical_key: f.key.clone(),
            physical_keys: vec![self.location.url_of(&Self::blob_path(&h.blob_hex().expect("chunked hash")))],
            size: f.size,
            hash: h.clone(),
            meta: Value::Object(Map::new()),
            extra: Map::new(),
        }
    }

    /// Refuses to push a folder holding this (local) registry: the revision
    /// would record the registry's own files, staging files of this very
    /// push included.
    fn refuse_pushing_itself(&self, dir: &FsPath) -> Result<()> {
        let Some(registry) = &self.location.local_root else { return Ok(()) };
        // The registry's folder may not exist yet (a first push creates it).
        let resolved = |p: &FsPath| p.canonicalize().or_else(|_| std::path::absolute(p));
        let (Ok(registry), Ok(folder)) = (resolved(registry), resolved(dir)) else { return Ok(()) };
        if registry.starts_with(&folder) {
            return Err(Error::Invalid(format!(
                "the registry {} is inside the folder {} being pushed; push a folder that does not hold it",
                registry.display(),
                dir.display()
            )));
        }
        Ok(())
    }

    /// Uploads the blobs the registry does not hold yet (one upload per
    /// distinct content). Returns how many files and bytes were uploaded.
    pub(super) async fn upload_missing(
        &self,
        hashed: Vec<(LocalFile, EntryHash)>,
        progress: &dyn Progress,
    ) -> Result<(usize, u64)> {
        let mut blobs: Vec<(LocalFile, EntryHash)> = hashed;
        blobs.sort_by(|a, b| a.1.value.cmp(&b.1.value));
        blobs.dedup_by(|a, b| a.1 == b.1);
        let missing: Vec<(LocalFile, EntryHash)> = stream::iter(blobs)
            .map(|(f, h)| async move {
                let path = Self::blob_path(&h.blob_hex().expect("chunked hash"));
                match self.store().head(&path).await {
                    // A blob of another size is damaged: uploaded again.
                    Ok(meta) if meta.size == f.size => Ok(None),
                    Ok(_) => Ok(Some((f, h))),
                    Err(object_store::Error::NotFound { .. }) => Ok(Some((f, h))),
                    Err(e) => Err(Error::storage(format!("checking blob of {} in {}", f.key, self.url()), e)),
                }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        let counts = (missing.len(), missing.iter().map(|(f, _)| f.size).sum());
        progress.start("uploading", counts.1);
        stream::iter(missing)
            .map(|(f, h)| async move { self.upload_blob(&f, &h, progress).await })
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await?;
        progress.finish();
        Ok(counts)
    }

    /// Uploads one file as a blob, re-hashing what is sent so that a file
    /// changed since it was hashed is never stored under the old hash.
    async fn upload_blob(&self, file: &LocalFile, expected: &EntryHash, progress: &dyn Progress) -> Result<()> {
        let path = Self::blob_path(&expected.blob_hex().expect("chunked hash"));
        self.upload_file(file, expected, &path, progress).await
    }

    /// Uploads a local `file` whose hash is `expected` to `path` (verifying
    /// the bytes as they are read: a file changed meanwhile is refused).
    pub(super) async fn upload_file(
        &self,
        file: &LocalFile,
        expected: &EntryHash,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<()> {
        let io_err = |e| Error::io(file.path.display().to_string(), e);
        let changed = |actual: String| Error::Integrity {
            what: format!("{} changed while it was being uploaded", file.path.display()),
            expected: expected.value.clone(),
            actual,
        };
        let context = || format!("uploading {} to {}", file.key, self.url());
        if file.size <= SINGLE_PUT_MAX {
            let data = tokio::fs::read(&file.path).await.map_err(io_err)?;
            let mut hasher = StreamHasher::chunked(file.size);
            hasher.update(&data);
            match hasher.finish() {
                Ok(h) if h == *expected => {}
                Ok(h) => return Err(changed(h.value)),
                Err(size) => return Err(changed(format!("{size} bytes instead of {}", file.size))),
            }
            self.store().put(path, PutPayload::from(data)).await.map_err(|e| Error::storage(context(), e))?;
            progress.advance(file.size);
            return Ok(());
        }
        let upload = self.store().put_multipart(path).await.map_err(|e| Error::storage(context(), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut hasher = StreamHasher::chunked(file.size);
        let mut reader = tokio::fs::File::open(&file.path).await.map_err(io_err)?;
        let mut buf = vec![0u8; 1024 * 1024];
        let result: Result<()> = async {
            loop {
                let n = reader.read(&mut buf).await.map_err(io_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                writer.wait_for_capacity(4).await.map_err(|e| Error::storage(context(), e))?;
                writer.write(&buf[..n]);
                progress.advance(n as u64);
            }
            Ok(())
        }
        .await;
        let verdict = result.and_then(|()| match hasher.finish() {
            Ok(h) if h == *expected => Ok(()),
            Ok(h) => Err(changed(h.value)),
            Err(size) => Err(changed(format!("{size} bytes instead of {}", file.size))),
        });
        match verdict {
            Ok(()) => writer.finish().await.map(|_| ()).map_err(|e| Error::storage(context(), e)),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }
}

/// Stores one file of a round: on local disk copied into the registry
/// while it is hashed (or only hashed when `hint` says the registry probably
/// holds it), elsewhere hashed; profiled when asked.
fn store_one(
    dirs: Option<&BlobDirs>,
    f: LocalFile,
    hint: Option<(u64, EntryHash)>,
    profile: bool,
    advance: &(dyn Fn(u64) + Sync),
) -> Result<Stored> {
    let meta = match profile && crate::profile::is_profiled(&f.path) {
        true => match crate::profile::profile_file(&f.path) {
            Ok(Some(p)) => serde_json::json!({ "sheaf": { "profile": p.to_json() } }),
            Ok(None) => Value::Object(Map::new()),
            // A table that cannot be read is still data: pushed, without a profile.
            Err(e) => {
                tracing::warn!(error = %e, path = %f.path.display(), "no profile");
                Value::Object(Map::new())
            }
        },
        false => Value::Object(Map::new()),
    };
    let Some(dirs) = dirs else {
        let h = hash_checked(&f)?;
        advance(f.size);
        return Ok(Stored { file: f, hash: h, new: false, meta });
    };
    if hint.is_some_and(|(size, _)| size == f.size) {
        let h = hash_checked(&f)?;
        if dirs.has(&h.blob_hex().expect("chunked hash"), f.size)? {
            advance(f.size);
            return Ok(Stored { file: f, hash: h, new: false, meta });
        }
        // Its bytes were counted while hashing.
        let stored = dirs.store(&f.path, f.size, Some(&h), &|_| {})?;
        return Ok(Stored { file: f, hash: stored.hash, new: stored.new, meta });
    }
    let stored = dirs.store(&f.path, f.size, None, advance)?;
    Ok(Stored { file: f, hash: stored.hash, new: stored.new, meta })
}

/// Hashes `f` with `sha2-256-chunked`, refusing a file whose size changed
/// since it was listed.
fn hash_checked(f: &LocalFile) -> Result<EntryHash> {
    let (size, h) = hash::hash_file_chunked(&f.path).map_err(|e| Error::io(f.path.display().to_string(), e))?;
    if size != f.size {
        return Err(Error::invalid(format!("{} changed size while it was being hashed", f.path.display())));
    }
    Ok(h)
}

/// The files under `root` to push, with their logical keys, in walk order
/// (each folder's names sorted by code point, a folder's files where its name
/// sorts: the manifest's order), as quilt3's `set_dir` takes them: what the
/// folder's `.quiltignore` names is left out, a symbolic link to a file is
/// the file, links to folders and links to nothing are skipped. Names that
/// cannot be keys are refused. Holds one listing per open folder.
fn walk(root: &FsPath) -> Result<impl Iterator<Item = Result<LocalFile>> + use<>> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root.display().to_string(), e))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!("{} is not a directory", root.display())));
    }
    let ignore = QuiltIgnore::load(root)?;
    let root = root.to_path_buf();
    Ok(regular_files(&root, FolderLinks::Skip, ignore).map(move |item| local_file(&root, item?)))
}

/// What a walk does with a symbolic link to a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FolderLinks {
    /// Walks the folder it points to.
    Follow,
    /// Skips it, as quilt3 does.
    Skip,
}

/// The regular files under `root` and the symbolic links to regular files,
/// in walk order (each folder's names sorted by code point, a folder's files
/// where its name sorts), leaving out what `ignore` names; links to nothing
/// are skipped. An error names the path that could not be read.
pub(super) fn regular_files(
    root: &FsPath,
    links: FolderLinks,
    ignore: Option<QuiltIgnore>,
) -> impl Iterator<Item = Result<walkdir::DirEntry>> + use<> {
    let root = root.to_path_buf();
    let ignore = ignore.map(std::sync::Arc::new);
    let (folders, files) = (ignore.clone(), ignore);
    let under = root.clone();
    walkdir::WalkDir::new(&root)
        .follow_links(links == FolderLinks::Follow)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(move |e| {
            let ignored = || folders.as_ref().is_some_and(|i| i.ignores_folder(&relative_key(&under, e.path())));
            !(e.depth() > 0 && e.file_type().is_dir() && ignored())
        })
        .filter_map(move |item| match item {
            Ok(item) => {
                let file = item.file_type().is_file()
                    || (item.path_is_symlink() && std::fs::metadata(item.path()).is_ok_and(|m| m.is_file()));
                let ignored = || files.as_ref().is_some_and(|i| i.ignores_file(&relative_key(&root, item.path())));
                (file && !ignored()).then_some(Ok(item))
            }
            Err(e) if e.loop_ancestor().is_none() && e.path().is_some_and(links_to_nothing) => None,
            Err(e) => {
                let path = e.path().map(|p| p.display().to_string()).unwrap_or_else(|| root.display().to_string());
                Some(Err(Error::io(path, e.into())))
            }
        })
}

/// Whether `path` is a symbolic link whose target does not exist.
fn links_to_nothing(path: &FsPath) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) && std::fs::metadata(path).is_err()
}

/// `path` under `root` with `/` between its components (lossy: only for
/// matching; keys are checked to be UTF-8 where they are made).
fn relative_key(root: &FsPath, path: &FsPath) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The walked file `item` as a file to push.
fn local_file(root: &FsPath, item: walkdir::DirEntry) -> Result<LocalFile> {
    let rel = item.path().strip_prefix(root).expect("walkdir stays under root");
    let key = rel
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::invalid(format!("{}: file names must be UTF-8", item.path().display())))?
        .join("/");
    key::validate(&key)
        .map_err(|why| Error::invalid(format!("{}: cannot be a logical key: {why}", item.path().display())))?;
    // A link's size is its target's.
    let size = std::fs::metadata(item.path()).map_err(|e| Error::io(item.path().display().to_string(), e))?.len();
    Ok(LocalFile { path: item.path().to_path_buf(), key, size })
}

/// Hashes every file with `sha2-256-chunked` on all cores.
pub(super) async fn hash_all(files: Vec<LocalFile>, progress: &dyn Progress) -> Result<Vec<(LocalFile, EntryHash)>> {
    // rayon runs on its own threads; progress is reported through a channel
    // so the caller's `&dyn Progress` never crosses into them.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let work = tokio::task::spawn_blocking(move || {
        files
            .into_par_iter()
            .map(|f| {
                let h = hash_checked(&f)?;
                let _ = tx.send(f.size);
                Ok((f, h))
            })
            .collect::<Result<Vec<_>>>()
    });
    while let Some(n) = rx.recv().await {
        progress.advance(n);
    }
    work.await.expect("hashing task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn names(dir: &FsPath) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(dir) {
            Ok(d) => d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
            Err(_) => vec![],
        };
        v.sort();
        v
    }

    #[tokio::test]
    async fn local_push_stores_identical_content_once_and_repush_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (src, root) = (dir.path().join("src"), dir.path().join("reg"));
        std::fs::create_dir_all(src.join("sub")).unwrap();
        let big: Vec<u8> = (0..(9 * 1024 * 1024)).map(|i| (i % 253) as u8).collect();
        std::fs::write(src.join("a.txt"), b"same").unwrap();
        std::fs::write(src.join("sub/b.txt"), b"same").unwrap();
        std::fs::write(src.join("big.bin"), &big).unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let reg = Registry::open(root.to_str().unwrap()).unwrap();
        let pkg: PackageName = "o/p".parse().unwrap();
        let opts = PushOptions::default();

        let first = reg.push(&pkg, &src, &opts, &NoProgress).await.unwrap();
        assert_eq!((first.files, first.uploaded_files), (4, 3), "{first:?}");
        assert_eq!(first.uploaded_bytes, 4 + big.len() as u64);
        assert_eq!(names(&root.join(super::super::BLOBS)).len(), 3);
        assert!(names(&root.join(super::super::TMP)).is_empty());
        // Every entry reads back verified, through the registry's own blobs.
        let m = reg.read_manifest(&first.top_hash).await.unwrap();
        for e in m.entries() {
            let body: Vec<bytes::Bytes> = reg.open_entry_verified(e).await.unwrap().try_collect().await.unwrap();
            assert_eq!(body.concat(), std::fs::read(src.join(&e.logical_key)).unwrap(), "{}", e.logical_key);
        }

        let again = reg.push(&pkg, &src, &opts, &NoProgress).await.unwrap();
        assert!(again.unchanged && again.uploaded_files == 0, "{again:?}");

        // Same key and size, other bytes: the hint is wrong, the data is stored.
        let mut changed = big.clone();
        changed[5] ^= 1;
        std::fs::write(src.join("big.bin"), &changed).unwrap();
        let third = reg.push(&pkg, &src, &opts, &NoProgress).await.unwrap();
        assert!(!third.unchanged && third.uploaded_files == 1, "{third:?}");
        let m = reg.read_manifest(&third.top_hash).await.unwrap();
        let e = m.entries().find(|e| e.logical_key == "big.bin").unwrap();
        let body: Vec<bytes::Bytes> = reg.open_entry_verified(e).await.unwrap().try_collect().await.unwrap();
        assert_eq!(body.concat(), changed);
        assert_eq!(names(&root.join(super::super::BLOBS)).len(), 4);
        assert!(names(&root.join(super::super::TMP)).is_empty());
    }
}
