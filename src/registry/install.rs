//! `install` (download a revision or part of it, verifying every byte) and
//! `verify` (check a local folder against a revision).
//!
//! Both check every byte against the entry's own hash type (`sha2-256-chunked`,
//! `SHA256` or `CRC64NVME`). A selection holding an entry of any other hash
//! type is refused before anything is read or written: data that cannot be
//! checked never passes as checked.

use super::local_copy::{self, LocalSource};
use super::{Error, IO_CONCURRENCY, PackageRef, Registry, Result};
use crate::manifest::hash::{self, StreamHasher};
use crate::manifest::{self, Entry, Manifest};
use crate::progress::Progress;
use futures::stream::{self, StreamExt, TryStreamExt};
use rayon::prelude::*;
use serde::Serialize;
use std::io::ErrorKind;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Entries placed per round of the install's thread pool.
const ROUND: usize = 1024;

/// The outcome of an install.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The installed revision.
    pub top_hash: String,
    /// Files the selection holds.
    pub files: usize,
    /// Bytes the selection holds.
    pub bytes: u64,
    /// Files downloaded.
    pub downloaded_files: usize,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// Files already present with the right hash.
    pub skipped_files: usize,
}

/// The outcome of a verify.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The revision checked against.
    pub top_hash: String,
    /// Entries checked.
    pub checked: usize,
    /// Entries with no file in the folder.
    pub missing: Vec<String>,
    /// Files whose size or hash differs.
    pub modified: Vec<String>,
    /// Files in the folder that are not in the revision.
    pub extra: Vec<String>,
    /// Entries whose hash type Sheaf cannot compute. Always empty in a
    /// report: such an entry fails `verify` with an error before any file is
    /// read (kept so that the JSON report keeps its shape).
    pub unverifiable: Vec<String>,
    /// Whether the folder matches (extra files count unless allowed).
    pub ok: bool,
}

/// Where `e` goes under the install folder: its logical key without the
/// sub-path (a sub-path naming one file installs that file by its name).
pub(super) fn relative(subpath: Option<&str>, e: &Entry) -> String {
    let Some(sub) = subpath else { return e.logical_key.clone() };
    match e.logical_key.strip_prefix(sub).and_then(|s| s.strip_prefix('/')) {
        Some(rest) => rest.to_owned(),
        None => e.logical_key.rsplit('/').next().unwrap_or(&e.logical_key).to_owned(),
    }
}

/// Entries parked on disk between reading a manifest and installing them: an
/// anonymous temporary file (gone when closed, even after a crash) holding a
/// header line and the entries as manifest lines.
struct Spool {
    file: std::io::BufWriter<std::fs::File>,
}

impl Spool {
    fn new() -> Result<Self> {
        let file = tempfile::tempfile().map_err(|e| Error::io("a temporary file for the install", e))?;
        let mut spool = Spool { file: std::io::BufWriter::with_capacity(1 << 20, file) };
        spool.write_line(&serde_json::Value::Object(serde_json::Map::new()))?;
        Ok(spool)
    }

    fn write_line(&mut self, line: &serde_json::Value) -> Result<()> {
        manifest::writer::write_line(&mut self.file, line).map_err(|e| Error::io("the install's temporary file", e))
    }

    fn push(&mut self, e: &Entry) -> Result<()> {
        self.write_line(&e.to_json())
    }

    /// The entries, read back in order (blocking reads of a local file).
    fn into_entries(self) -> Result<impl Iterator<Item = Result<Entry>> + Send + 'static> {
        use std::io::{BufRead, Seek};
        let io = |e| Error::io("the install's temporary file", e);
        let mut file = self.file.into_inner().map_err(|e| io(e.into_error()))?;
        file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        let mut lines = std::io::BufReader::with_capacity(1 << 20, file).split(b'\n');
        // Entries of a manifest already checked: nothing kept per entry.
        let mut parser = manifest::stream::LineParser::streaming();
        Ok(std::iter::from_fn(move || {
            loop {
                let bytes = match lines.next()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(io(e))),
                };
                let parsed = manifest::stream::line_text(&bytes, parser.lines_read() + 1)
                    .and_then(|text| parser.feed(text))
                    .map_err(|e| Error::invalid(format!("the install's temporary file: {e}")));
                match parsed {
                    Ok(Some(manifest::Line::Entry(e))) => return Some(Ok(e)),
                    Ok(_) => continue,
                    Err(e) => return Some(Err(e)),
                }
            }
        }))
    }
}

