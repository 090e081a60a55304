//! Named pointers: quilt3's `latest` and timestamp pointers, Sheaf's tags, and
//! the operations over them (list, log, tag, delete).
//!
//! `latest` only ever moves by compare-and-swap: a conditional put on stores
//! that support it (S3, memory) and an OS file lock around a read and an
//! atomic rename on local disk, where object_store has no conditional update.

use super::{Error, IO_CONCURRENCY, LOCKS, NAMED, PackageName, Registry, Result, TAGS, names::validate_tag};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, UpdateVersion};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A package and its latest revision.
#[derive(Debug, Clone, Serialize)]
pub struct PackageSummary {
    /// `owner/name`.
    pub name: String,
    /// Top hash `latest` points at, if the pointer exists.
    pub latest: Option<String>,
}

/// One pushed revision of a package.
#[derive(Debug, Clone, Serialize)]
pub struct RevisionInfo {
    /// The revision's top hash.
    pub top_hash: String,
    /// Unix seconds of the push (the timestamp pointer's name).
    pub timestamp: u64,
    /// Commit message, if any.
    pub message: Option<String>,
    /// Tags pointing at this revision (including `latest`).
    pub tags: Vec<String>,
    /// Its data was derived from other revisions (its user metadata records
    /// lineage inputs: `sheaf lineage` shows them).
    pub derived: bool,
}

/// What `delete` removed.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteReport {
    /// Pointers and tags removed.
    pub removed_pointers: usize,
    /// Where `latest` points now (`None` if the package is gone).
    pub latest: Option<String>,
}

/// The pointer files of one folder (timestamp pointers or tags): the top
/// hashes they name by key, and the damaged ones, which name no revision.
struct Listed<K> {
    named: Vec<(K, String)>,
    damaged: Vec<Damaged>,
}

/// A pointer file that holds no top hash on two reads.
#[derive(Debug, Clone)]
struct Damaged {
    path: Path,
    text: String,
}

impl Damaged {
    fn describe(&self) -> String {
        format!("pointer {} holds {:?}, not a top hash", self.path, super::names::excerpt(&self.text))
    }
}

