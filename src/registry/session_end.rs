//! How a write session ends, and which parts its commit takes.
//!
//! A part is in the commit or refused, never acknowledged and left
//! out. A part's record is written first, the session's end marker read
//! only after ([`Registry::part_refused`]); a commit claims the marker first and only then fixes
//! the parts it takes (`taken_parts`). Each step is one request, atomic
//! and strongly consistent on every store Sheaf writes (a local file
//! system; S3 and the other object stores read their own writes, in
//! listings too, and create an object only if absent, which is all
//! the ordering needs: no store has locks to offer). So:
//! - no marker: a commit claims its end after the part's read, so after
//!   the record was written, and fixes its parts later still: the
//!   part is in;
//! - "abort": the abort may have listed the files it removes before
//!   the record was written, so the part removes itself, refused;
//! - "commit": the commit may have listed the parts before the record
//!   was written, or after. Its set of parts is fixed once, by the
//!   first to create its `taken` file (create-only: exactly one
//!   wins), the commit or a part like this one (which lists, its own
//!   record included). The part is acknowledged if the set holds it,
//!   else removed and refused.
//!
//! A commit refused after its claim releases it (`release_end`) and
//! takes parts afresh under a new claim, so a part acknowledged then
//! is in the next commit.

use super::session::{not_found, random_hex};
use super::{Error, Registry, Result};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode};
use std::collections::HashSet;

/// The marker of how a session ends (`commit` or `abort`).
const END_MARKER: &str = "ended";

/// How a write session ends.
#[derive(Debug, Clone, Copy)]
pub(super) enum End {
    Commit,
    Abort,
}

impl End {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            End::Commit => "commit",
            End::Abort => "abort",
        }
    }
}

impl Registry {
    /// Whether part `part_id` of session `id` (of `package`), its record
    /// written, is refused (and so removed) because the session ended or
    /// its commit took its parts without it: the error to answer, if so.
    pub(super) async fn part_refused(&self, id: &str, part_id: &str, package: &str) -> Result<Option<Error>> {
        let refuse = match self.end_marker(id).await? {
            None => None,
            Some(marker) if marker == End::Abort.as_str() => Some(not_found(id, "it was aborted")),
            Some(marker) => match self.taken_parts(id, &marker).await?.contains(part_id) {
                true => None,
                false => Some(Error::invalid(format!(
                    "write session {id} of {} was committed (or is being committed) without this part, which \
                     arrived after the commit had taken its parts; it is not staged: write it in a new session",
                    package
                ))),
            },
        };
        Ok(refuse)
    }

    /// What the end marker of session `id` holds, if it has one.
    pub(super) async fn end_marker(&self, id: &str) -> Result<Option<String>> {
        let context = || format!("write session {id}");
        match self.store().get(&Self::session_dir(id).join(END_MARKER)).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| Error::storage(context(), e))?;
                Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(context(), e)),
        }
    }

    /// The ids of the parts the commit that claimed session `id`'s end with
    /// `marker` takes: fixed once, by the first to create the claim's
    /// `taken` file (create-only), from a listing made after the claim. The
    /// commit and a part staged during it ([`Registry::stage_part`]) both
    /// call this; either may be first.
    pub(super) async fn taken_parts(&self, id: &str, marker: &str) -> Result<HashSet<String>> {
        let nonce = marker.strip_prefix(End::Commit.as_str()).unwrap_or_default().trim();
        let name = match nonce.is_empty() || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => "taken.json".to_owned(),
            false => format!("taken-{nonce}.json"),
        };
        let path = Self::session_dir(id).join(name.as_str());
        let context = || format!("fixing the parts of write session {id}");
        for _ in 0..3 {
            match self.store().get(&path).await {
                Ok(r) => {
                    let bytes = r.bytes().await.map_err(|e| Error::storage(context(), e))?;
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| Error::invalid(format!("write session {id}: {name} is not valid: {e}")));
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::storage(context(), e)),
            }
            let dir = Self::session_dir(id).join("parts");
            let ids: HashSet<String> = self
                .store()
                .list(Some(&dir))
                .try_filter_map(|m| {
                    let id = m.location.filename().and_then(|f| f.strip_suffix(".json")).map(str::to_owned);
                    futures::future::ready(Ok(id))
                })
                .try_collect()
                .await
                .map_err(|e| Error::storage(context(), e))?;
            let body = serde_json::to_vec(&ids).expect("part ids serialize");
            match self.put_small(&path, body, PutMode::Create).await {
                Ok(()) => return Ok(ids),
                // Another was first: its set is read above.
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(Error::storage(context(), e)),
            }
        }
        Err(Error::invalid(format!("write session {id}: {name} keeps changing")))
    }

    /// Records how session `id` ends, first come first served: a commit and
    /// an abort racing (two clients, two replicas) cannot both win. The
    /// marker is created only if absent (atomic on every store Sheaf
    /// writes); the same end claimed again (a retry) passes. Returns the
    /// marker: `abort`, or `commit` and a random claim id (the parts a claim
    /// takes are fixed per claim: [`Registry::taken_parts`]).
    pub(super) async fn claim_end(&self, id: &str, end: End) -> Result<String> {
        let path = Self::session_dir(id).join(END_MARKER);
        let context = || format!("ending write session {id}");
        let marker = match end {
            End::Commit => format!("{} {}", end.as_str(), random_hex(8)),
            End::Abort => end.as_str().to_owned(),
        };
        let mut tries = 0;
        let found = loop {
            match self.put_small(&path, marker.clone().into_bytes(), PutMode::Create).await {
                Ok(()) => return Ok(marker),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(Error::storage(context(), e)),
            }
            match self.end_marker(id).await? {
                Some(found) => break found,
                // Released since by a refused commit: claimed again.
                None if tries == 0 => tries += 1,
                // Removed since by the abort that claimed it.
                None => return Err(not_found(id, "it was aborted")),
            }
        };
        let same = found.split(' ').next() == Some(end.as_str());
        match (end, same) {
            (_, true) => Ok(found),
            (End::Commit, false) => Err(not_found(id, "it was aborted")),
            (End::Abort, false) => Err(Error::invalid(format!(
                "write session {id} is committed (or being committed); it cannot be aborted"
            ))),
        }
    }

    /// Releases the commit claim `marker` on session `id`'s end, after a
    /// commit that made nothing: the session can be aborted or committed
    /// again (a new claim, which takes its parts afresh). Best effort: a
    /// claim left in place answers a retried commit, as before.
    pub(super) async fn release_end(&self, id: &str, marker: &str) {
        if self.end_marker(id).await.ok().flatten().as_deref() != Some(marker) {
            return;
        }
        if let Err(e) = self.store().delete(&Self::session_dir(id).join(END_MARKER)).await {
            tracing::warn!(session = id, error = %e, "a refused commit could not release its session");
        }
    }
}
