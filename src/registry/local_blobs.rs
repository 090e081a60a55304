//! Blobs written straight into a registry on local disk, in one pass over the
//! source: each chunk of a file is read once, hashed (`sha2-256-chunked`) and
//! written to a staging file at the same offset; when the hash is known the
//! staging file is linked into `.sheaf/blobs/<hex>` (or dropped when that blob
//! already exists). The staging file is an unnamed file of `.sheaf/blobs/`
//! (`O_TMPFILE`) where the file system has them: nothing to remove afterwards,
//! nothing left by a crash, and one directory operation per blob instead of
//! three; elsewhere a named file under `.sheaf/tmp/`, unlinked after. (Named
//! staging files made a push of many small files spend most of its time in
//! the kernel: unlinks waiting on the staging folder's lock and ext4 looking
//! past recently freed inodes.)
//!
//! - **What is stored is what was hashed**: the blob's bytes are the very
//!   bytes fed to the hasher, so no blob is ever named by a stale hash. A
//!   source whose size, inode, modification or change time differs after the
//!   read from before it (or that ends early) is refused with
//!   [`Error::Integrity`], not stored: it changed while it was pushed.
//! - **Crash consistency**: a blob appears under its name only complete
//!   (`linkat` of a finished file, create-only). A killed push leaves at
//!   worst complete unreferenced blobs, and where `O_TMPFILE` is missing
//!   staging files under `.sheaf/tmp/`; `sheaf gc` removes both.
//! - **Symbolic links**: `.sheaf`, `.sheaf/tmp` and `.sheaf/blobs` are opened
//!   from the registry root one component at a time with `O_NOFOLLOW`, and
//!   every staging file and blob is created relative to those descriptors, so
//!   a link inside the registry cannot redirect a write.
//! - **Parallelism**: files, and the chunks of large files, are spread over
//!   a rayon pool of two threads per core (writers wait for the device while
//!   others hash); chunks are independent in `sha2-256-chunked`, so a single
//!   large file uses every core too.
//! - **Copy on write**: where the registry and the source are on one file
//!   system that shares blocks between files (XFS, Btrfs, bcachefs, ZFS
//!   2.2+), the staging file is a clone of the source (`FICLONE`: no data
//!   written, blocks shared until either file changes), and the source is
//!   read once only to hash it; the source's version check (above) brackets
//!   the clone, so the clone holds the bytes hashed. The first refusal
//!   (another file system, no reflinks) turns cloning off for the rest of
//!   the push; `SHEAF_PUSH_REFLINK=0` turns it off.
//! - **Direct I/O**: files of 256 KiB and more are written with `O_DIRECT`,
//!   bypassing the page cache: on the 2-core VM this was measured on, writing
//!   512 MiB through the page cache took 1.4 s (0.95 s of it system CPU that
//!   hashing needs), with `O_DIRECT` 0.45 s and almost no CPU; and a push does
//!   not evict the user's cache with a second copy of the data. Reads of the
//!   source stay buffered. Where a file system refuses `O_DIRECT` (tmpfs
//!   before Linux 6.6, odd block sizes) the file is written again through the
//!   page cache, and so are the later files of the push.
//!   `SHEAF_PUSH_DIRECT_IO=0` turns it off (for comparisons: in
//!   `benches/push_hash.py`'s back-to-back rounds here, page-cache writes made
//!   the push take 2.05 s instead of 1.04 s; on an idle machine with free
//!   memory they can be the faster of the two).
//! - **Durability**: like object_store's local store, which wrote blobs
//!   before, blobs are not fsynced (with `O_DIRECT` their data is handed to
//!   the device, but the file's size and extents are not on disk until the
//!   file system commits); the manifest and pointers that make a revision
//!   visible are (`Registry::put_small`).

use super::{BLOBS, Error, Result, TMP};
use crate::manifest::hash::{EntryHash, chunk_size};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Read size per chunk worker: bounds memory per thread.
const READ_BUF: usize = 1024 * 1024;
/// Files at least this large are written with `O_DIRECT` (see the module
/// documentation); smaller ones through the page cache.
const DIRECT_MIN: u64 = 256 * 1024;
/// Alignment of `O_DIRECT` buffers, offsets and lengths (the largest logical
/// block size of common devices).
const ALIGN: usize = 4096;
/// `O_DIRECT` where the platform has it (0: never used).
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
const O_DIRECT: libc::c_int = libc::O_DIRECT;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
const O_DIRECT: libc::c_int = 0;

