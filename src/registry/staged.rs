//! Small objects written atomically, and objects written before their name
//! is known (a manifest is named by its top hash, known once its last line
//! is written).
//!
//! On local disk the bytes go to a staging file under `.sheaf/tmp`, which is
//! linked (create) or renamed (overwrite) into place once complete and
//! synced: object_store would stage them beside the target, and a kill could
//! then leave `latest#1` in a folder whose every file quilt3 lists. Elsewhere
//! a small object is put from memory, and a staged one is written to a
//! temporary file of this machine first and uploaded from it (in parts when
//! large), so no object is held in memory whole.

use super::push::{PART_SIZE, SINGLE_PUT_MAX};
use super::{Registry, Result, TMP};
use crate::manifest::Manifest;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload, WriteMultipart};
use std::io::{BufWriter, Read, Write};
use std::path::{Path as FsPath, PathBuf};
use tempfile::NamedTempFile;

/// An object being written: a file that [`Registry::publish`] puts in place.
/// Dropped unpublished, the file is removed.
pub(super) struct Staged {
    out: BufWriter<NamedTempFile>,
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl Registry {
    /// Writes a manifest under its top hash unless it is already there.
    pub(super) async fn write_manifest(&self, manifest: Manifest, top_hash: &str) -> Result<()> {
        let write = move |out: &mut dyn std::io::Write| manifest.write_jsonl(out);
        let written = self.put_written(&Self::manifest_path(top_hash), write, PutMode::Create).await;
        self.manifest_written(written, top_hash)
    }

    /// A manifest written a line at a time into `staged`, published under
    /// its top hash unless it is already there.
    pub(super) async fn publish_manifest(&self, staged: Staged, top_hash: &str) -> Result<()> {
        let written = self.publish(staged, &Self::manifest_path(top_hash)).await;
        self.manifest_written(written, top_hash)
    }

    fn manifest_written(&self, written: Result<(), object_store::Error>, top_hash: &str) -> Result<()> {
        match written {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(super::Error::storage(format!("writing manifest {top_hash} to {}", self.url()), e)),
        }
    }

    /// Writes a small object (manifest, pointer, tag) atomically.
    pub(crate) async fn put_small(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<(), object_store::Error> {
        self.put_written(path, move |out: &mut dyn std::io::Write| out.write_all(&bytes), mode).await
    }

    /// [`Registry::put_small`] of the bytes `write` writes: on local disk
    /// straight into the staging file (on a blocking thread), elsewhere
    /// into memory first.
    async fn put_written(
        &self,
        path: &Path,
        write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static,
        mode: PutMode,
    ) -> Result<(), object_store::Error> {
        let Some(root) = self.location.local_root.clone() else {
            let mut bytes = Vec::new();
            write(&mut bytes).map_err(|e| object_store::Error::Generic { store: "memory", source: Box::new(e) })?;
            return self.store.put_opts(path, PutPayload::from(bytes), mode.into()).await.map(|_| ());
        };
        let target = local_path(&root, path);
        let create = matches!(mode, PutMode::Create);
        let key = path.to_string();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut staged = stage_in(&root)?;
            write(&mut staged)?;
            place(staged, &target, create)
        })
        .await
        .expect("write task panicked")
        .map_err(|e| local_error(e, key))
    }

    /// A new staging file for an object whose name is not known yet.
    pub(super) fn stage(&self) -> std::io::Result<Staged> {
        match &self.location.local_root {
            Some(root) => stage_in(root),
            None => Ok(Staged { out: BufWriter::with_capacity(1 << 20, NamedTempFile::new()?) }),
        }
    }

    /// Puts `staged` at `path`, create-only: an object already there is
    /// kept and [`object_store::Error::AlreadyExists`] returned.
    pub(super) async fn publish(&self, staged: Staged, path: &Path) -> Result<(), object_store::Error> {
        let key = path.to_string();
        if let Some(root) = &self.location.local_root {
            let target = local_path(root, path);
            return tokio::task::spawn_blocking(move || place(staged, &target, true))
                .await
                .expect("write task panicked")
                .map_err(|e| local_error(e, key));
        }
        let file = staged.out.into_inner().map_err(|e| local_error(e.into_error(), key.clone()))?;
        let size = file.as_file().metadata().map_err(|e| local_error(e, key.clone()))?.len();
        let mut reader = file.reopen().map_err(|e| local_error(e, key.clone()))?;
        if size <= SINGLE_PUT_MAX {
            let mut bytes = Vec::with_capacity(size as usize);
            reader.read_to_end(&mut bytes).map_err(|e| local_error(e, key.clone()))?;
            return self.store.put_opts(path, PutPayload::from(bytes), PutMode::Create.into()).await.map(|_| ());
        }
        // Multipart uploads cannot be create-only; the content is named by
        // its hash, so writing it again changes nothing.
        let mut writer = WriteMultipart::new_with_chunk_size(self.store.put_multipart(path).await?, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(local_error(e, key));
                }
            };
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map(|_| ())
    }
}

fn local_path(root: &FsPath, path: &Path) -> PathBuf {
    path.parts().fold(root.to_path_buf(), |p, part| p.join(part.as_ref()))
}

/// A staging file under the local registry `root`'s `.sheaf/tmp`.
fn stage_in(root: &FsPath) -> std::io::Result<Staged> {
    let staging = root.join(TMP);
    std::fs::create_dir_all(&staging)?;
    let file = tempfile::Builder::new().prefix(&format!("{}-", std::process::id())).tempfile_in(&staging)?;
    Ok(Staged { out: BufWriter::with_capacity(1 << 20, file) })
}

/// Syncs `staged` and links (`create`) or renames it to `target`.
fn place(staged: Staged, target: &FsPath, create: bool) -> std::io::Result<()> {
    let file = staged.out.into_inner().map_err(|e| e.into_error())?;
    file.as_file().sync_all()?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if create {
        // The staging file is removed when `file` drops.
        std::fs::hard_link(file.path(), target)
    } else {
        file.persist(target).map(|_| ()).map_err(|e| e.error)
    }
}

fn local_error(e: std::io::Error, key: String) -> object_store::Error {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => object_store::Error::AlreadyExists { path: key, source: Box::new(e) },
        _ => object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(e) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_staged_object_is_uploaded_in_parts_and_disk_publishes_create_only() {
        let remote = Registry::open(&format!("memory://staged-{}", std::process::id())).unwrap();
        let data: Vec<u8> = (0..SINGLE_PUT_MAX as usize + 5_000_000).map(|i| (i % 251) as u8).collect();
        let mut staged = remote.stage().unwrap();
        staged.write_all(&data).unwrap();
        let path = Path::from("x/big");
        remote.publish(staged, &path).await.unwrap();
        assert_eq!(remote.store.get(&path).await.unwrap().bytes().await.unwrap(), data);

        let dir = tempfile::tempdir().unwrap();
        let local = Registry::open(dir.path().to_str().unwrap()).unwrap();
        let path = Path::from("a/b");
        let mut first = local.stage().unwrap();
        first.write_all(b"one").unwrap();
        local.publish(first, &path).await.unwrap();
        let mut second = local.stage().unwrap();
        second.write_all(b"two").unwrap();
        let again = local.publish(second, &path).await;
        assert!(matches!(again, Err(object_store::Error::AlreadyExists { .. })), "{again:?}");
        assert_eq!(std::fs::read(dir.path().join("a/b")).unwrap(), b"one");
        let unpublished = local.stage().unwrap();
        drop(unpublished);
        assert!(std::fs::read_dir(dir.path().join(TMP)).unwrap().next().is_none(), "staging files removed");
    }
}
