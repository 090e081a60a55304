//! `sheaf hash`: files' `sha2-256-chunked` hashes, as quilt3 computes them.

use super::Report;
use super::args::HashArgs;
use super::text::{shown, write_lines};
use serde::Serialize;
use sheaf::manifest::hash::{EntryHash, hash_file_chunked};
use sheaf::{Error, Result};
use std::fmt;

/// One hashed file.
#[derive(Serialize)]
pub struct Hashed {
    path: String,
    size: u64,
    hash: EntryHash,
}

/// The files' hashes, in the order given; as text, `HASH  PATH` lines like
/// `sha256sum`'s.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Hashes(Vec<Hashed>);

/// Hashes the files of `args` in parallel (off the async threads: hashing
/// is CPU-bound).
pub async fn run(args: &HashArgs) -> Result<Hashes> {
    let files = args.files.clone();
    let hashed = tokio::task::spawn_blocking(move || {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|f| {
                let path = f.display().to_string();
                match hash_file_chunked(f) {
                    Ok((size, hash)) => Ok(Hashed { path, size, hash }),
                    Err(e) => Err(Error::io(path, e)),
                }
            })
            .collect::<Result<Vec<_>>>()
    })
    .await
    .expect("hash task panicked")?;
    Ok(Hashes(hashed))
}

impl fmt::Display for Hashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_lines(f, self.0.iter().map(|h| format!("{}  {}", h.hash.value, shown(&h.path))))
    }
}

impl Report for Hashes {}
