//! Copies entries out of a registry on local disk with plain blocking calls:
//! open the data (never through a symbolic link inside the registry), read,
//! hash and write it in one pass, on a thread of the install's pool.
//!
//! Through the object store, each file of an install took half a dozen hops
//! to blocking threads (open, one per 1 MiB read, one per write, flush):
//! 78 us per 1 KiB file on tmpfs, where `cp -r` takes 16 us. Here a file is
//! one function call on one thread.
//!
//! The data is found as [`Registry::locate`](super::Registry::locate) finds
//! it: a physical key inside the registry is read there; otherwise the
//! registry's own blob with the entry's hash, when it has one. Anything else
//! (data elsewhere, subject to the read policy) is left to the object-store
//! path.

use super::{BLOBS, Error, Result};
use crate::manifest::Entry;
use object_store::path::Path;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path as FsPath, PathBuf};

/// How much of a file is read per step.
const STEP: usize = 1 << 20;

/// A registry on local disk, as a source of entries' data.
pub(super) struct LocalSource {
    root: PathBuf,
    /// The registry's URL with a trailing slash: physical keys starting with
    /// it point inside the registry.
    inside: String,
    /// `.sheaf/blobs`, opened without following links; `None` when the
    /// registry has none.
    blobs: Option<File>,
}

impl LocalSource {
    /// The registry at `root`, whose URL is `url`.
    pub(super) fn open(root: &FsPath, url: &url::Url) -> Self {
        let blobs = open_folder(root, BLOBS).ok();
        LocalSource { root: root.to_path_buf(), inside: format!("{url}/"), blobs }
    }

    /// Opens the entry's data, with the URL of what was opened (for errors),
    /// or `None` when it is not in this registry.
    pub(super) fn open_data(&self, entry: &Entry) -> Result<Option<(File, String)>> {
        let physical_key = entry
            .physical_keys
            .first()
            .ok_or_else(|| Error::invalid(format!("entry {} has no physical key", entry.logical_key)))?;
        if let Some(rel) = physical_key.strip_prefix(&self.inside) {
            let path =
                Path::from_url_path(rel).map_err(|e| Error::invalid(format!("physical key {physical_key}: {e}")))?;
            return super::beneath::open_beneath(&self.root, &path)
                .map(|file| Some((file, physical_key.clone())))
                .map_err(|e| Error::storage(format!("data of {} at {physical_key}", entry.logical_key), e));
        }
        let (Some(blobs), Some(hex)) = (&self.blobs, entry.hash.blob_hex()) else { return Ok(None) };
        let name = CString::new(hex.clone()).map_err(|e| Error::invalid(e.to_string()))?;
        // Not blocking on a FIFO planted under a blob's name (reads of a
        // regular file ignore the flag).
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: `blobs` is an open directory; `name` is NUL-terminated.
        let fd = unsafe { libc::openat(blobs.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            // No blob with this hash: the data is elsewhere.
            return Ok(None);
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        // Anything but a regular file is no blob (as for the object store).
        let url = format!("{}{BLOBS}/{hex}", self.inside);
        Ok(file.metadata().is_ok_and(|m| m.is_file()).then_some((file, url)))
    }
}

/// Copies the entry's data from `src` (opened by [`LocalSource::open_data`]
/// at `from`) into `out` (named `out_name` in errors), checking it against
/// the entry's size and hash; `advance` hears of every step.
pub(super) fn copy(
    mut src: File,
    from: &str,
    entry: &Entry,
    out: &mut File,
    out_name: &FsPath,
    advance: &dyn Fn(u64),
) -> Result<()> {
    let read_err = |e| Error::io(format!("reading data of {} at {from}", entry.logical_key), e);
    let mut hasher = super::hasher_for(entry)?;
    let size = src.metadata().map_err(read_err)?.len();
    let expected = || format!("{} bytes", entry.size);
    if size != entry.size {
        return Err(super::install::mismatch(entry, from, expected(), format!("{size} bytes")));
    }
    BUFFER.with_borrow_mut(|buf| {
        if buf.len() < STEP.min(entry.size as usize) {
            buf.resize(STEP.min(entry.size as usize), 0);
        }
        let mut left = entry.size as usize;
        while left > 0 {
            let n = left.min(buf.len());
            match src.read_exact(&mut buf[..n]) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(super::install::mismatch(
                        entry,
                        from,
                        expected(),
                        "fewer bytes (it shrank)".to_owned(),
                    ));
                }
                Err(e) => return Err(read_err(e)),
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(out_name.display().to_string(), e))?;
            advance(n as u64);
            left -= n;
        }
        Ok(())
    })?;
    super::install::check(entry, from, hasher)
}

/// Opens the folder `rel` below `root` without following a symbolic link
/// at any component.
fn open_folder(root: &FsPath, rel: &str) -> io::Result<File> {
    let mut current = File::open(root)?;
    for part in rel.split('/') {
        let name = CString::new(part).map_err(io::Error::other)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `current` is an open directory; `name` is NUL-terminated.
        let fd = unsafe { libc::openat(current.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        current = unsafe { File::from_raw_fd(fd) };
    }
    Ok(current)
}

thread_local! {
    /// Each pool thread's read buffer, reused from file to file.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