/// The file path for `rel` under `dest`, creating parent folders. Refuses to
/// pass through anything but real directories, so a symlink planted in `dest`
/// cannot redirect a write outside it. `rel` is an already validated key.
/// `checked` is the folder (relative to `dest`) the previous call checked:
/// entries come sorted by key, so consecutive files mostly share a folder,
/// which is then not checked again.
fn prepare_target(dest: &FsPath, rel: &str, checked: &mut Option<String>) -> Result<PathBuf> {
    let folder = rel.rsplit_once('/').map_or("", |(folder, _)| folder);
    if checked.as_deref() == Some(folder) {
        return Ok(dest.join(rel));
    }
    let mut path = dest.to_path_buf();
    let segments: Vec<&str> = rel.split('/').collect();
    for segment in &segments[..segments.len() - 1] {
        path.push(segment);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "{}: exists and is not a directory (symlinks are not followed); cannot install {rel}",
                    path.display()
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => match std::fs::create_dir(&path) {
                Ok(()) => {}
                // Another download of the same install created it first; it
                // must still be a real directory.
                Err(e)
                    if e.kind() == ErrorKind::AlreadyExists
                        && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {}
                Err(e) => return Err(Error::io(path.display().to_string(), e)),
            },
            Err(e) => return Err(Error::io(path.display().to_string(), e)),
        }
    }
    path.push(segments[segments.len() - 1]);
    *checked = Some(folder.to_owned());
    Ok(path)
}

/// Refuses a selection holding an entry whose hash type cannot be verified,
/// naming the entry and its hash type.
fn require_verifiable<'m>(top_hash: &str, entries: impl IntoIterator<Item = &'m Entry>) -> Result<()> {
    Manifest::require_verifiable(entries).map_err(|source| Error::Manifest { top_hash: top_hash.to_owned(), source })
}

/// Whether `path` is a regular file (not a symlink) matching the entry.
fn already_present(path: &FsPath, entry: &Entry) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() && m.len() == entry.size => {
            matches!(hash::hash_file_like(path, &entry.hash), Ok((_, Some(h))) if h == entry.hash)
        }
        _ => false,
    }
}

