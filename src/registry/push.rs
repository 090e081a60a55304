//! `push`: a local folder becomes a new immutable revision.
//!
//! Order of writes, so that a crash at any moment leaves either the old or the
//! new revision visible and never a manifest pointing at missing data:
//! blobs (content-addressed, each written atomically), then the manifest, then
//! the timestamp pointer, then `latest` by compare-and-swap.

use super::local_blobs::BlobDirs;
use super::{Error, IO_CONCURRENCY, PackageName, Registry, Result};
use crate::manifest::hash::{self, EntryHash, StreamHasher};
use crate::manifest::{Entry, Manifest, key};
use crate::progress::Progress;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use tokio::io::AsyncReadExt;

/// Files at most this large are uploaded in one put; larger ones in parts.
const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3 needs at least 5 MiB).
const PART_SIZE: usize = 16 * 1024 * 1024;

/// What to record with a pushed revision.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Commit message (`null` in the manifest when `None`, as quilt3 writes).
    pub message: Option<String>,
    /// Package-level metadata (the header's `user_meta`).
    pub user_meta: Option<Map<String, Value>>,
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

impl Registry {
    /// Pushes the folder `dir` as a new revision of `pkg`.
    pub async fn push(
        &self,
        pkg: &PackageName,
        dir: &FsPath,
        opts: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        let root = dir.to_path_buf();
        let files = tokio::task::spawn_blocking(move || scan(&root)).await.expect("scan task panicked")?;
        let total: u64 = files.iter().map(|f| f.size).sum();

        if let Some(root) = self.location.local_root.clone() {
            return self.push_local(pkg, dir, &root, files, total, opts, progress).await;
        }

        progress.start("hashing", total);
        let hashed = hash_all(files, progress).await?;
        progress.finish();

        let (manifest, top_hash) = self.manifest_of(dir, opts, &hashed).await?;
        let mut report = PushReport::new(pkg, &top_hash, hashed.len(), total);
        let latest = self.read_pointer(&Self::latest_path(pkg)).await?;
        if latest.as_deref() == Some(top_hash.as_str()) {
            report.unchanged = true;
            report.previous = latest;
            return Ok(report);
        }

        let (files, bytes) = self.upload_missing(hashed, progress).await?;
        report.uploaded_files = files;
        report.uploaded_bytes = bytes;

        self.write_manifest(manifest, &top_hash).await?;
        report.previous = self.record_revision(pkg, &top_hash).await?;
        Ok(report)
    }

    /// `push` to a registry on local disk: every file is read once, hashed
    /// while it is written into the registry (see `local_blobs`), on all
    /// cores. Files that the latest revision holds under the same logical key
    /// with the same size are probably unchanged: those are only hashed, and
    /// copied (read again and checked against that hash) only when their blob
    /// is missing, so re-pushing a folder writes nothing it need not. One
    /// function (about 90 lines) on purpose: its steps share the walk's
    /// state and read in the order they run.
    #[allow(clippy::too_many_arguments)]
    async fn push_local(
        &self,
        pkg: &PackageName,
        dir: &FsPath,
        root: &FsPath,
        files: Vec<LocalFile>,
        total: u64,
        opts: &PushOptions,
        progress: &dyn Progress,
    ) -> Result<PushReport> {
        let latest = self.read_pointer(&Self::latest_path(pkg)).await?;
        let mut known: HashMap<String, (u64, EntryHash)> = HashMap::new();
        if let Some(previous) = &latest {
            // Only a hint: a previous revision that cannot be read means every
            // file is copied.
            if let Ok(m) = self.read_manifest(previous).await {
                known = m
                    .entries()
                    .filter(|e| e.hash.blob_hex().is_some())
                    .map(|e| (e.logical_key.clone(), (e.size, e.hash.clone())))
                    .collect();
            }
        }

        progress.start("hashing and copying", total);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let root = root.to_path_buf();
        let work = tokio::task::spawn_blocking(move || -> Result<Vec<(LocalFile, EntryHash, bool)>> {
            let dirs = BlobDirs::open(&root)?;
            let advance = |n: u64| {
                let _ = tx.send(n);
            };
            // Two threads per core: writers wait for the device (O_DIRECT)
            // while others hash.
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| Error::io("the push thread pool", std::io::Error::other(e)))?;
            pool.install(|| {
                files
                    .into_par_iter()
                    .map(|f| {
                        let likely = known.get(&f.key).filter(|(size, _)| *size == f.size);
                        if likely.is_some() {
                            let (size, h) = hash::hash_file_chunked(&f.path)
                                .map_err(|e| Error::io(f.path.display().to_string(), e))?;
                            if size != f.size {
                                return Err(Error::invalid(format!(
                                    "{} changed size while it was being hashed",
                                    f.path.display()
                                )));
                            }
                            if dirs.has(&h.blob_hex().expect("chunked hash"))? {
                                advance(size);
                                return Ok((f, h, false));
                            }
                            // Its bytes were counted while hashing.
                            let stored = dirs.store(&f.path, f.size, Some(&h), &|_| {})?;
                            return Ok((f, stored.hash, stored.new));
                        }
                        let stored = dirs.store(&f.path, f.size, None, &advance)?;
                        Ok((f, stored.hash, stored.new))
                    })
                    .collect()
            })
        });
        while let Some(n) = rx.recv().await {
            progress.advance(n);
        }
        let stored = work.await.expect("push task panicked")?;
        progress.finish();