fn is_top_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Unix seconds now (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A held lock on a package's pointers (local registries only); released on drop.
struct PointerLock(Option<std::fs::File>);

impl Registry {
    /// Reads a pointer file; `None` when it does not exist.
    pub(crate) async fn read_pointer(&self, path: &Path) -> Result<Option<String>> {
        Ok(self.read_pointer_versioned(path).await?.map(|(h, _)| h))
    }

    async fn read_pointer_versioned(&self, path: &Path) -> Result<Option<(String, UpdateVersion)>> {
        let Some((hash, version)) = self.read_pointer_text(path).await? else { return Ok(None) };
        if !is_top_hash(&hash) {
            return Err(Error::Integrity {
                what: format!("pointer {path} in {}", self.url()),
                expected: "a 64-character top hash".into(),
                actual: format!("{hash:?}"),
            });
        }
        Ok(Some((hash, version)))
    }

    /// A pointer's text (trimmed, lowercased), whatever it holds, and its
    /// version; `None` when there is no pointer.
    async fn read_pointer_text(&self, path: &Path) -> Result<Option<(String, UpdateVersion)>> {
        let result = match self.store().get(path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                // On local disk a folder in the pointer's place reads as
                // missing: say what is wrong instead of acting as if the
                // pointer did not exist (a push would write its revision and
                // then fail to move it; a delete would leave the folder).
                let folder = self.location.local_root.as_ref().map(|root| root.join(path.as_ref()));
                if folder.is_some_and(|f| f.is_dir()) {
                    return Err(Error::Integrity {
                        what: format!("pointer {path} in {}", self.url()),
                        expected: "a file holding a 64-character top hash".into(),
                        actual: "a folder (move it away)".into(),
                    });
                }
                return Ok(None);
            }
            Err(e) => return Err(Error::storage(format!("pointer {path} in {}", self.url()), e)),
        };
        let version = UpdateVersion { e_tag: result.meta.e_tag.clone(), version: result.meta.version.clone() };
        let bytes = result.bytes().await.map_err(|e| Error::storage(format!("pointer {path}"), e))?;
        Ok(Some((String::from_utf8_lossy(&bytes).trim().to_ascii_lowercase(), version)))
    }

    /// `latest`, or `None` when there is none or it is damaged (not a top
    /// hash): for a push, which records the package's whole content whatever
    /// `latest` held, and replaces a damaged one ([`Registry::swap_latest`]).
    pub(crate) async fn latest_unless_damaged(&self, pkg: &PackageName) -> Result<Option<String>> {
        let text = self.read_pointer_text(&Self::latest_path(pkg)).await?;
        Ok(text.map(|(hash, _)| hash).filter(|hash| is_top_hash(hash)))
    }

    /// Every top hash the package's pointers and tags name (damaged ones
    /// name none and are skipped).
    pub(crate) async fn pointed_hashes(&self, pkg: &PackageName) -> Result<Vec<String>> {
        let mut hashes: Vec<String> = self.timestamp_pointers(pkg).await?.named.into_iter().map(|(_, h)| h).collect();
        hashes.extend(self.latest_unless_damaged(pkg).await?);
        hashes.extend(self.listed_tags(pkg).await?.named.into_iter().map(|(_, h)| h));
        Ok(hashes)
    }

    /// `(unix_seconds, top_hash)` for every timestamp pointer, newest first,
    /// and the damaged ones.
    async fn timestamp_pointers(&self, pkg: &PackageName) -> Result<Listed<u64>> {
        let list = self
            .store()
            .list_with_delimiter(Some(&Self::named_dir(pkg)))
            .await
            .map_err(|e| Error::storage(format!("listing revisions of {pkg}"), e))?;
        let stamps = list
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().and_then(|n| n.parse::<u64>().ok()).map(|t| (t, o.location.clone())));
        let mut listed = self.read_listed(pkg, stamps).await?;
        listed.named.sort_by(|a, b| b.cmp(a));
        Ok(listed)
    }

    /// Reads pointer files. One that holds no top hash is read once more (a
    /// read cut short is no damage) and, still not one, counted as damaged:
    /// it names no revision, so it hides none of the others from `log`,
    /// resolution or `delete`.
    async fn read_listed<K>(&self, pkg: &PackageName, paths: impl Iterator<Item = (K, Path)>) -> Result<Listed<K>> {
        let read: Vec<(K, Path, Option<String>)> = stream::iter(paths)
            .map(|(key, path)| async move {
                let mut text = self.read_pointer_text(&path).await?.map(|(t, _)| t);
                if text.as_deref().is_some_and(|t| !is_top_hash(t)) {
                    text = self.read_pointer_text(&path).await?.map(|(t, _)| t);
                }
                Ok::<_, Error>((key, path, text))
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        let mut listed = Listed { named: Vec::new(), damaged: Vec::new() };
        for (key, path, text) in read {
            match text {
                None => {}
                Some(hash) if is_top_hash(&hash) => listed.named.push((key, hash)),
                Some(text) => {
                    let damaged = Damaged { path, text };
                    tracing::warn!(package = %pkg, problem = %damaged.describe(), "damaged pointer skipped");
                    listed.damaged.push(damaged);
                }
            }
        }
        Ok(listed)
    }

    /// All packages that have pointers, with their latest revision, sorted.
    pub async fn list_packages(&self) -> Result<Vec<PackageSummary>> {
        let root = Path::from(NAMED);
        let owners = self
            .store()
            .list_with_delimiter(Some(&root))
            .await
            .map_err(|e| Error::storage(format!("listing packages in {}", self.url()), e))?;
        let mut names = Vec::new();
        for owner in owners.common_prefixes {
            let packages = self
                .store()
                .list_with_delimiter(Some(&owner))
                .await
                .map_err(|e| Error::storage(format!("listing packages under {owner}"), e))?;
            for p in packages.common_prefixes {
                let (Some(o), Some(n)) = (owner.filename(), p.filename()) else { continue };
                if let Ok(name) = format!("{o}/{n}").parse::<PackageName>() {
                    names.push(name);
                }
            }
        }
        names.sort();
        stream::iter(names)
            .map(|name| async move {
                // One package's damaged or refused `latest` (a symbolic
                // link) does not hide the others: it is listed without a
                // revision (browse names the fault).
                let latest = match self.read_pointer(&Self::latest_path(&name)).await {
                    Err(
                        e @ (Error::Integrity { .. }
                        | Error::Storage { source: object_store::Error::PermissionDenied { .. }, .. }),
                    ) => {
                        tracing::warn!(package = %name, error = %e, "unreadable latest pointer");
                        None
                    }
                    other => other?,
                };
                Ok(PackageSummary { name: name.to_string(), latest })
            })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The package's revisions, newest first, with messages and tags
    /// ([`Registry::revision_log`] without its problems, which are logged).
    pub async fn revisions(&self, pkg: &PackageName) -> Result<Vec<RevisionInfo>> {
        let (revisions, problems) = self.revision_log(pkg).await?;
        for problem in problems {
            tracing::warn!(package = %pkg, %problem, "revision left out of the log");
        }
        Ok(revisions)
    }

    /// The package's revisions, newest first, with messages and tags, and
    /// what is wrong with its pointers: a damaged pointer or tag, one naming
    /// a manifest that is gone, a `latest` that no timestamp pointer
    /// records. What is intact is listed whatever the others hold.
    pub async fn revision_log(&self, pkg: &PackageName) -> Result<(Vec<RevisionInfo>, Vec<String>)> {
        let stamps = self.timestamp_pointers(pkg).await?;
        // A folder in `latest`'s place is a problem to report, not a failure.
        let (latest_text, folder) = match self.read_pointer_text(&Self::latest_path(pkg)).await {
            Ok(text) => (text.map(|(t, _)| t), None),
            Err(e @ Error::Integrity { .. }) => (None, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let latest = latest_text.clone().filter(|t| is_top_hash(t));
        if stamps.named.is_empty() && stamps.damaged.is_empty() && latest_text.is_none() && folder.is_none() {
            return Err(self.package_not_found(pkg));
        }
        let tags = self.listed_tags(pkg).await?;
        let mut problems: Vec<String> = stamps.damaged.iter().chain(&tags.damaged).map(Damaged::describe).collect();
        problems.extend(folder);
        if let Some(text) = latest_text.as_deref().filter(|t| !is_top_hash(t)) {
            problems.push(format!("latest holds {:?}, not a top hash", super::names::excerpt(text)));
        }
        if let Some(l) = latest.as_deref().filter(|l| !stamps.named.iter().any(|(_, h)| h == l)) {
            problems.push(format!("latest names {l}, which no timestamp pointer records"));
        }
        let read: Vec<std::result::Result<RevisionInfo, String>> = stream::iter(stamps.named)
            .map(|(timestamp, top_hash)| {
                let mut names: Vec<String> =
                    tags.named.iter().filter(|(_, h)| *h == top_hash).map(|(t, _)| t.clone()).collect();
                if latest.as_deref() == Some(top_hash.as_str()) {
                    names.insert(0, "latest".into());
                }
                async move {
                    let header = match self.read_header(&top_hash).await {
                        Ok(header) => header,
                        Err(Error::NotFound(_)) => {
                            let path = Self::named_dir(pkg).join(timestamp.to_string());
                            return Ok(Err(format!("pointer {path} names manifest {top_hash}, which is gone")));
                        }
                        Err(e) => return Err(e),
                    };
                    let message = header.get("message").and_then(|m| m.as_str()).map(str::to_owned);
                    let derived = super::lineage::inputs_of(header.get("user_meta")).next().is_some();
                    Ok(Ok(RevisionInfo { top_hash, timestamp, message, tags: names, derived }))
                }
            })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        let mut revisions = Vec::new();
        for r in read {
            match r {
                Ok(info) => revisions.push(info),
                Err(problem) => problems.push(problem),
            }
        }
        Ok((revisions, problems))
    }

    /// The package's tags, `(tag, top_hash)`, sorted by tag (damaged ones
    /// are skipped; `revision_log` names them).
    pub async fn tags(&self, pkg: &PackageName) -> Result<Vec<(String, String)>> {
        Ok(self.listed_tags(pkg).await?.named)
    }

    /// The package's tags, sorted by tag, and the damaged ones.
    async fn listed_tags(&self, pkg: &PackageName) -> Result<Listed<String>> {
        let list = self
            .store()
            .list_with_delimiter(Some(&Self::tags_dir(pkg)))
            .await
            .map_err(|e| Error::storage(format!("listing tags of {pkg}"), e))?;
        let tags = list.objects.into_iter().map(|o| (o.location.filename().unwrap_or_default().to_owned(), o.location));
        let mut listed = self.read_listed(pkg, tags).await?;
        listed.named.sort();
        Ok(listed)
    }

    /// Points `tag` at `top_hash` (which must exist). An existing tag pointing
    /// elsewhere is a conflict unless `force`.
    pub async fn tag(&self, pkg: &PackageName, top_hash: &str, tag: &str, force: bool) -> Result<()> {
        validate_tag(tag)?;
        self.store()
            .head(&Self::manifest_path(top_hash))
            .await
            .map_err(|e| Error::storage(format!("revision {top_hash} of {pkg}"), e))?;
        let path = Self::tags_dir(pkg).join(tag);
        let mode = if force { PutMode::Overwrite } else { PutMode::Create };
        match self.put_small(&path, top_hash.as_bytes().to_vec(), mode).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => match self.read_pointer(&path).await? {
                Some(existing) if existing == top_hash => Ok(()),
                existing => Err(Error::Conflict(format!(
                    "tag {tag} of {pkg} already points at {}; pass --force to move it",
                    existing.unwrap_or_default()
                ))),
            },
            Err(e) => Err(Error::storage(format!("writing tag {tag} of {pkg}"), e)),
        }
    }

    /// Records a pushed revision: a create-only timestamp pointer (the next
    /// free second if other revisions hold this one), then `latest` by CAS.
    /// Returns where `latest` pointed before.
    pub(crate) async fn record_revision(&self, pkg: &PackageName, top_hash: &str) -> Result<Option<String>> {
        self.write_timestamp_pointer(pkg, top_hash).await?;
        self.swap_latest(pkg, |_| Some(top_hash.to_owned())).await
    }

    /// Moves `latest` from `expected` (`None`: the package has no revision
    /// yet) to `top_hash` by compare-and-swap, then records the timestamp
    /// pointer. Fails with [`Error::Moved`] if `latest` is elsewhere.
    pub(crate) async fn advance_latest(&self, pkg: &PackageName, expected: Option<&str>, top_hash: &str) -> Result<()> {
        let previous = self
            .swap_latest(pkg, |current| {
                if current == expected || current == Some(top_hash) {
                    Some(top_hash.to_owned())
                } else {
                    // Returning the current value leaves it and writes nothing.
                    current.map(str::to_owned)
                }
            })
            .await?;
        if previous.as_deref() != expected && previous.as_deref() != Some(top_hash) {
            return Err(Error::Moved {
                package: pkg.to_string(),
                expected: expected.unwrap_or("(no revision)").to_owned(),
                actual: previous.unwrap_or_else(|| "(no revision)".to_owned()),
            });
        }
        self.write_timestamp_pointer(pkg, top_hash).await
    }

    /// Writes a create-only timestamp pointer to `top_hash`, named by the
    /// current second, or the next free one when other revisions hold it (a
    /// burst of pushes takes consecutive seconds, so `log` keeps their
    /// order). A pointer to the same revision found where the run of taken
    /// seconds ends is this revision's record already (a retried push);
    /// found earlier in the run, it is an older push of the same content
    /// (a push back to an earlier revision) and a new pointer is written.
    async fn write_timestamp_pointer(&self, pkg: &PackageName, top_hash: &str) -> Result<()> {
        let dir = Self::named_dir(pkg);
        let mut secs = now_secs();
        loop {
            let path = dir.clone().join(secs.to_string());
            match self.put_small(&path, top_hash.as_bytes().to_vec(), PutMode::Create).await {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    secs += 1;
                    // Text, not a checked read: a damaged pointer holding
                    // this second is no revision's record, only skipped.
                    let taken = self.read_pointer_text(&path).await?.map(|(text, _)| text);
                    if taken.as_deref() == Some(top_hash)
                        && self.read_pointer_text(&dir.clone().join(secs.to_string())).await?.is_none()
                    {
                        return Ok(());
                    }
                }
                Err(e) => return Err(Error::storage(format!("writing revision pointer of {pkg}"), e)),
            }
        }
    }

    /// Moves (or removes, when `next` returns `None`) the `latest` pointer by
    /// compare-and-swap; `next` gets the current value and may be called again
    /// if another writer got there first. Returns the value replaced.
    async fn swap_latest(
        &self,
        pkg: &PackageName,
        next: impl Fn(Option<&str>) -> Option<String>,
    ) -> Result<Option<String>> {
        let path = Self::latest_path(pkg);
        let _lock = self.lock_pointers(pkg).await?;
        let conditional = _lock.0.is_none();
        for attempt in 0..64u32 {
            let (old, current) = self.latest_to_swap(pkg, &path).await?;
            let Some(new) = next(old.as_deref()) else {
                if current.is_some() {
                    self.store()
                        .delete(&path)
                        .await
                        .map_err(|e| Error::storage(format!("removing latest of {pkg}"), e))?;
                }
                return Ok(old);
            };
            if old.as_deref() == Some(new.as_str()) {
                return Ok(old);
            }
            let mode = match (conditional, current) {
                (false, _) => PutMode::Overwrite, // serialized by the OS lock
                (true, None) => PutMode::Create,
                (true, Some(version)) => PutMode::Update(version),
            };
            match self.put_small(&path, new.into_bytes(), mode).await {
                Ok(_) => return Ok(old),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt + 1))).await;
                }
                Err(e) => return Err(Error::storage(format!("moving latest of {pkg}"), e)),
            }
        }
        Err(Error::Conflict(format!("gave up moving latest of {pkg}: too many concurrent writers")))
    }

    /// `latest` and its version, for [`Registry::swap_latest`]. A damaged
    /// `latest` (not a top hash) names no revision: it is returned as none
    /// (with its version), so `push` replaces it and `delete` removes it, once
    /// a second read finds the same text (a read cut short is no damage).
    async fn latest_to_swap(&self, pkg: &PackageName, path: &Path) -> Result<(Option<String>, Option<UpdateVersion>)> {
        let text = match self.read_pointer_text(path).await? {
            None => return Ok((None, None)),
            Some((hash, version)) if is_top_hash(&hash) => return Ok((Some(hash), Some(version))),
            Some((text, _)) => text,
        };
        match self.read_pointer_versioned(path).await {
            Ok(Some((hash, version))) => Ok((Some(hash), Some(version))),
            Ok(None) => Ok((None, None)),
            Err(e) => match self.read_pointer_text(path).await? {
                Some((again, version)) if again == text => {
                    tracing::warn!(package = %pkg, latest = ?super::names::excerpt(&text), "replacing a damaged latest pointer");
                    Ok((None, Some(version)))
                }
                _ => Err(e),
            },
        }
    }

    /// On a local registry, takes an exclusive OS lock for the package's
    /// pointers (released if the process dies). Elsewhere a no-op: those stores
    /// use conditional puts.
    async fn lock_pointers(&self, pkg: &PackageName) -> Result<PointerLock> {
        let Some(root) = self.location.local_root.clone() else { return Ok(PointerLock(None)) };
        let dir = root.join(LOCKS).join(&pkg.owner);
        let file = dir.join(format!("{}.lock", pkg.name));
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&file)
                .map_err(|e| Error::io(file.display().to_string(), e))?;
            f.lock().map_err(|e| Error::io(file.display().to_string(), e))?;
            Ok(PointerLock(Some(f)))
        })
        .await
        .expect("lock task panicked")
    }

    /// On local disk, removes the package's pointer and tag folders once they
    /// are empty (object stores have no folders): quilt3 lists packages by
    /// folder, so an empty one would still show up.
    fn prune_empty_folders(&self, pkg: &PackageName) {
        let Some(root) = &self.location.local_root else { return };
        for base in [NAMED, TAGS] {
            let owner = root.join(base).join(&pkg.owner);
            // remove_dir only succeeds on empty folders, which is the point.
            let _ = std::fs::remove_dir(owner.join(&pkg.name));
            let _ = std::fs::remove_dir(&owner);
        }
    }

    /// Deletes pointers only; manifests and blobs stay (revisions are
    /// immutable). Without `top_hash` the whole package disappears from
    /// listings; with it, that revision's pointers and tags go and `latest`
    /// falls back to the newest remaining revision.
    ///
    /// Damaged pointers and tags (and a damaged `latest`) name no revision:
    /// deleting the whole package removes them too; deleting one revision
    /// leaves them.
    pub async fn delete(&self, pkg: &PackageName, top_hash: Option<&str>) -> Result<DeleteReport> {
        let Listed { named: stamps, damaged: damaged_stamps } = self.timestamp_pointers(pkg).await?;
        let Listed { named: tags, damaged: damaged_tags } = self.listed_tags(pkg).await?;
        // A damaged `latest` counts as a pointer to remove (see `swap_latest`).
        let latest_text = self.read_pointer_text(&Self::latest_path(pkg)).await?.map(|(text, _)| text);
        let latest = latest_text.clone().filter(|t| is_top_hash(t));
        let damaged: Vec<Path> = damaged_stamps.into_iter().chain(damaged_tags).map(|d| d.path).collect();
        if stamps.is_empty() && latest_text.is_none() && tags.is_empty() && damaged.is_empty() {
            return Err(self.package_not_found(pkg));
        }
        let doomed = |h: &str| top_hash.is_none_or(|t| t == h);
        if let Some(t) = top_hash
            && !stamps.iter().any(|(_, h)| h == t)
            && latest.as_deref() != Some(t)
            && !tags.iter().any(|(_, h)| h == t)
        {
            return Err(Error::NotFound(format!("revision {t} of {pkg}")));
        }
        let mut paths: Vec<Path> =
            stamps.iter().filter(|(_, h)| doomed(h)).map(|(t, _)| Self::named_dir(pkg).join(t.to_string())).collect();
        paths.extend(tags.iter().filter(|(_, h)| doomed(h)).map(|(t, _)| Self::tags_dir(pkg).join(t.as_str())));
        if top_hash.is_none() {
            paths.extend(damaged);
        }
        let removed = paths.len();
        stream::iter(paths)
            .map(|p| async move {
                match self.store().delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(Error::storage(format!("deleting pointer {p}"), e)),
                }
            })
            .buffer_unordered(IO_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let fallback = stamps.iter().find(|(_, h)| !doomed(h)).map(|(_, h)| h.clone());
        let old = self
            .swap_latest(pkg, |current| match current {
                Some(c) if !doomed(c) => Some(c.to_owned()),
                _ => fallback.clone(),
            })
            .await?;
        let latest = self.read_pointer(&Self::latest_path(pkg)).await?;
        let removed = removed + usize::from(old.is_some() && old != latest);
        self.prune_empty_folders(pkg);
        Ok(DeleteReport { removed_pointers: removed, latest })
    }
}
