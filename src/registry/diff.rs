//! `diff`: what changed between two revisions.

use super::{PackageRef, Registry, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// Differences between two revisions, by logical key.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Top hash of the first revision.
    pub from: String,
    /// Top hash of the second revision.
    pub to: String,
    /// Keys only in the second.
    pub added: Vec<String>,
    /// Keys only in the first.
    pub removed: Vec<String>,
    /// Keys in both whose hash, size or metadata differ.
    pub modified: Vec<String>,
    /// Whether the headers (message, package metadata) differ.
    pub header_changed: bool,
}

impl Registry {
    /// Compares two revisions (of the same or different packages).
    pub async fn diff(&self, a: &PackageRef, b: &PackageRef) -> Result<Diff> {
        let ((from, ma), (to, mb)) = futures::try_join!(self.load(a), self.load(b))?;
        let left: BTreeMap<&str, _> = ma.entries().map(|e| (e.logical_key.as_str(), e)).collect();
        let right: BTreeMap<&str, _> = mb.entries().map(|e| (e.logical_key.as_str(), e)).collect();
        let mut diff =
            Diff { from, to, added: vec![], removed: vec![], modified: vec![], header_changed: ma.header != mb.header };
        for (k, e) in &left {
            match right.get(k) {
                None => diff.removed.push(k.to_string()),
                Some(f) if f.hash != e.hash || f.size != e.size || f.meta != e.meta => {
                    diff.modified.push(k.to_string())
                }
                Some(_) => {}
            }
        }
        diff.added = right.keys().filter(|k| !left.contains_key(*k)).map(|k| k.to_string()).collect();
        Ok(diff)
    }
}