        let uploaded_files = stored.iter().filter(|s| s.2).count();
        let uploaded_bytes = stored.iter().filter(|s| s.2).map(|s| s.0.size).sum();
        let hashed: Vec<(LocalFile, EntryHash)> = stored.into_iter().map(|(f, h, _)| (f, h)).collect();
        let (manifest, top_hash) = self.manifest_of(dir, opts, &hashed).await?;
        let mut report =
            PushReport { uploaded_files, uploaded_bytes, ..PushReport::new(pkg, &top_hash, hashed.len(), total) };
        // The manifest holds what the walk found: its memory goes back now.
        drop(hashed);
        // `latest` is read again: another push may have moved it meanwhile.
        let latest = self.read_pointer(&Self::latest_path(pkg)).await?;
        if latest.as_deref() == Some(top_hash.as_str()) {
            report.unchanged = true;
            report.previous = latest;
            return Ok(report);
        }
        self.write_manifest(manifest, &top_hash).await?;
        report.previous = self.record_revision(pkg, &top_hash).await?;
        Ok(report)
    }

    /// The new revision's manifest and top hash: the hashed files of `dir`
    /// as entries naming this registry's blobs.
    async fn manifest_of(
        &self,
        dir: &FsPath,
        opts: &PushOptions,
        hashed: &[(LocalFile, EntryHash)],
    ) -> Result<(Manifest, String)> {
        let mut entries = self.blob_entries(hashed);
        if opts.profile {
            let tables: Vec<(usize, PathBuf)> = hashed
                .iter()
                .enumerate()
                .filter(|(_, (f, _))| crate::profile::is_profiled(&f.path))
                .map(|(i, (f, _))| (i, f.path.clone()))
                .collect();
            let profiles = tokio::task::spawn_blocking(move || {
                tables
                    .into_par_iter()
                    .filter_map(|(i, path)| match crate::profile::profile_file(&path) {
                        Ok(Some(p)) => Some((i, p)),
                        Ok(None) => None,
                        // A table that cannot be read is still data: pushed, without a profile.
                        Err(e) => {
                            tracing::warn!(error = %e, "no profile");
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .expect("profile task panicked");
            for (i, profile) in profiles {
                entries[i].meta = serde_json::json!({ "sheaf": { "profile": profile.to_json() } });
            }
        }
        let manifest = Manifest::build(opts.message.clone(), opts.user_meta.clone(), entries)
            .map_err(|source| Error::Manifest { top_hash: format!("being built from {}", dir.display()), source })?;
        let top_hash = manifest.top_hash();
        Ok((manifest, top_hash))
    }

    /// Manifest entries for hashed local files, their physical keys naming
    /// the registry's content-addressed blobs.
    pub(super) fn blob_entries(&self, hashed: &[(LocalFile, EntryHash)]) -> Vec<Entry> {
        hashed
            .iter()
            .map(|(f, h)| Entry {
                logical_key: f.key.clone(),
                physical_keys: vec![self.location.url_of(&Self::blob_path(&h.blob_hex().expect("chunked hash")))],
                size: f.size,
                hash: h.clone(),
                meta: Value::Object(Map::new()),
                extra: Map::new(),
            })
            .collect()
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
                    Ok(_) => Ok(None),
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

/// Lists the regular files under `root` (following symlinks) with their
/// logical keys, refusing names that cannot be keys.
fn scan(root: &FsPath) -> Result<Vec<LocalFile>> {
    let meta = std::fs::metadata(root).map_err(|e| Error::io(root.display().to_string(), e))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!("{} is not a directory", root.display())));
    }
    let mut files = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name() {
        let item = item.map_err(|e| {
            let path = e.path().map(|p| p.display().to_string()).unwrap_or_else(|| root.display().to_string());
            Error::io(path, e.into())
        })?;
        if !item.file_type().is_file() {
            continue;
        }
        let rel = item.path().strip_prefix(root).expect("walkdir stays under root");
        let key = rel
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::invalid(format!("{}: file names must be UTF-8", item.path().display())))?
            .join("/");
        key::validate(&key)
            .map_err(|why| Error::invalid(format!("{}: cannot be a logical key: {why}", item.path().display())))?;
        let size = item.metadata().map_err(|e| Error::io(item.path().display().to_string(), e.into()))?.len();
        files.push(LocalFile { path: item.path().to_path_buf(), key, size });
    }
    Ok(files)
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
                let (size, h) =
                    hash::hash_file_chunked(&f.path).map_err(|e| Error::io(f.path.display().to_string(), e))?;
                if size != f.size {
                    return Err(Error::invalid(format!("{} changed size while it was being hashed", f.path.display())));
                }
                let _ = tx.send(size);
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
