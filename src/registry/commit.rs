//! `commit`: local files added to a package as one new revision, on top of
//! its latest revision (the server's DoPut path; `push` replaces a whole
//! package from a folder instead).
//!
//! Order of writes, as for push: blobs, then the manifest, then `latest` by
//! compare-and-swap from the base revision, then the timestamp pointer. Until
//! `latest` moves nothing is visible, and a failure before leaves only
//! content-addressed blobs and an unreferenced manifest behind.

use super::push::{LocalFile, hash_all};
use super::{Error, PackageName, Registry, Result};
use crate::manifest::Manifest;
use crate::progress::NoProgress;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Which revision a commit builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// Whatever is latest when the commit lands: a concurrent writer's
    /// revision is built upon (the commit is re-applied to it).
    Latest,
    /// Exactly this revision: if `latest` has moved, the commit fails with
    /// [`Error::Moved`] (optimistic concurrency).
    Exactly(String),
}

/// A local file a commit adds.
#[derive(Debug, Clone)]
pub struct CommitFile {
    /// Its logical key.
    pub key: String,
    /// The local file.
    pub path: PathBuf,
    /// Its entry metadata (`{}` for none).
    pub meta: serde_json::Value,
    /// `(name, Arrow type)` of its columns, when it is a Parquet table: a
    /// file written into a folder table must agree with the folder's
    /// ([`Registry::folder_member_agrees`]).
    pub columns: Option<Vec<(String, String)>>,
}

impl CommitFile {
    /// `path` added as `key`, without entry metadata.
    pub fn new(key: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        CommitFile {
            key: key.into(),
            path: path.into(),
            meta: serde_json::Value::Object(Default::default()),
            columns: None,
        }
    }
}

/// The outcome of a commit.
#[derive(Debug, Clone, Serialize)]
pub struct CommitReport {
    /// `owner/name`.
    pub package: String,
    /// The new revision.
    pub top_hash: String,
    /// The revision it was built on (`None` for a new package).
    pub previous: Option<String>,
    /// Logical keys written.
    pub keys: Vec<String>,
    /// Bytes of the files written.
    pub bytes: u64,
}

/// Attempts when other writers (other processes: commits in one process take
/// turns) keep moving `latest` under a [`Base::Latest`] commit.
pub(super) const ATTEMPTS: u32 = 32;

/// Commits to one package from this process take turns, so concurrent
/// uploads to a package never race each other for `latest` (a writer in
/// another process still can: the compare-and-swap and retries cover it).
pub(super) fn turn(registry: &url::Url, pkg: &PackageName) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);
    let key = format!("{registry} {pkg}");
    TURNS.lock().expect("commit turns poisoned").entry(key).or_default().clone()
}

/// A pause before retrying a commit that lost the race for `latest`:
/// exponential from 5 ms, capped at 500 ms, with jitter so that writers do
/// not retry in lockstep.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = (5u64 << attempt.min(7)).min(500);
    let jitter =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() as u64)
            % base.max(1);
    Duration::from_millis(base / 2 + jitter / 2)
}

impl Registry {
    /// Adds (or replaces) `files` on top of `base`, as one new revision with
    /// `message`.
    pub async fn commit(
        &self,
        pkg: &PackageName,
        files: Vec<CommitFile>,
        base: &Base,
        message: Option<String>,
    ) -> Result<CommitReport> {
        let mut local = Vec::with_capacity(files.len());
        let mut metas = HashMap::new();
        let mut tables = Vec::new();
        for CommitFile { key, path, meta, columns } in files {
            crate::manifest::key::validate(&key)
                .map_err(|why| Error::invalid(format!("{key:?} cannot be a logical key: {why}")))?;
            let size = tokio::fs::metadata(&path).await.map_err(|e| Error::io(path.display().to_string(), e))?.len();
            metas.insert(key.clone(), meta);
            if let Some(columns) = columns {
                tables.push((key.clone(), columns));
            }
            local.push(LocalFile { path, key, size });
        }
        let hashed = hash_all(local, &NoProgress).await?;
        let mut entries = self.blob_entries(&hashed);
        for e in &mut entries {
            if let Some(meta) = metas.remove(&e.logical_key).filter(|m| m.as_object().is_none_or(|o| !o.is_empty())) {
                e.meta = meta;
            }
        }
        let keys = entries.iter().map(|e| e.logical_key.clone()).collect();
        let bytes = entries.iter().map(|e| e.size).sum();
        self.upload_missing(hashed, &NoProgress).await?;

        let turn = turn(self.url(), pkg);
        let _turn = turn.lock().await;
        for attempt in 1..=ATTEMPTS {
            let previous = match base {
                Base::Latest => self.read_pointer(&Self::latest_path(pkg)).await?,
                Base::Exactly(h) => Some(h.clone()),
            };
            let manifest = match &previous {
                Some(h) => {
                    let base = self.read_manifest(h).await?;
                    for (key, columns) in &tables {
                        self.folder_member_agrees(pkg, &base, key, columns, &[]).await?;
                    }
                    base.with_changes(entries.clone(), message.clone())
                }
                None => Manifest::build(message.clone(), None, entries.clone()),
            }
            .map_err(|source| Error::Manifest { top_hash: format!("being committed to {pkg}"), source })?;
            let top_hash = manifest.top_hash();
            self.write_manifest(manifest, &top_hash).await?;
            match self.advance_latest(pkg, previous.as_deref(), &top_hash).await {
                Ok(()) => return Ok(CommitReport { package: pkg.to_string(), top_hash, previous, keys, bytes }),
                Err(Error::Moved { .. }) if *base == Base::Latest && attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }
}
