//! Write sessions: one new revision from any number of staged parts (the
//! server's `begin_write` / DoPut part / `commit_write` / `abort_write`, and
//! `sheaf put`).
//!
//! ```text
//! .sheaf/sessions/<id>/session.json          what the session writes (SessionSpec)
//! .sheaf/sessions/<id>/parts/<part>.parquet  a part's data, staged
//! .sheaf/sessions/<id>/parts/<part>.json     its record, written once the data is in place
//! .sheaf/sessions/<id>/ended                 "commit" or "abort": how it ends, claimed once
//! .sheaf/sessions/<id>/committed.json        the commit's outcome (answers a retried commit)
//! ```
//!
//! Staged data lives outside `.sheaf/blobs/`, so no reader and no manifest
//! ever sees it; the commit copies each part to its content-addressed blob
//! (a hard link on local disk, a server-side copy on object stores), then
//! writes the manifest and moves `latest` by compare-and-swap exactly as
//! [`Registry::commit`] does. A session's id is random, or derived from the
//! caller's idempotency key so that a retried `begin_write` finds the same
//! session. The new revision's user metadata names the session
//! (`sheaf.lineage.session`), so a commit retried after its response was
//! lost answers the revision it made instead of making a second one.
//! `sheaf gc` removes sessions past their expiry with their staged data.

use super::commit::{ATTEMPTS, backoff, turn};
use super::names::excerpt;
use super::pointers::now_secs;
use super::push::LocalFile;
use super::session_end::End;
use super::table_schema::{schema_agrees, table_entries};
use super::{Error, PackageName, Registry, Result};
use crate::manifest::hash::EntryHash;
use crate::manifest::{Entry, Line, Manifest, key};
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};

/// Where sessions live in a registry.
pub(crate) const SESSIONS: &str = ".sheaf/sessions";

/// Most parts one session may commit (their records are read into memory).
pub const MAX_PARTS: usize = 100_000;

/// How long an uncommitted session lives by default (a day).
pub const DEFAULT_TTL_SECS: u64 = 86_400;

/// What a commit does to a table that exists in the revision it builds on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// A folder's new part files join the old ones (same schema); a file is
    /// replaced.
    #[default]
    Append,
    /// The folder or file is replaced.
    Overwrite,
    /// The commit fails if the table exists.
    ErrorIfExists,
}

/// What a session writes, fixed when it begins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// `owner/name`.
    pub package: String,
    /// The full top hash the commit must build on; `None` builds on whatever
    /// is latest at the commit.
    pub base: Option<String>,
    /// What happens to tables that exist.
    pub mode: WriteMode,
    /// The new revision's message.
    pub message: Option<String>,
    /// The new revision's user metadata; `None` keeps the base revision's.
    pub metadata: Option<Map<String, Value>>,
    /// The `sheaf.lineage` object of the new revision's user metadata
    /// (inputs and writer; the commit adds the session id).
    pub lineage: Map<String, Value>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds after which the session is gone.
    pub expires_at: u64,
}

/// One staged part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    /// The part's id in its session.
    pub id: String,
    /// The table it belongs to, as uploaded: a file (`x.parquet`) or a folder.
    pub table: String,
    /// The logical key it becomes.
    pub key: String,
    /// Its position in a folder table.
    pub part: u32,
    /// Rows it holds.
    pub rows: u64,
    /// Bytes of its file.
    pub size: u64,
    /// The `sha2-256-chunked` hash of its file.
    pub hash: EntryHash,
    /// `(name, Arrow type)` of each column, to check appends.
    pub columns: Vec<(String, String)>,
    /// The entry metadata it gets (its profile).
    pub meta: Value,
}

/// What a committed session made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// `owner/name`.
    pub package: String,
    /// The new revision.
    pub top_hash: String,
    /// The revision `latest` pointed at before.
    pub previous: Option<String>,
    /// The tables written (files and folders).
    pub tables: Vec<String>,
    /// Logical keys added.
    pub keys: Vec<String>,
    /// Rows written.
    pub rows: u64,
    /// Bytes written.
    pub bytes: u64,
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf).expect("system randomness");
    hex::encode(buf)
}