/// Open descriptors of a local registry's staging and blob folders.
pub(super) struct BlobDirs {
    root: PathBuf,
    tmp: File,
    blobs: File,
    /// Cleared the first time the registry's file system refuses `O_DIRECT`.
    direct_ok: std::sync::atomic::AtomicBool,
    /// Cleared the first time a clone of a source is refused.
    clone_ok: std::sync::atomic::AtomicBool,
    /// Cleared the first time the file system refuses an unnamed file.
    tmpfile_ok: std::sync::atomic::AtomicBool,
    /// New blobs stored as clones of their source.
    cloned: AtomicU64,
}

/// A file stored (or found already stored) as a blob.
pub(super) struct Stored {
    pub(super) hash: EntryHash,
    /// This call linked the blob into place (it was not there before).
    pub(super) new: bool,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(io::Error::other)
}

/// Creates (if needed) and opens the folder `rel` below `root`, refusing a
/// symbolic link at every component.
fn open_dir_beneath(root: &Path, rel: &str) -> io::Result<File> {
    let mut current = File::open(root)?;
    for part in rel.split('/') {
        let name = cstr(part)?;
        // SAFETY: `current` is an open directory; `name` is NUL-terminated.
        let made = unsafe { libc::mkdirat(current.as_raw_fd(), name.as_ptr(), 0o777) };
        if made < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as above.
        let fd = unsafe { libc::openat(current.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOTDIR) | Some(libc::ELOOP) => io::Error::other(format!(
                    "{part} in {rel} is not a folder (symbolic links inside a registry are not followed)"
                )),
                _ => e,
            });
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        current = unsafe { File::from_raw_fd(fd) };
    }
    Ok(current)
}

impl BlobDirs {
    /// Opens (creating them if needed) `.sheaf/tmp` and `.sheaf/blobs` of the
    /// registry at `root`.
    pub(super) fn open(root: &Path) -> Result<Self> {
        let at = |rel: &str, e| Error::io(root.join(rel).display().to_string(), e);
        std::fs::create_dir_all(root).map_err(|e| Error::io(root.display().to_string(), e))?;
        let tmp = open_dir_beneath(root, TMP).map_err(|e| at(TMP, e))?;
        let blobs = open_dir_beneath(root, BLOBS).map_err(|e| at(BLOBS, e))?;
        // `SHEAF_PUSH_DIRECT_IO=0` writes everything through the page cache.
        let direct = std::env::var_os("SHEAF_PUSH_DIRECT_IO").is_none_or(|v| v != "0");
        // `SHEAF_PUSH_REFLINK=0` copies every byte even where blocks could be shared.
        let clone = std::env::var_os("SHEAF_PUSH_REFLINK").is_none_or(|v| v != "0");
        Ok(BlobDirs {
            root: root.to_path_buf(),
            tmp,
            blobs,
            direct_ok: direct.into(),
            clone_ok: clone.into(),
            tmpfile_ok: cfg!(target_os = "linux").into(),
            cloned: AtomicU64::new(0),
        })
    }

    /// How many new blobs were stored as clones of their source (copy on
    /// write).
    pub(super) fn cloned(&self) -> u64 {
        self.cloned.load(Ordering::Relaxed)
    }