impl Registry {
    /// Installs the revision (or the part `r.subpath` selects) into `dest`.
    ///
    /// Memory does not grow with the package: the manifest is streamed once,
    /// the selected entries spooled to an anonymous temporary file, and only
    /// when the whole manifest matched its top hash (and every selected
    /// entry's hash type is verifiable) are they read back and installed.
    pub async fn install(&self, r: &PackageRef, dest: &FsPath, progress: &dyn Progress) -> Result<InstallReport> {
        let top_hash = self.resolve(&r.package, &r.revision).await?;
        let mut spool = Spool::new()?;
        let (mut files, mut total) = (0usize, 0u64);
        self.scan_under(&top_hash, r.subpath.as_deref().unwrap_or(""), |e| {
            require_verifiable(&top_hash, [&e])?;
            files += 1;
            total += e.size;
            spool.push(&e)
        })
        .await?;
        if let (Some(sub), 0) = (&r.subpath, files) {
            return Err(Error::path_not_found(sub, &r.package, &top_hash));
        }
        std::fs::create_dir_all(dest).map_err(|e| Error::io(dest.display().to_string(), e))?;
        progress.start("installing", total);
        // Files are placed by a pool of threads, each file by one blocking
        // call where the data is on local disk; entries whose data is
        // elsewhere come back here to be downloaded through the object store.
        let (advance_tx, mut advance_rx) = mpsc::unbounded_channel::<u64>();
        let (fetch_tx, fetch_rx) = mpsc::channel::<(Entry, PathBuf)>(IO_CONCURRENCY * 4);
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let placer = Placer {
            subpath: r.subpath.clone(),
            dest: dest.to_path_buf(),
            source: self.location.local_root.as_deref().map(|root| LocalSource::open(root, self.url())),
            stop: stop.0.clone(),
            advance: advance_tx,
            fetch: fetch_tx,
        };
        let entries = spool.into_entries()?;
        let work = tokio::task::spawn_blocking(move || placer.place_all(entries));
        let fetched = stream::unfold(fetch_rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
            .map(|(entry, target)| async move { self.download(&entry, &target, progress).await.map(|()| entry.size) })
            .buffer_unordered(IO_CONCURRENCY)
            .try_fold((0usize, 0u64), |(n, bytes), size| async move { Ok((n + 1, bytes + size)) });
        let advanced = async {
            while let Some(n) = advance_rx.recv().await {
                progress.advance(n);
            }
            Ok(())
        };
        let ((fetched_files, fetched_bytes), ()) = futures::future::try_join(fetched, advanced).await?;
        let (copied_files, copied_bytes) = work.await.expect("install task panicked")?;
        drop(stop);
        progress.finish();
        let downloaded_files = fetched_files + copied_files;
        Ok(InstallReport {
            top_hash,
            files,
            bytes: total,
            downloaded_files,
            downloaded_bytes: fetched_bytes + copied_bytes,
            skipped_files: files - downloaded_files,
        })
    }

    /// Streams an entry into `target` through the object store and a
    /// temporary file, hashing as it goes; only verified data is put into
    /// place.
    async fn download(&self, entry: &Entry, target: &FsPath, progress: &dyn Progress) -> Result<()> {
        let (file, guard) = PartialFile::create(target)?;
        let mut file = tokio::fs::File::from_std(file);
        let tmp = guard.name(target).to_path_buf();
        let result = async {
            // `install` refused unverifiable hash types up front; this is the
            // backstop, before a byte is read.
            let mut hasher = super::hasher_for(entry)?;
            let (mut body, from) = self.open_entry_at(entry).await?;
            while let Some(chunk) = body.try_next().await? {
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(|e| Error::io(tmp.display().to_string(), e))?;
                progress.advance(chunk.len() as u64);
            }
            file.flush().await.map_err(|e| Error::io(tmp.display().to_string(), e))?;
            check(entry, &from, hasher)?;
            guard.put_in_place(&file, target).map_err(|e| Error::io(target.display().to_string(), e))
        }
        .await;
        if result.is_ok() {
            guard.disarm();
        }
        result
    }

    /// Checks that `dir` holds exactly the revision's files (or the part
    /// `r.subpath` selects).
    pub async fn verify(
        &self,
        r: &PackageRef,
        dir: &FsPath,
        extra_files_ok: bool,
        progress: &dyn Progress,
    ) -> Result<VerifyReport> {
        let top_hash = self.resolve(&r.package, &r.revision).await?;
        // Streamed like install: entries parked on disk, and their paths
        // too (for the extra-files check), so memory does not grow with them.
        let mut spool = Spool::new()?;
        let mut expected = super::extra_files::ExpectedPaths::new()?;
        let mut total = 0u64;
        self.scan_under(&top_hash, r.subpath.as_deref().unwrap_or(""), |e| {
            require_verifiable(&top_hash, [&e])?;
            total += e.size;
            expected.push(&relative(r.subpath.as_deref(), &e))?;
            spool.push(&e)
        })
        .await?;
        if let (Some(sub), true) = (&r.subpath, expected.is_empty()) {
            return Err(Error::path_not_found(sub, &r.package, &top_hash));
        }
        if dir.exists() && !dir.is_dir() {
            return Err(Error::Invalid(format!("{} is not a directory: verify checks a folder", dir.display())));
        }
        if !dir.is_dir() {
            return Err(Error::NotFound(format!("directory {}", dir.display())));
        }
        progress.start("verifying", total);
        // Checked on a pool of threads, a round of entries at a time; only
        // the problems are kept.
        let (advance_tx, mut advance_rx) = mpsc::unbounded_channel::<u64>();
        let (subpath, dir_buf) = (r.subpath.clone(), dir.to_path_buf());
        let entries = spool.into_entries()?;
        let work = tokio::task::spawn_blocking(move || {
            let pool = super::io_pool("the verify thread pool")?;
            let mut problems: Vec<(String, Check)> = Vec::new();
            super::in_rounds(entries, ROUND, |round| {
                pool.install(|| {
                    problems.par_extend(round.into_par_iter().filter_map(|entry| {
                        let rel = relative(subpath.as_deref(), &entry);
                        let check = check_file(&dir_buf.join(&rel), &entry);
                        let _ = advance_tx.send(check.bytes);
                        (!matches!(check.verdict, Verdict::Ok)).then_some((rel, check))
                    }))
                });
                Ok(())
            })?;
            Ok::<_, Error>(problems)
        });
        while let Some(n) = advance_rx.recv().await {
            progress.advance(n);
        }
        let checks = work.await.expect("verify task panicked")?;
        progress.finish();
        let extra = tokio::task::spawn_blocking({
            let dir = dir.to_path_buf();
            let checked = expected.len() as usize;
            move || expected.extra_in(&dir).map(|extra| (extra, checked))
        })
        .await
        .expect("listing task panicked")?;
        let (extra, checked) = extra;
        let mut report = VerifyReport {
            top_hash,
            checked,
            missing: vec![],
            modified: vec![],
            extra,
            unverifiable: vec![],
            ok: false,
        };
        for (rel, check) in checks {
            match check.verdict {
                Verdict::Ok => {}
                Verdict::Missing => report.missing.push(rel),
                Verdict::Modified => report.modified.push(rel),
                Verdict::Unverifiable => report.unverifiable.push(rel),
            }
        }
        report.missing.sort();
        report.modified.sort();
        report.unverifiable.sort();
        report.ok = report.missing.is_empty()
            && report.modified.is_empty()
            && report.unverifiable.is_empty()
            && (extra_files_ok || report.extra.is_empty());
        Ok(report)
    }
}

/// Checks what `hasher` saw (of the data read at `from`) against the
/// entry's hash and size.
pub(super) fn check(entry: &Entry, from: &str, hasher: StreamHasher) -> Result<()> {
    match hasher.finish() {
        Ok(h) if h == entry.hash => Ok(()),
        Ok(h) => Err(mismatch(entry, from, entry.hash.to_string(), h.to_string())),
        Err(size) => Err(mismatch(entry, from, format!("{} bytes", entry.size), format!("{size} bytes"))),
    }
}

/// The error for an entry whose data, read at `from` (which may differ from
/// its physical key: a registry's own blob of that hash), is not what its
/// manifest says.
pub(super) fn mismatch(entry: &Entry, from: &str, expected: String, actual: String) -> Error {
    Error::Integrity { what: format!("{} ({from})", entry.logical_key), expected, actual }
}

/// Sets its flag when dropped: an install that fails, or whose future is
/// dropped, stops its placing threads at their next file.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The blocking half of an install: puts each entry in place, on a pool of
/// threads ([`super::io_pool`]).
struct Placer {
    subpath: Option<String>,
    dest: PathBuf,
    /// The registry, when it is on local disk.
    source: Option<LocalSource>,
    stop: Arc<AtomicBool>,
    advance: mpsc::UnboundedSender<u64>,
    /// Entries (and their target paths) to download through the object store.
    fetch: mpsc::Sender<(Entry, PathBuf)>,
}

impl Placer {
    /// Places every entry; returns the files and bytes it copied itself.
    fn place_all(self, entries: impl Iterator<Item = Result<Entry>>) -> Result<(usize, u64)> {
        let pool = super::io_pool("the install thread pool")?;
        let (mut files, mut bytes) = (0usize, 0u64);
        super::in_rounds(entries, ROUND, |round| {
            let copied: Vec<Option<u64>> = pool.install(|| {
                round
                    .into_par_iter()
                    .map_init(|| None, |checked, entry| self.place(entry, checked))
                    .collect::<Result<_>>()
            })?;
            for size in copied.into_iter().flatten() {
                files += 1;
                bytes += size;
            }
            Ok(())
        })?;
        Ok((files, bytes))
    }