/// Whether `id` can name a session (so no caller-given id escapes its folder).
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Whether a table path names a file table (else a folder of parts).
pub fn is_file_table(table: &str) -> bool {
    table.to_ascii_lowercase().ends_with(".parquet")
}

/// The highest part number: part keys carry it in five digits, and their
/// text order is the folder's row order.
pub const MAX_PART: u32 = 99_999;

pub(super) fn not_found(id: &str, why: &str) -> Error {
    Error::SessionNotFound { session: id.to_owned(), why: why.to_owned() }
}

impl Registry {
    pub(super) fn session_dir(id: &str) -> Path {
        Path::from(SESSIONS).join(id)
    }

    /// Opens a session. With an idempotency `key`, the session id derives
    /// from it and the package, and a session already begun with them is
    /// answered instead of a new one.
    pub async fn begin_write(&self, spec: SessionSpec, idempotency_key: Option<&str>) -> Result<(String, SessionSpec)> {
        let pkg: PackageName = spec.package.parse()?;
        let id = match idempotency_key.filter(|k| !k.is_empty()) {
            Some(k) => {
                use sha2::Digest;
                hex::encode(&sha2::Sha256::digest(format!("{pkg}\n{k}").as_bytes())[..16])
            }
            None => random_hex(16),
        };
        let body = serde_json::to_vec_pretty(&spec).expect("a session spec serializes");
        let path = Self::session_dir(&id).join("session.json");
        match self.put_small(&path, body, PutMode::Create).await {
            Ok(()) => Ok((id, spec)),
            Err(object_store::Error::AlreadyExists { .. }) if idempotency_key.is_some() => {
                let existing = self.write_session(&id).await?;
                // A retry asks for what the first call asked; another write
                // reusing the key would otherwise get a session that does
                // something else.
                let differs = [
                    ("mode", existing.mode != spec.mode),
                    ("base", existing.base != spec.base),
                    ("message", existing.message != spec.message),
                    ("metadata", existing.metadata != spec.metadata),
                    ("lineage inputs", existing.lineage.get("inputs") != spec.lineage.get("inputs")),
                ];
                if let Some((what, _)) = differs.iter().find(|(_, differs)| *differs) {
                    return Err(Error::Conflict(format!(
                        "idempotency key {:?} already began write session {id} of {pkg} with another {what}{}; \
                         a retry must ask for the same write (use another key for another write)",
                        excerpt(idempotency_key.unwrap_or_default()),
                        match *what {
                            "mode" => format!(" ({}, not {})", json!(existing.mode), json!(spec.mode)),
                            _ => String::new(),
                        }
                    )));
                }
                Ok((id, existing))
            }
            Err(e) => Err(Error::storage(format!("beginning a write session of {pkg} in {}", self.url()), e)),
        }
    }