    /// Makes `out` (empty) a clone of `src`, sharing its blocks, where the
    /// file system can; false (and no more tries) where it cannot.
    fn try_clone(&self, src: &File, out: &File) -> bool {
        if !self.clone_ok.load(Ordering::Relaxed) {
            return false;
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: both are open descriptors; FICLONE reads only them.
            let r = unsafe { libc::ioctl(out.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
            if r == 0 {
                return true;
            }
        }
        let _ = (src, out);
        self.clone_ok.store(false, Ordering::Relaxed);
        false
    }

    /// Whether the blob named `hex` exists as a regular file of `size`
    /// bytes (without following a link). A blob of another size is damaged
    /// (truncated, say): the push stores it again.
    pub(super) fn has(&self, hex: &str, size: u64) -> Result<bool> {
        Ok(self.blob_size(hex)? == Some(size))
    }

    /// The size of the blob named `hex` when it is a regular file; `None`
    /// when there is none, `Some(u64::MAX)` for anything else in its place.
    fn blob_size(&self, hex: &str) -> Result<Option<u64>> {
        let name = cstr(hex).map_err(|e| self.blob_error(hex, e))?;
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid directory descriptor, NUL-terminated name, owned buffer.
        let r = unsafe { libc::fstatat(self.blobs.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if r == 0 {
            let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
            return Ok(Some(if regular { st.st_size as u64 } else { u64::MAX }));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(self.blob_error(hex, e)),
        }
    }

    fn blob_error(&self, hex: &str, e: io::Error) -> Error {
        Error::io(self.root.join(BLOBS).join(hex).display().to_string(), e)
    }

    /// Reads `path` (`size` bytes when it was listed) once, hashing it into
    /// `sha2-256-chunked` while writing it to a staging file, then links the
    /// staging file into place as the blob of that hash. With `expected`, a
    /// different hash is refused as a change. `progress` gets byte counts.
    pub(super) fn store(
        &self,
        path: &Path,
        size: u64,
        expected: Option<&EntryHash>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Stored> {
        let src_err = |e| Error::io(path.display().to_string(), e);
        let changed = |expected: String, actual: String| Error::Integrity {
            what: format!("{} changed while it was being pushed", path.display()),
            expected,
            actual,
        };
        let src = File::open(path).map_err(src_err)?;
        let before = src.metadata().map_err(src_err)?;
        if before.len() != size {
            return Err(changed(format!("{size} bytes"), format!("{} bytes", before.len())));
        }

        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp_name = format!("push-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let tmp_c = cstr(&tmp_name).expect("no NUL in a generated name");
        let tmp_err = |e| Error::io(self.root.join(TMP).join(&tmp_name).display().to_string(), e);
        let (out, direct, named) = self.open_staging(&tmp_c, size).map_err(tmp_err)?;
        // From here on a named staging file goes away whatever happens (an
        // unnamed one goes with its descriptor).
        let _staged = named.then(|| Unlink { dir: &self.tmp, name: &tmp_c });
        // A clone holds the source's bytes already: they are only hashed.
        let cloned = size > 0 && self.try_clone(&src, &out);
        let direct = direct && !cloned;

        let chunk = chunk_size(size);
        let chunks = size.div_ceil(chunk);
        let copy_all = |direct: bool| -> io::Result<Vec<[u8; 32]>> {
            let copy = |i: u64| -> io::Result<[u8; 32]> {
                let start = i * chunk;
                let end = (start + chunk).min(size);
                copy_range(&src, (!cloned).then_some(&out), start, end, direct, progress)
            };
            let digests: io::Result<Vec<[u8; 32]>> = if chunks <= 1 {
                (0..chunks).map(copy).collect()
            } else {
                (0..chunks).into_par_iter().map(copy).collect()
            };
            if direct && !size.is_multiple_of(ALIGN as u64) && digests.is_ok() {
                // The last block was written padded to the alignment.
                out.set_len(size)?;
            }
            digests
        };
        let mut digests = copy_all(direct);
        if direct && digests.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL)) {
            // O_DIRECT refused by this file system's block size or alignment
            // rules: again, buffered, into an emptied staging file.
            self.direct_ok.store(false, Ordering::Relaxed);
            // SAFETY: `out` is an open descriptor; F_SETFL only changes its flags.
            let cleared = unsafe { libc::fcntl(out.as_raw_fd(), libc::F_SETFL, 0) };
            if cleared < 0 {
                return Err(tmp_err(io::Error::last_os_error()));
            }
            out.set_len(0).map_err(tmp_err)?;
            digests = copy_all(false);
        }
        let digests = digests.map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => changed(format!("{size} bytes"), "fewer bytes (it shrank)".into()),
            _ => Error::io(format!("copying {} into {}", path.display(), self.root.join(TMP).display()), e),
        })?;
        let after = src.metadata().map_err(src_err)?;
        if !same_version(&before, &after) {
            return Err(changed(
                "the same size, inode and times after reading it as before".into(),
                format!("{} bytes, modified or changed meanwhile", after.len()),
            ));
        }
        let mut top = Sha256::new();
        for d in &digests {
            top.update(d);
        }
        let hash = EntryHash::chunked(top.finalize().into());
        if let Some(expected) = expected.filter(|e| **e != hash) {
            return Err(changed(expected.value.clone(), hash.value));
        }
        let new = self.link(&out, named.then_some(&tmp_c), &hash)?;
        drop(out);
        if new && cloned {
            self.cloned.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Stored { hash, new })
    }

    /// Creates a staging file: an unnamed file in `.sheaf/blobs/` where the
    /// file system has them, else the file `name` in `.sheaf/tmp/` (never
    /// following a link); with O_DIRECT for a large file when the file system
    /// takes it. Returns the file, whether it is direct, and whether it is
    /// named.
    fn open_staging(&self, name: &CString, size: u64) -> io::Result<(File, bool, bool)> {
        let mut direct = O_DIRECT != 0 && size >= DIRECT_MIN && self.direct_ok.load(Ordering::Relaxed);
        #[cfg(target_os = "linux")]
        if self.tmpfile_ok.load(Ordering::Relaxed) {
            let flags = libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC;
            // SAFETY: valid directory descriptor and NUL-terminated name.
            let open =
                |flags| unsafe { libc::openat(self.blobs.as_raw_fd(), c".".as_ptr(), flags, 0o666 as libc::c_uint) };
            let mut fd = open(if direct { flags | O_DIRECT } else { flags });
            if fd < 0 && direct && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                fd = open(flags);
                if fd >= 0 {
                    // Unnamed files, but no O_DIRECT: buffered from now on.
                    self.direct_ok.store(false, Ordering::Relaxed);
                    direct = false;
                }
            }
            if fd >= 0 {
                // SAFETY: `fd` was just opened and is owned by nothing else.
                return Ok((unsafe { File::from_raw_fd(fd) }, direct, false));
            }
            // No unnamed files on this file system: named ones from now on.
            self.tmpfile_ok.store(false, Ordering::Relaxed);
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid directory descriptor and NUL-terminated name.
        let open = |flags| unsafe { libc::openat(self.tmp.as_raw_fd(), name.as_ptr(), flags, 0o666 as libc::c_uint) };
        let mut fd = open(if direct { flags | O_DIRECT } else { flags });
        if fd < 0 && direct && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // No O_DIRECT on this file system: buffered from now on.
            self.direct_ok.store(false, Ordering::Relaxed);
            direct = false;
            fd = open(flags);
        }
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok((unsafe { File::from_raw_fd(fd) }, direct, true))
    }

    /// Links the staging file (`out`, named `name` in `.sheaf/tmp/` or
    /// unnamed) into `.sheaf/blobs/` as the blob of `hash`; false when that
    /// blob was already there.
    ///
    /// A blob already there with another size than the staging file's is
    /// damaged (content-addressed blobs never change size): it is replaced.
    fn link(&self, out: &File, name: Option<&CString>, hash: &EntryHash) -> Result<bool> {
        if self.link_once(out, name, hash)? {
            return Ok(true);
        }
        let hex = hash.blob_hex().expect("a chunked hash");
        let size = out.metadata().map_err(|e| self.blob_error(&hex, e))?.len();
        if self.blob_size(&hex)?.is_none_or(|found| found == size) {
            return Ok(false);
        }
        tracing::warn!(blob = %self.root.join(BLOBS).join(&hex).display(), size, "replacing a damaged blob");
        let hex_c = cstr(&hex).expect("hex has no NUL");
        // SAFETY: valid directory descriptor and NUL-terminated name.
        if unsafe { libc::unlinkat(self.blobs.as_raw_fd(), hex_c.as_ptr(), 0) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(self.blob_error(&hex, e));
            }
        }
        self.link_once(out, name, hash)
    }

