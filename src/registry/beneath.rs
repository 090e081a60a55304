//! Reads of local files that cannot be redirected by symbolic links.
//!
//! A registry on local disk may be a copy or an untarred archive, so it can
//! hold symlinks that nobody meant to serve: a link under `.sheaf/blobs/`
//! pointing at `/etc/passwd` must not make the server read that file. Every
//! read of a local file therefore opens the path one component at a time
//! from its root with `O_NOFOLLOW` (`openat`), so a link anywhere on the way,
//! including one swapped in after a check, makes the open fail instead of
//! following it. Such a read fails with [`object_store::Error::PermissionDenied`]
//! (PERMISSION_DENIED on the wire). Writes, listings and deletes go to the
//! wrapped store unchanged.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A local-file store whose reads never follow symlinks below `root`.
#[derive(Debug)]
pub struct Beneath {
    inner: Arc<dyn ObjectStore>,
    /// The store's root with every symlink of its own path resolved.
    root: PathBuf,
}

impl Beneath {
    /// Wraps `inner`, a `LocalFileSystem` whose paths are relative to `root`
    /// (or absolute, with `root` = `/`).
    pub fn wrap(inner: Arc<dyn ObjectStore>, root: &std::path::Path) -> std::io::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(Beneath { inner, root: std::fs::canonicalize(root)? }))
    }
}

impl std::fmt::Display for Beneath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

fn open_error(location: &Path, e: std::io::Error) -> object_store::Error {
    let path = location.to_string();
    match e.raw_os_error() {
        // O_NOFOLLOW on a link to a file gives ELOOP.
        Some(libc::ELOOP) => link_refused(location),
        _ if e.kind() == std::io::ErrorKind::NotFound => object_store::Error::NotFound { path, source: Box::new(e) },
        _ => object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) },
    }
}

fn link_refused(location: &Path) -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: location.to_string(),
        source: "a symbolic link is on the way: links inside a registry are not followed".into(),
    }
}

/// The error for a failed open of component `name` under `root/walked`:
/// O_DIRECTORY|O_NOFOLLOW on a link gives ENOTDIR, as on a plain file, so
/// look at what is there to tell a refused link from a storage failure.
fn component_error(
    location: &Path,
    root: &std::path::Path,
    walked: &[String],
    e: std::io::Error,
) -> object_store::Error {
    if e.raw_os_error() == Some(libc::ENOTDIR) {
        let partial: PathBuf = walked.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        if std::fs::symlink_metadata(&partial).is_ok_and(|m| m.file_type().is_symlink()) {
            return link_refused(location);
        }
    }
    open_error(location, e)
}

/// Opens `root/relative` for reading, one component at a time, refusing
/// symbolic links at every step.
pub fn open_beneath(root: &std::path::Path, location: &Path) -> Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| open_error(location, std::io::Error::other(e)));
    let root_c = c(root.to_str().ok_or_else(|| open_error(location, std::io::Error::other("non-UTF-8 root")))?)?;
    // SAFETY: a valid NUL-terminated path; the descriptor is owned by the File.
    let fd = unsafe { libc::open(root_c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(open_error(location, std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let mut current = unsafe { File::from_raw_fd(fd) };
    let parts: Vec<String> = location.parts().map(|p| p.as_ref().to_owned()).collect();
    if parts.is_empty() {
        return Err(open_error(location, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    for (i, part) in parts.iter().enumerate() {
        if part == "." || part == ".." {
            return Err(object_store::Error::PermissionDenied {
                path: location.to_string(),
                source: "a . or .. segment".into(),
            });
        }
        let last = i + 1 == parts.len();
        // The last component without blocking: a FIFO in its place must not
        // hang the open (it is refused below as not a regular file).
        let flags = libc::O_RDONLY
            | libc::O_NOFOLLOW
            | libc::O_CLOEXEC
            | if last { libc::O_NONBLOCK } else { libc::O_DIRECTORY };
        let name = c(part)?;
        // SAFETY: `current` is an open directory; `name` is NUL-terminated.
        let fd = unsafe { libc::openat(current.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(component_error(location, root, &parts[..=i], std::io::Error::last_os_error()));
        }
        // SAFETY: as above.
        current = unsafe { File::from_raw_fd(fd) };
    }
    let meta = current.metadata().map_err(|e| open_error(location, e))?;
    if !meta.is_file() {
        return Err(object_store::Error::NotFound { path: location.to_string(), source: "not a regular file".into() });
    }
    Ok(current)
}

fn object_meta(file: &File, location: &Path) -> Result<ObjectMeta> {
    let m = file.metadata().map_err(|e| open_error(location, e))?;
    let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).unwrap_or_default();
    Ok(ObjectMeta {
        location: location.clone(),
        last_modified: chrono_from(mtime),
        size: m.len(),
        // The same shape as object_store's LocalFileSystem e-tags.
        e_tag: Some(format!("{:x}-{:x}-{:x}", m.ino(), mtime.as_micros(), m.len())),
        version: None,
    })
}

fn chrono_from(d: std::time::Duration) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(d.as_secs() as i64, d.subsec_nanos()).unwrap_or_default()
}

fn read_range(file: &mut File, location: &Path, range: Range<u64>) -> Result<Bytes> {
    let io = |e| open_error(location, e);
    file.seek(SeekFrom::Start(range.start)).map_err(io)?;
    let len = (range.end - range.start) as usize;
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf).map_err(io)?;
    if buf.len() != len {
        return Err(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: format!("{location}: wanted {len} bytes at {}, the file ended after {}", range.start, buf.len())
                .into(),
        });
    }
    Ok(buf.into())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) })?
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Beneath {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (root, location) = (self.root.clone(), location.clone());
        blocking(move || {
            let file = open_beneath(&root, &location)?;
            let meta = object_meta(&file, &location)?;
            options.check_preconditions(&meta)?;
            let range = match options.range {
                Some(r) => r.as_range(meta.size).map_err(|source| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(source),
                })?,
                None => 0..meta.size,
            };
            let path = root.join(location.as_ref());
            Ok(GetResult {
                payload: GetResultPayload::File(file, path),
                attributes: Attributes::default(),
                range,
                meta,
            })
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let (root, location, ranges) = (self.root.clone(), location.clone(), ranges.to_vec());
        blocking(move || {
            let mut file = open_beneath(&root, &location)?;
            ranges.into_iter().map(|r| read_range(&mut file, &location, r)).collect()
        })
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_links_on_the_way_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
        std::fs::write(dir.path().join("blobs/ok"), b"fine").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("blobs/link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("dirlink")).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let mut ok = open_beneath(&root, &Path::from("blobs/ok")).unwrap();
        let mut s = String::new();
        ok.read_to_string(&mut s).unwrap();
        assert_eq!(s, "fine");
        for bad in ["blobs/link", "dirlink/secret"] {
            let err = open_beneath(&root, &Path::from(bad)).unwrap_err();
            assert!(matches!(err, object_store::Error::PermissionDenied { .. }), "{bad}: {err}");
        }
        assert!(matches!(
            open_beneath(&root, &Path::from("blobs/none")).unwrap_err(),
            object_store::Error::NotFound { .. }
        ));
    }
}