    /// The session `id`, unless it does not exist or has expired.
    pub async fn write_session(&self, id: &str) -> Result<SessionSpec> {
        if !valid_id(id) {
            return Err(not_found(&excerpt(id), "a session id is 32 lowercase hex digits"));
        }
        let path = Self::session_dir(id).join("session.json");
        let bytes = match self.store().get(&path).await {
            Ok(r) => r.bytes().await.map_err(|e| Error::storage(format!("write session {id}"), e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::no_session(id));
            }
            Err(e) => return Err(Error::storage(format!("write session {id}"), e)),
        };
        let spec: SessionSpec = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("write session {id}: its record is not valid: {e}")))?;
        if spec.expires_at <= now_secs() {
            return Err(not_found(id, "it expired"));
        }
        Ok(spec)
    }

    async fn committed(&self, id: &str) -> Result<Option<WriteOutcome>> {
        match self.store().get(&Self::session_dir(id).join("committed.json")).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| Error::storage(format!("write session {id}"), e))?;
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(format!("write session {id}"), e)),
        }
    }

    /// Stages `file` (a finished Parquet file of `rows` rows) as a part of
    /// `table` in session `id`.
    #[allow(clippy::too_many_arguments)]
    pub async fn stage_part(
        &self,
        id: &str,
        table: &str,
        part: u32,
        file: &std::path::Path,
        rows: u64,
        columns: Vec<(String, String)>,
        meta: Value,
    ) -> Result<PartRecord> {
        let spec = self.write_session(id).await?;
        if self.committed(id).await?.is_some() {
            return Err(Error::invalid(format!("write session {id} of {} is already committed", spec.package)));
        }
        if part > MAX_PART {
            return Err(Error::invalid(format!("part {part} is out of range: parts are numbered 0 to {MAX_PART}")));
        }
        let part_id = format!(
            "{:013x}{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64),
            &random_hex(2)
        );
        let key = if is_file_table(table) {
            table.to_owned()
        } else {
            format!("{}/part-{part:05}-{part_id}.parquet", table.trim_end_matches('/'))
        };
        key::validate(&key).map_err(|why| Error::invalid(format!("{key:?} cannot be a logical key: {why}")))?;
        let local = file.to_path_buf();
        let (size, hash) = tokio::task::spawn_blocking(move || crate::manifest::hash::hash_file_chunked(&local))
            .await
            .map_err(|e| Error::invalid(format!("hashing a part of {}: {e}", spec.package)))?
            .map_err(|e| Error::io(file.display().to_string(), e))?;
        let dir = Self::session_dir(id).join("parts");
        let local = LocalFile { path: file.to_path_buf(), key: key.clone(), size };
        let staged = dir.clone().join(format!("{part_id}.parquet"));
        self.upload_file(&local, &hash, &staged, &crate::progress::NoProgress).await?;
        let record =
            PartRecord { id: part_id.clone(), table: table.to_owned(), key, part, rows, size, hash, columns, meta };
        let body = serde_json::to_vec(&record).expect("a part record serializes");
        self.put_small(&dir.clone().join(format!("{part_id}.json")), body, PutMode::Overwrite)
            .await
            .map_err(|e| Error::storage(format!("staging a part of {} in {}", spec.package, self.url()), e))?;
        if let Some(e) = self.part_refused(id, &part_id, &spec.package).await? {
            for name in [format!("{part_id}.json"), format!("{part_id}.parquet")] {
                let _ = self.store().delete(&dir.clone().join(name)).await;
            }
            return Err(e);
        }
        Ok(record)
    }

    /// The records of the parts of session `id` whose ids `taken` holds.
    async fn parts(&self, id: &str, taken: &HashSet<String>) -> Result<Vec<PartRecord>> {
        let dir = Self::session_dir(id).join("parts");
        let metas: Vec<_> = self
            .store()
            .list(Some(&dir))
            .try_filter(|m| {
                let id = m.location.filename().and_then(|f| f.strip_suffix(".json"));
                futures::future::ready(id.is_some_and(|id| taken.contains(id)))
            })
            .try_collect()
            .await
            .map_err(|e| Error::storage(format!("listing the parts of write session {id}"), e))?;
        if metas.len() > MAX_PARTS {
            return Err(Error::invalid(format!(
                "write session {id} has {} parts; at most {MAX_PARTS} are committed at once",
                metas.len()
            )));
        }
        let reads: Vec<_> = metas
            .into_iter()
            .map(|m| {
                let store = self.store().clone();
                let what = format!("part {} of write session {id}", m.location);
                async move {
                    let got = store.get(&m.location).await.map_err(|e| Error::storage(what.clone(), e))?;
                    let bytes = got.bytes().await.map_err(|e| Error::storage(what.clone(), e))?;
                    serde_json::from_slice::<PartRecord>(&bytes).map_err(|e| Error::invalid(format!("{what}: {e}")))
                }
            })
            .collect();
        let mut parts: Vec<PartRecord> =
            stream::iter(reads).buffer_unordered(super::IO_CONCURRENCY).try_collect().await?;
        parts.sort_by(|a, b| (a.part, &a.id).cmp(&(b.part, &b.id)));
        Ok(parts)
    }

    /// Commits session `id`: one new revision holding its parts (those in
    /// `only`, or all when it is empty). A session already committed answers
    /// its outcome again. A commit refused (the table exists, the schema
    /// differs, `latest` moved, a part is unknown) releases its claim on the
    /// session's end, so the session can be aborted, or committed again.
    pub async fn commit_write(&self, id: &str, only: &[String]) -> Result<WriteOutcome> {
        let spec = self.write_session(id).await?;
        let pkg: PackageName = spec.package.parse()?;
        let turn = turn(self.url(), &pkg);
        let _turn = turn.lock().await;
        if let Some(done) = self.committed(id).await? {
            return Ok(done);
        }
        let marker = self.claim_end(id, End::Commit).await?;
        let mut landing = false;
        match self.commit_claimed(id, &spec, &pkg, &marker, only, &mut landing).await {
            Ok(outcome) => Ok(outcome),
            Err(e) => {
                // Refused before `latest` could move (or its compare-and-swap
                // found another revision): nothing was made, and the claim
                // is released. A failure while `latest` was being moved keeps
                // the claim: the revision may exist, and a retried commit
                // answers it (the revision names its session).
                if !landing {
                    self.release_end(id, &marker).await;
                }
                Err(e)
            }
        }
    }

    /// [`Registry::commit_write`] once the session's end is claimed with
    /// `marker`; `landing` is set while `latest` is being moved.
    async fn commit_claimed(
        &self,
        id: &str,
        spec: &SessionSpec,
        pkg: &PackageName,
        marker: &str,
        only: &[String],
        landing: &mut bool,
    ) -> Result<WriteOutcome> {
        // An abort that won before the claim had removed the record first.
        self.write_session(id).await?;
        let taken = self.taken_parts(id, marker).await?;
        let mut parts = self.parts(id, &taken).await?;
        if parts.len() != taken.len() {
            return Err(Error::invalid(format!(
                "write session {id} of {pkg}: {} of the parts it took are gone",
                taken.len() - parts.len()
            )));
        }
        if !only.is_empty() {
            let wanted: HashSet<&str> = only.iter().map(String::as_str).collect();
            let have: HashSet<&str> = parts.iter().map(|p| p.id.as_str()).collect();
            if let Some(missing) = only.iter().find(|p| !have.contains(p.as_str())) {
                return Err(Error::invalid(format!(
                    "write session {id} of {pkg} has no part {}: it was not uploaded (or its upload failed)",
                    excerpt(missing)
                )));
            }
            parts.retain(|p| wanted.contains(p.id.as_str()));
        }
        let mut seen = HashSet::new();
        if let Some(dup) = parts.iter().find(|p| !seen.insert(p.key.as_str())) {
            return Err(Error::invalid(format!(
                "write session {id} of {pkg}: two parts write {}; commit one of them (list its part id)",
                dup.key
            )));
        }
        // The tables, each with its parts' columns, checked to agree.
        let mut tables: BTreeMap<String, &[(String, String)]> = BTreeMap::new();
        for p in &parts {
            let table = p.table.trim_end_matches('/').to_owned();
            match tables.get(&table) {
                None => {
                    tables.insert(table, &p.columns);
                }
                Some(columns) => schema_agrees(pkg, &table, columns, &p.columns, "another part of this write")?,
            }
        }
        // A file written into a folder this write writes too (`t` and
        // `t/x.parquet`) is one more file of that folder table.
        for (table, columns) in &tables {
            if let Some((folder, _)) = table.rsplit_once('/')
                && is_file_table(table)
                && let Some(have) = tables.get(folder)
            {
                schema_agrees(pkg, folder, have, columns, &format!("the file {table}"))?;
            }
        }
        // The staged data becomes blobs (nothing references them yet).
        let copies: Vec<_> = parts
            .iter()
            .map(|p| {
                let store = self.store().clone();
                let blob = Self::blob_path(&p.hash.blob_hex().expect("chunked hash"));
                let staged = Self::session_dir(id).join("parts").join(format!("{}.parquet", p.id));
                let context = format!("committing {} to {pkg}", p.key);
                let size = p.size;
                async move {
                    // A blob of another size is damaged: stored again, as push does.
                    if store.head(&blob).await.is_ok_and(|meta| meta.size == size) {
                        return Ok(());
                    }
                    store.copy(&staged, &blob).await.map_err(|e| Error::storage(context, e))
                }
            })
            .collect();
        stream::iter(copies).buffer_unordered(super::IO_CONCURRENCY).try_collect::<Vec<()>>().await?;
        let mut lineage = spec.lineage.clone();
        lineage.insert("session".into(), json!(id));

        let mut outcome = None;
        for attempt in 1..=ATTEMPTS {
            let previous = match &spec.base {
                None => self.read_pointer(&Self::latest_path(pkg)).await?,
                Some(h) => Some(h.clone()),
            };
            let base = match &previous {
                Some(h) => Some(self.read_manifest(h).await?),
                None => None,
            };
            // A commit retried after its answer was lost: latest is its own revision.
            if let Some(m) = &base
                && m.user_meta().and_then(|u| u.pointer("/sheaf/lineage/session")) == Some(&json!(id))
            {
                let top_hash = previous.clone().expect("a base has a hash");
                let keys = parts.iter().map(|p| p.key.clone()).collect();
                outcome = Some(self.outcome(pkg, &top_hash, None, &tables, &parts, keys));
                break;
            }
            let mut removed = Vec::new();
            // Tables named like files (`spark.parquet`) that are folders in
            // the base: appended to, their parts become part files.
            let mut into_folder = HashSet::new();
            for (table, columns) in &tables {
                let existing = base.as_ref().map(|m| table_entries(m, table)).unwrap_or_default();
                if existing.is_empty() {
                    continue;
                }
                // What the table is in the base decides, not its name.
                let is_folder = existing.iter().any(|e| e.logical_key != *table);
                match spec.mode {
                    WriteMode::ErrorIfExists => {
                        return Err(Error::Exists { package: pkg.to_string(), path: table.clone() });
                    }
                    WriteMode::Overwrite => removed.push(table.clone()),
                    WriteMode::Append if !is_folder => removed.push(table.clone()),
                    WriteMode::Append => {
                        if is_file_table(table) {
                            into_folder.insert(table.as_str());
                        }
                        if let Some(first) = existing.iter().find(|e| e.logical_key.ends_with(".parquet")) {
                            let have = self.parquet_columns(first).await?;
                            schema_agrees(pkg, table, &have, columns, "the appended data")?;
                        }
                    }
                }
            }
            // A file written into a folder table of the base must agree with it.
            if let Some(m) = &base {
                for (table, columns) in &tables {
                    let folder = table.rsplit_once('/').map(|(f, _)| f);
                    if is_file_table(table)
                        && !into_folder.contains(table.as_str())
                        && folder.is_none_or(|f| !tables.contains_key(f))
                    {
                        self.folder_member_agrees(pkg, m, table, columns, &removed).await?;
                    }
                }
            }
            let entries: Vec<Entry> = parts
                .iter()
                .map(|p| {
                    let table = p.table.trim_end_matches('/');
                    let logical_key = match into_folder.contains(table) {
                        true => format!("{table}/part-{:05}-{}.parquet", p.part, p.id),
                        false => p.key.clone(),
                    };
                    Entry {
                        logical_key,
                        physical_keys: vec![
                            self.location.url_of(&Self::blob_path(&p.hash.blob_hex().expect("chunked hash"))),
                        ],
                        size: p.size,
                        hash: p.hash.clone(),
                        meta: p.meta.clone(),
                        extra: Map::new(),
                    }
                })
                .collect();
            let keys: Vec<String> = entries.iter().map(|e| e.logical_key.clone()).collect();
            let manifest = match &base {
                Some(m) => {
                    let mut kept = m.clone();
                    kept.lines.retain(|l| {
                        let k = match l {
                            Line::Entry(e) => &e.logical_key,
                            Line::Dir(d) => &d.logical_key,
                        };
                        !removed.iter().any(|t| k == t || key::is_under(k, t))
                    });
                    // Set in the header's exact form too, which is what is
                    // written and hashed when the base holds numbers beyond
                    // 64 bits (kept as written).
                    if let Some(meta) = &spec.metadata {
                        kept.set_header_member(&["user_meta"], Value::Object(meta.clone()));
                    }
                    kept.set_header_member(&["user_meta", "sheaf", "lineage"], Value::Object(lineage.clone()));
                    kept.with_changes(entries, spec.message.clone())
                }
                None => Manifest::build(spec.message.clone(), Some(spec.metadata.clone().unwrap_or_default()), entries)
                    .map(|mut first| {
                        first.set_header_member(&["user_meta", "sheaf", "lineage"], Value::Object(lineage.clone()));
                        first
                    }),
            }
            .map_err(|source| Error::Manifest { top_hash: format!("being committed to {pkg}"), source })?;
            let top_hash = manifest.top_hash();
            self.write_manifest(manifest, &top_hash).await?;
            *landing = true;
            match self.advance_latest(pkg, previous.as_deref(), &top_hash).await {
                Ok(()) => {
                    outcome = Some(self.outcome(pkg, &top_hash, previous, &tables, &parts, keys));
                    break;
                }
                Err(e @ Error::Moved { .. }) => {
                    // The compare-and-swap found another revision: nothing moved.
                    *landing = false;
                    if spec.base.is_some() || attempt == ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let outcome = outcome.expect("the last attempt returns or breaks");
        let body = serde_json::to_vec_pretty(&outcome).expect("an outcome serializes");
        if let Err(e) = self.put_small(&Self::session_dir(id).join("committed.json"), body, PutMode::Overwrite).await {
            tracing::warn!(session = id, error = %e, "committed, but the outcome could not be recorded");
        }
        // The staged copies are no longer needed (gc would remove them at expiry).
        for p in &parts {
            let _ = self.store().delete(&Self::session_dir(id).join("parts").join(format!("{}.parquet", p.id))).await;
        }
        Ok(outcome)
    }

    fn outcome(
        &self,
        pkg: &PackageName,
        top_hash: &str,
        previous: Option<String>,
        tables: &BTreeMap<String, &[(String, String)]>,
        parts: &[PartRecord],
        keys: Vec<String>,
    ) -> WriteOutcome {
        WriteOutcome {
            package: pkg.to_string(),
            top_hash: top_hash.to_owned(),
            previous,
            tables: tables.keys().cloned().collect(),
            keys,
            rows: parts.iter().map(|p| p.rows).sum(),
            bytes: parts.iter().map(|p| p.size).sum(),
        }
    }

    /// Drops session `id` and its staged parts. Aborting a session that is
    /// gone succeeds; aborting a committed one (or one being committed) is
    /// refused.
    pub async fn abort_write(&self, id: &str) -> Result<()> {
        if !valid_id(id) {
            return Err(not_found(&excerpt(id), "a session id is 32 lowercase hex digits"));
        }
        if let Some(done) = self.committed(id).await? {
            return Err(Error::invalid(format!(
                "write session {id} is committed (revision {} of {}); it cannot be aborted",
                done.top_hash, done.package
            )));
        }
        self.claim_end(id, End::Abort).await?;
        let dir = Self::session_dir(id);
        // The record first: from then on the session is gone, whatever else remains.
        match self.store().delete(&dir.clone().join("session.json")).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::storage(format!("aborting write session {id}"), e)),
        }
        let files: Vec<_> = self
            .store()
            .list(Some(&dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| Error::storage(format!("aborting write session {id}"), e))?;
        for f in files {
            let _ = self.store().delete(&f).await;
        }
        Ok(())
    }
}