    /// Puts one entry in place: returns its size when this call copied it,
    /// `None` when it was already there or was handed over to be downloaded.
    fn place(&self, entry: Entry, checked: &mut Option<String>) -> Result<Option<u64>> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(Error::invalid("install stopped"));
        }
        let rel = relative(self.subpath.as_deref(), &entry);
        let target = prepare_target(&self.dest, &rel, checked)?;
        if already_present(&target, &entry) {
            let _ = self.advance.send(entry.size);
            return Ok(None);
        }
        if let Some((src, from)) = self.source.as_ref().map(|s| s.open_data(&entry)).transpose()?.flatten() {
            let (mut file, guard) = PartialFile::create(&target)?;
            let advance = |n| {
                let _ = self.advance.send(n);
            };
            local_copy::copy(src, &from, &entry, &mut file, guard.name(&target), &advance)?;
            guard.put_in_place(&file, &target).map_err(|e| Error::io(target.display().to_string(), e))?;
            guard.disarm();
            return Ok(Some(entry.size));
        }
        // The download's failure, if any, is the install's error.
        self.fetch.blocking_send((entry, target)).map_err(|_| Error::invalid("install stopped"))?;
        Ok(None)
    }
}

/// A download in progress: an unnamed file in the target's folder
/// (`O_TMPFILE`) where the file system has them, linked to its name once
/// verified (one folder operation, and nothing left by a crash); elsewhere a
/// file created exclusively beside the target (never through an existing file
/// or symlink), renamed into place once verified and removed when dropped
/// unless disarmed, so a failed or cancelled install leaves nothing behind.
struct PartialFile {
    /// The named partial file; `None` for an unnamed one.
    path: Option<PathBuf>,
    armed: bool,
}

