//! The local cache of pinned reads, as the Python client writes it (layout
//! v1): listing, integrity checks, least-recently-used pruning and clearing,
//! for `sheaf cache`.
//!
//! Layout, shared with `clients/python/src/sheaf/cache.py`:
//! - root: `$SHEAF_CACHE_DIR`, else `sheaf-client` in the user's cache
//!   folder (`$XDG_CACHE_HOME` or `~/.cache`; macOS `~/Library/Caches`;
//!   Windows `%LOCALAPPDATA%`); everything of this layout is under `v1/`;
//! - entries: `v1/entries/<kk>/<key>.arrow`, `key` 64 lowercase hex digits
//!   (SHA-256 of what was read: a pinned ticket, or a pinned URI and row
//!   ranges), `kk` its first two; an entry is an Arrow IPC file followed by
//!   a 24-byte trailer `u64 ipc_length | u32 crc32 | u32 flags | b"SHEAFCv1"`
//!   (little endian; CRC-32 of the IPC bytes, zlib's polynomial);
//! - recency: an entry's modification time is its last use (readers touch
//!   it), so least recently used means oldest mtime (ties: by key);
//! - writers write `v1/tmp/<key>.<pid>.<random>.tmp` and rename it into
//!   place; a temporary file untouched for an hour is debris;
//! - evictions (prune, clear) hold an exclusive `flock` on `v1/lock`;
//!   readers never lock (removing a file another process has mapped is safe).
//!
//! A pinned revision never changes, so an entry is never stale: it is only
//! ever too old to keep, or damaged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The layout version this module reads (the folder under the root).
pub const LAYOUT: &str = "v1";
/// Size of the trailer after each entry's Arrow IPC bytes.
const TRAILER: u64 = 24;
const MAGIC: &[u8; 8] = b"SHEAFCv1";
/// Temporary files older than this are left over from a dead writer.
const STALE_TMP: Duration = Duration::from_secs(3600);
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// One cached read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheEntry {
    /// The entry's key (64 hex digits).
    pub key: String,
    /// Bytes on disk, trailer included.
    pub bytes: u64,
    /// When it was last read or written (its modification time).
    #[serde(serialize_with = "unix_seconds")]
    pub last_used: SystemTime,
    /// Where it is.
    pub path: PathBuf,
}

fn unix_seconds<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// What a prune removed and what is left.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pruned {
    /// Entries removed, least recently used first.
    pub removed: Vec<CacheEntry>,
    /// Bytes they held.
    pub bytes_freed: u64,
    /// Leftover temporary files removed.
    pub stale_temporary_files: u64,
    /// Entries left.
    pub entries_left: u64,
    /// Bytes left.
    pub bytes_left: u64,
}

/// A cache folder (which need not exist yet: then it is empty).
#[derive(Debug, Clone)]
pub struct CacheDir {
    root: PathBuf,
}