    /// One create-only link of the staging file as the blob of `hash`.
    fn link_once(&self, out: &File, name: Option<&CString>, hash: &EntryHash) -> Result<bool> {
        let hex = hash.blob_hex().expect("a chunked hash");
        let hex_c = cstr(&hex).expect("hex has no NUL");
        let blobs = self.blobs.as_raw_fd();
        // SAFETY (each call): valid descriptors and NUL-terminated names.
        let linked = match name {
            Some(name) => unsafe { libc::linkat(self.tmp.as_raw_fd(), name.as_ptr(), blobs, hex_c.as_ptr(), 0) },
            None => {
                // An unnamed file is linked through its /proc entry (open(2)'s
                // way, no privilege needed), or by its descriptor where /proc
                // is not mounted (which needs CAP_DAC_READ_SEARCH).
                let proc = cstr(&format!("/proc/self/fd/{}", out.as_raw_fd())).expect("no NUL");
                let r = unsafe {
                    libc::linkat(libc::AT_FDCWD, proc.as_ptr(), blobs, hex_c.as_ptr(), libc::AT_SYMLINK_FOLLOW)
                };
                if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::NotFound {
                    unsafe { libc::linkat(out.as_raw_fd(), c"".as_ptr(), blobs, hex_c.as_ptr(), libc::AT_EMPTY_PATH) }
                } else {
                    r
                }
            }
        };
        let new = if linked == 0 {
            true
        } else {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(self.blob_error(&hex, e));
            }
            false
        };
        Ok(new)
    }
}