impl PartialFile {
    /// Creates the file synchronously: an install that fails elsewhere drops
    /// this download's future, and an open still running on a blocking
    /// thread would create the file after the guard was gone.
    fn create(target: &FsPath) -> Result<(std::fs::File, PartialFile)> {
        #[cfg(target_os = "linux")]
        if let Some(folder) = target.parent() {
            use std::os::unix::fs::OpenOptionsExt;
            let unnamed = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).open(folder);
            if let Ok(file) = unnamed {
                return Ok((file, PartialFile { path: None, armed: true }));
            }
        }
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
        for attempt in 0..8u32 {
            let path = partial_name(target, name, attempt);
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok((file, PartialFile { path: Some(path), armed: true }));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(path.display().to_string(), e)),
            }
        }
        Err(Error::invalid(format!("{}: cannot create a temporary file beside it", target.display())))
    }

    /// The file's name in errors: its partial name, or `target` for an
    /// unnamed one.
    fn name<'a>(&'a self, target: &'a FsPath) -> &'a FsPath {
        self.path.as_deref().unwrap_or(target)
    }

    /// Gives the verified `file` the name `target`, replacing what is there.
    /// Synchronously, like the create: a cancelled install must not leave a
    /// rename or link running (on a descriptor that may be reused).
    fn put_in_place(&self, file: &impl std::os::fd::AsRawFd, target: &FsPath) -> std::io::Result<()> {
        match &self.path {
            Some(path) => std::fs::rename(path, target),
            None => link_unnamed(file.as_raw_fd(), target),
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

/// A name for a partial file beside `target` (`name` is its file name).
fn partial_name(target: &FsPath, name: &str, attempt: u32) -> PathBuf {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    target.with_file_name(format!(".{name}.sheaf-partial-{}-{nanos:x}-{attempt}", std::process::id()))
}

/// Links the unnamed file open as `fd` to `target` (through its /proc
/// entry, open(2)'s way). Where `target` exists (a file being replaced),
/// links it to a partial name beside it and renames that over `target`.
#[cfg(not(target_os = "linux"))]
fn link_unnamed(_fd: std::os::fd::RawFd, _target: &FsPath) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(target_os = "linux")]
fn link_unnamed(fd: std::os::fd::RawFd, target: &FsPath) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let proc = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
    let link = |to: &FsPath| -> std::io::Result<()> {
        let to = CString::new(to.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: NUL-terminated paths; linkat only reads them.
        let r = unsafe {
            libc::linkat(libc::AT_FDCWD, proc.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    };
    match link(target) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
            for attempt in 0..8u32 {
                let partial = partial_name(target, name, attempt);
                match link(&partial) {
                    Ok(()) => {
                        let renamed = std::fs::rename(&partial, target);
                        if renamed.is_err() {
                            let _ = std::fs::remove_file(&partial);
                        }
                        return renamed;
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(std::io::Error::other("cannot create a temporary file beside it"))
        }
        other => other,
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let (true, Some(path)) = (self.armed, &self.path) {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Verdict {
    Ok,
    Missing,
    Modified,
    Unverifiable,
}

struct Check {
    verdict: Verdict,
    bytes: u64,
}

fn check_file(path: &FsPath, entry: &Entry) -> Check {
    let verdict = match std::fs::metadata(path) {
        Err(_) => Verdict::Missing,
        Ok(m) if !m.is_file() => Verdict::Missing,
        Ok(m) if m.len() != entry.size => Verdict::Modified,
        Ok(_) => match hash::hash_file_like(path, &entry.hash) {
            Ok((_, Some(h))) if h == entry.hash => Verdict::Ok,
            Ok((_, None)) => Verdict::Unverifiable,
            _ => Verdict::Modified,
        },
    };
    Check { verdict, bytes: entry.size }
}
