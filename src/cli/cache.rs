//! `sheaf cache`: the local cache of pinned reads the Python client fills
//! (layout and rules in `sheaf_client::cache`).

use super::args::{CacheAction, CacheArgs};
use super::text::{human_bytes, write_lines};
use super::{Report, codes};
use serde::Serialize;
use sheaf::{Error, Result};
use sheaf_client::cache::{CacheDir, CacheEntry, Pruned, check_entry};
use std::fmt;
use std::path::PathBuf;

/// What `sheaf cache` found or did.
#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CacheReport {
    /// `info`: totals.
    Info { dir: PathBuf, entries: u64, bytes: u64 },
    /// `list`: every entry, least recently used first.
    List { dir: PathBuf, entries: Vec<CacheEntry> },
    /// `prune` and `clear`.
    Pruned {
        dir: PathBuf,
        #[serde(flatten)]
        pruned: Pruned,
    },
    /// `verify`: the damaged entries and what was wrong with each.
    Verified { dir: PathBuf, checked: u64, damaged: Vec<Damaged>, deleted: bool },
}

/// An entry that failed its check.
#[derive(Serialize)]
pub struct Damaged {
    key: String,
    path: PathBuf,
    problem: String,
}

/// Runs the cache action of `args` (default: info).
pub async fn run(args: &CacheArgs) -> Result<CacheReport> {
    let cache = CacheDir::locate(args.dir.as_deref()).map_err(|e| Error::io("the cache folder", e))?;
    let dir = cache.root().to_path_buf();
    let io = |e| Error::io(dir.display().to_string(), e);
    let action = args.action.clone().unwrap_or(CacheAction::Info);
    Ok(match action {
        CacheAction::Info => {
            let entries = cache.entries().map_err(io)?;
            let bytes = entries.iter().map(|e| e.bytes).sum();
            CacheReport::Info { dir, entries: entries.len() as u64, bytes }
        }
        CacheAction::List => CacheReport::List { entries: cache.entries().map_err(io)?, dir },
        CacheAction::Prune { max_bytes } => CacheReport::Pruned { pruned: cache.prune(max_bytes).map_err(io)?, dir },
        CacheAction::Clear => CacheReport::Pruned { pruned: cache.clear().map_err(io)?, dir },
        CacheAction::Verify { delete } => {
            let entries = cache.entries().map_err(io)?;
            let checked = entries.len() as u64;
            let damaged =
                tokio::task::spawn_blocking(move || verify(entries, delete)).await.expect("verify task panicked")?;
            CacheReport::Verified { dir, checked, damaged, deleted: delete }
        }
    })
}

/// Checks each entry; removes the damaged ones with `delete`.
fn verify(entries: Vec<CacheEntry>, delete: bool) -> Result<Vec<Damaged>> {
    let mut damaged = Vec::new();
    for entry in entries {
        let problem = match check_entry(&entry.path) {
            Ok(Ok(())) => continue,
            Ok(Err(problem)) => problem,
            // Evicted by another process meanwhile: nothing to check.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(entry.path.display().to_string(), e)),
        };
        if delete {
            match std::fs::remove_file(&entry.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(entry.path.display().to_string(), e));
                }
                _ => {}
            }
        }
        damaged.push(Damaged { key: entry.key, path: entry.path, problem });
    }
    Ok(damaged)
}

impl fmt::Display for CacheReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheReport::Info { dir, entries, bytes } => {
                write!(f, "{}: {entries} entries, {}", dir.display(), human_bytes(*bytes))
            }
            CacheReport::List { entries, .. } => write_lines(
                f,
                entries.iter().map(|e| {
                    let used = humantime::format_rfc3339_seconds(e.last_used);
                    format!("{}  {:>10}  {used}", e.key, human_bytes(e.bytes))
                }),
            ),
            CacheReport::Pruned { dir, pruned } => write!(
                f,
                "{}: removed {} entries ({}), {} left ({})",
                dir.display(),
                pruned.removed.len(),
                human_bytes(pruned.bytes_freed),
                pruned.entries_left,
                human_bytes(pruned.bytes_left)
            ),
            CacheReport::Verified { dir, checked, damaged, deleted } => {
                let verdict = format!(
                    "{}: {checked} entries checked, {} damaged{}",
                    dir.display(),
                    damaged.len(),
                    if *deleted && !damaged.is_empty() { " (deleted)" } else { "" }
                );
                write_lines(
                    f,
                    damaged
                        .iter()
                        .map(|d| format!("damaged  {}  {}", d.key, d.problem))
                        .chain(std::iter::once(verdict)),
                )
            }
        }
    }
}

impl Report for CacheReport {
    fn exit_code(&self) -> u8 {
        match self {
            // Damage left in place is a failed check; deleted, it is repaired.
            CacheReport::Verified { damaged, deleted: false, .. } if !damaged.is_empty() => codes::INTEGRITY,
            _ => codes::OK,
        }
    }
}