/// Unlinks a staging file when dropped.
struct Unlink<'a> {
    dir: &'a File,
    name: &'a CString,
}

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        // SAFETY: valid directory descriptor and NUL-terminated name.
        unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) };
    }
}

/// The same file, unchanged, as far as its metadata tells.
fn same_version(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    (a.dev(), a.ino(), a.len(), a.mtime(), a.mtime_nsec(), a.ctime(), a.ctime_nsec())
        == (b.dev(), b.ino(), b.len(), b.mtime(), b.mtime_nsec(), b.ctime(), b.ctime_nsec())
}

/// A heap buffer aligned for `O_DIRECT`.
struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len.max(ALIGN), ALIGN).expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
            .unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` owns `layout.size()` initialized (zeroed) bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

// SAFETY: the buffer is plain memory owned by one value.
unsafe impl Send for AlignedBuf {}

/// Copies bytes `start..end` of `src` to the same offsets of `out` (when
/// given: a clone of `src` needs no copy), returning their SHA-256. A source
/// that ends early is `UnexpectedEof`. With `direct`
/// (`out` opened with `O_DIRECT`), every write is a whole number of aligned
/// blocks: reads fill the buffer, and the file's last block is written padded
/// (the caller truncates the file to its size).
fn copy_range(
    src: &File,
    out: Option<&File>,
    start: u64,
    end: u64,
    direct: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let cap = READ_BUF.min((end - start) as usize).max(1);
    // Room for the padded last block too.
    let mut aligned = AlignedBuf::new(cap.next_multiple_of(ALIGN));
    let buf = aligned.as_mut();
    let mut pos = start;
    while pos < end {
        let want = cap.min((end - pos) as usize);
        let mut n = 0;
        while n < want {
            let got = src.read_at(&mut buf[n..want], pos + n as u64)?;
            if got == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was being pushed"));
            }
            n += got;
            if !direct {
                break;
            }
        }
        hasher.update(&buf[..n]);
        match out {
            None => {}
            Some(out) if direct && n % ALIGN != 0 => {
                // Only at the end of the file: pad the last block with zeros.
                let padded = n.next_multiple_of(ALIGN);
                buf[n..padded].fill(0);
                out.write_all_at(&buf[..padded], pos)?;
            }
            Some(out) => out.write_all_at(&buf[..n], pos)?,
        }
        pos += n as u64;
        progress(n as u64);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::hash::hash_file_chunked;
    use std::io::Write;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(d) => d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
            Err(_) => vec![],
        };
        names.sort();
        names
    }

    #[test]
    fn stores_a_multi_chunk_file_under_its_hash_once() {
        let dir = tempfile::tempdir().unwrap();
        let (src, reg) = (dir.path().join("src.bin"), dir.path().join("reg"));
        // Three 8 MiB chunks, copied in parallel.
        let data: Vec<u8> = (0..(17 * 1024 * 1024 + 333)).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let dirs = BlobDirs::open(&reg).unwrap();
        let seen = AtomicU64::new(0);
        let count = |n: u64| {
            seen.fetch_add(n, Ordering::Relaxed);
        };
        let stored = dirs.store(&src, data.len() as u64, None, &count).unwrap();
        assert!(stored.new);
        assert_eq!(seen.load(Ordering::Relaxed), data.len() as u64);
        assert_eq!(stored.hash, hash_file_chunked(&src).unwrap().1);
        let hex = stored.hash.blob_hex().unwrap();
        assert_eq!(std::fs::read(reg.join(BLOBS).join(&hex)).unwrap(), data);
        assert!(dirs.has(&hex, data.len() as u64).unwrap());
        // The same content again: found, not stored twice; no staging left.
        let again = dirs.store(&src, data.len() as u64, Some(&stored.hash), &|_| {}).unwrap();
        assert!(!again.new);
        assert_eq!(files_in(&reg.join(BLOBS)), vec![hex.clone()]);
        assert!(files_in(&reg.join(TMP)).is_empty());
        // A damaged blob (truncated) is not taken for the content: stored again.
        assert!(!dirs.has(&hex, data.len() as u64 + 1).unwrap());
        std::fs::write(reg.join(BLOBS).join(&hex), b"cut").unwrap();
        assert!(!dirs.has(&hex, data.len() as u64).unwrap());
        let repaired = dirs.store(&src, data.len() as u64, Some(&stored.hash), &|_| {}).unwrap();
        assert!(repaired.new);
        assert_eq!(std::fs::read(reg.join(BLOBS).join(&hex)).unwrap(), data);
        assert!(files_in(&reg.join(TMP)).is_empty());
        // Empty files hash as quilt3 hashes them.
        std::fs::write(&src, b"").unwrap();
        let empty = dirs.store(&src, 0, None, &|_| {}).unwrap();
        assert_eq!(empty.hash.value, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn odd_and_aligned_sizes_around_the_direct_io_threshold_store_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (src, reg) = (dir.path().join("src.bin"), dir.path().join("reg"));
        let dirs = BlobDirs::open(&reg).unwrap();
        for size in [1, 4095, 4096, 262_143, 262_144, 300_001, 1 << 20, (1 << 20) + 1, 8 << 20, (8 << 20) + 4097] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
            std::fs::write(&src, &data).unwrap();
            let stored = dirs.store(&src, size as u64, None, &|_| {}).unwrap();
            assert_eq!(stored.hash, hash_file_chunked(&src).unwrap().1, "{size}");
            let blob = std::fs::read(reg.join(BLOBS).join(stored.hash.blob_hex().unwrap())).unwrap();
            assert!(blob == data, "{size}: the blob differs from the source");
        }
        assert!(files_in(&reg.join(TMP)).is_empty());
    }

    /// After a file system refused `O_DIRECT`, large files go through the
    /// page cache, stored exactly the same.
    #[test]
    fn buffered_writes_of_large_files_store_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (src, reg) = (dir.path().join("src.bin"), dir.path().join("reg"));
        let data: Vec<u8> = (0..(9 << 20) + 5).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let dirs = BlobDirs::open(&reg).unwrap();
        dirs.direct_ok.store(false, Ordering::Relaxed);
        let stored = dirs.store(&src, data.len() as u64, None, &|_| {}).unwrap();
        assert_eq!(stored.hash, hash_file_chunked(&src).unwrap().1);
        let blob = std::fs::read(reg.join(BLOBS).join(stored.hash.blob_hex().unwrap())).unwrap();
        assert!(blob == data);
        assert!(files_in(&reg.join(TMP)).is_empty());
    }

    #[test]
    fn a_file_changed_while_it_is_stored_is_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (src, reg) = (dir.path().join("src.bin"), dir.path().join("reg"));
        let data = vec![7u8; 3 * 1024 * 1024];
        std::fs::write(&src, &data).unwrap();
        let dirs = BlobDirs::open(&reg).unwrap();
        // Rewritten (same size, other bytes) after the first MiB was read.
        let rewrite = |_: u64| {
            let mut f = std::fs::File::options().write(true).open(&src).unwrap();
            f.write_all(&[9u8; 1024]).unwrap();
        };
        let err = dirs.store(&src, data.len() as u64, None, &rewrite).err().expect("refused");
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        assert!(err.to_string().contains("changed while it was being pushed"), "{err}");
        // Grown or shrunk since it was listed.
        let err = dirs.store(&src, 5, None, &|_| {}).err().expect("refused");
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        // Content other than the hash it was expected to have.
        let other = crate::manifest::hash::StreamHasher::chunked(0).finish().unwrap();
        let err = dirs.store(&src, data.len() as u64, Some(&other), &|_| {}).err().expect("refused");
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        assert!(files_in(&reg.join(BLOBS)).is_empty());
        assert!(files_in(&reg.join(TMP)).is_empty());
    }

    #[test]
    fn symbolic_links_inside_the_registry_are_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let (reg, elsewhere) = (dir.path().join("reg"), dir.path().join("elsewhere"));
        std::fs::create_dir_all(reg.join(".sheaf")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, reg.join(BLOBS)).unwrap();
        let err = BlobDirs::open(&reg).err().expect("refused");
        assert!(err.to_string().contains("symbolic links"), "{err}");
        assert!(files_in(&elsewhere).is_empty());
    }
}