impl CacheDir {
    /// The cache at `dir`, or where the Python client puts it by default
    /// (`$SHEAF_CACHE_DIR`, else `sheaf-client` in the user's cache folder).
    pub fn locate(dir: Option<&Path>) -> io::Result<CacheDir> {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        // The platform's user cache folder, as the Python client picks it.
        let platform = if cfg!(target_os = "macos") {
            env("HOME").map(|h| h.join("Library").join("Caches"))
        } else if cfg!(windows) {
            env("LOCALAPPDATA")
        } else {
            env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
        };
        let root = match dir {
            Some(d) => d.to_path_buf(),
            None => env("SHEAF_CACHE_DIR").or_else(|| platform.map(|p| p.join("sheaf-client"))).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no cache folder: set SHEAF_CACHE_DIR or HOME")
            })?,
        };
        Ok(CacheDir { root })
    }

    /// The root folder (holding `v1/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layout(&self) -> PathBuf {
        self.root.join(LAYOUT)
    }

    /// Every entry, least recently used first.
    pub fn entries(&self) -> io::Result<Vec<CacheEntry>> {
        let mut out = Vec::new();
        let dir = self.layout().join("entries");
        let shards = match fs::read_dir(&dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for shard in shards {
            let shard = shard?;
            let name = shard.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !shard.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(shard.path())? {
                let file = file?;
                let file_name = file.file_name();
                let Some(key) = file_name.to_str().and_then(|n| n.strip_suffix(".arrow")) else { continue };
                if !is_key(key) || !key.starts_with(name.as_ref()) {
                    continue;
                }
                // An entry evicted by another process between listing and stat is simply gone.
                let Ok(meta) = file.metadata() else { continue };
                out.push(CacheEntry {
                    key: key.to_owned(),
                    bytes: meta.len(),
                    last_used: meta.modified()?,
                    path: file.path(),
                });
            }
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then_with(|| a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Removes least recently used entries until at most `max_bytes` remain,
    /// and temporary files left by dead writers; holds the cache's lock.
    pub fn prune(&self, max_bytes: u64) -> io::Result<Pruned> {
        let _lock = self.lock()?;
        let mut pruned = Pruned { stale_temporary_files: self.remove_stale_tmp()?, ..Pruned::default() };
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut left = entries.len() as u64;
        for entry in entries {
            if total <= max_bytes {
                break;
            }
            match fs::remove_file(&entry.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("removing {}: {e}", entry.path.display()))),
            }
            total -= entry.bytes;
            left -= 1;
            pruned.bytes_freed += entry.bytes;
            pruned.removed.push(entry);
        }
        pruned.entries_left = left;
        pruned.bytes_left = total;
        Ok(pruned)
    }

    /// Removes every entry.
    pub fn clear(&self) -> io::Result<Pruned> {
        self.prune(0)
    }

    /// The exclusive lock evictions hold (created when missing). Only when
    /// the cache exists: an absent cache has nothing to evict.
    fn lock(&self) -> io::Result<Option<File>> {
        let dir = self.layout();
        if !dir.is_dir() {
            return Ok(None);
        }
        let file = OpenOptions::new().create(true).append(true).open(dir.join("lock"))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a file descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Some(file))
    }

    fn remove_stale_tmp(&self) -> io::Result<u64> {
        let dir = self.layout().join("tmp");
        let Ok(files) = fs::read_dir(&dir) else { return Ok(0) };
        let now = SystemTime::now();
        let mut removed = 0;
        for file in files.flatten() {
            let stale = file
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
            if stale && file.file_name().to_string_lossy().ends_with(".tmp") && fs::remove_file(file.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks an entry as the Python client does before trusting it: its size
/// against the trailer, the trailer's magic, the Arrow IPC file's magic at
/// both ends, and the CRC-32 of the IPC bytes. `Err` says what is wrong.
pub fn check_entry(path: &Path) -> io::Result<Result<(), String>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size < TRAILER + 12 {
        return Ok(Err(format!("{size} bytes: too short for an entry (truncated)")));
    }
    let mut trailer = [0u8; TRAILER as usize];
    file.seek(SeekFrom::Start(size - TRAILER))?;
    file.read_exact(&mut trailer)?;
    if &trailer[16..] != MAGIC {
        return Ok(Err("no cache trailer (truncated or not an entry)".into()));
    }
    let ipc_length = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
    if ipc_length + TRAILER != size {
        return Ok(Err(format!("the trailer says {ipc_length} IPC bytes but the file holds {}", size - TRAILER)));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut digest = CRC32.digest();
    let (mut head, mut tail) = (Vec::<u8>::with_capacity(6), [0u8; 6]);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = ipc_length;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(Err("the file ended early".into()));
        }
        digest.update(&buf[..n]);
        if head.len() < 6 {
            head.extend(buf[..n].iter().take(6 - head.len()));
        }
        // The last six IPC bytes (the file magic), across read boundaries.
        let chunk = &buf[..n];
        if n >= 6 {
            tail.copy_from_slice(&chunk[n - 6..]);
        } else {
            tail.rotate_left(n);
            tail[6 - n..].copy_from_slice(chunk);
        }
        left -= n as u64;
    }
    if head != b"ARROW1" || &tail != b"ARROW1" {
        return Ok(Err("not an Arrow IPC file".into()));
    }
    if digest.finalize() != crc {
        return Ok(Err("CRC-32 mismatch (damaged)".into()));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dir: &Path, key: &str, body: &[u8], age: u64) -> PathBuf {
        let shard = dir.join("v1/entries").join(&key[..2]);
        fs::create_dir_all(&shard).unwrap();
        let path = shard.join(format!("{key}.arrow"));
        let mut bytes = body.to_vec();
        bytes.extend((body.len() as u64).to_le_bytes());
        bytes.extend(CRC32.checksum(body).to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(MAGIC);
        fs::write(&path, bytes).unwrap();
        let when = SystemTime::now() - Duration::from_secs(age);
        File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
        path
    }

    #[test]
    fn lists_checks_and_prunes_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::locate(Some(dir.path())).unwrap();
        assert!(cache.entries().unwrap().is_empty());
        assert_eq!(cache.prune(0).unwrap().entries_left, 0);
        let body = b"ARROW1 some ipc bytes ARROW1";
        let old = entry(dir.path(), &"a".repeat(64), body, 300);
        let mid = entry(dir.path(), &"b".repeat(64), body, 200);
        let new = entry(dir.path(), &"c".repeat(64), body, 100);
        fs::write(dir.path().join("v1/entries/aa/not-a-key.arrow"), b"x").unwrap();
        let listed: Vec<PathBuf> = cache.entries().unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(listed, [old.clone(), mid.clone(), new.clone()]);
        assert_eq!(check_entry(&old).unwrap(), Ok(()));

        let size = fs::metadata(&old).unwrap().len();
        let pruned = cache.prune(2 * size).unwrap();
        assert_eq!(pruned.removed.len(), 1);
        assert_eq!(pruned.removed[0].path, old);
        assert_eq!((pruned.entries_left, pruned.bytes_left), (2, 2 * size));
        assert!(!old.exists() && mid.exists());
        assert_eq!(cache.clear().unwrap().bytes_left, 0);
        assert!(!new.exists());
    }

    #[test]
    fn damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(dir.path(), &"d".repeat(64), b"ARROW1 body bytes ARROW1", 0);
        let mut bytes = fs::read(&path).unwrap();
        bytes[8] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(check_entry(&path).unwrap().unwrap_err().contains("CRC-32"));
        fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        assert!(check_entry(&path).unwrap().unwrap_err().contains("trailer"));
    }
}
