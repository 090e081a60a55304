//! `diff`: what changed between two revisions.

use super::install::relative;
use super::{Error, PackageRef, Registry, Result, Selection};
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
    /// Compares two revisions (of the same or different packages), or the
    /// parts their sub-paths select: entries are then compared by their key
    /// under the sub-path (a sub-path naming a file, by the file's name), so
    /// `a@x/data b@y/data` compares one folder across revisions and
    /// `p/old p/new` two folders of one. Only the selected parts are held.
    pub async fn diff(&self, a: &PackageRef, b: &PackageRef) -> Result<Diff> {
        let (ma, mb) = futures::try_join!(self.selected(a), self.selected(b))?;
        let side = |s: &Selection, r: &PackageRef| -> BTreeMap<String, usize> {
            s.entries.iter().enumerate().map(|(i, e)| (relative(r.subpath.as_deref(), e), i)).collect()
        };
        let (left, right) = (side(&ma, a), side(&mb, b));
        let mut diff = Diff {
            from: ma.top_hash.clone(),
            to: mb.top_hash.clone(),
            added: vec![],
            removed: vec![],
            modified: vec![],
            header_changed: ma.header != mb.header,
        };
        for (k, &i) in &left {
            let e = &ma.entries[i];
            match right.get(k).map(|&j| &mb.entries[j]) {
                None => diff.removed.push(k.clone()),
                Some(f) if f.hash != e.hash || f.size != e.size || f.meta != e.meta => diff.modified.push(k.clone()),
                Some(_) => {}
            }
        }
        diff.added = right.keys().filter(|k| !left.contains_key(*k)).cloned().collect();
        Ok(diff)
    }

    /// The entries `r` selects: all, or those under its sub-path (which must
    /// select something).
    async fn selected(&self, r: &PackageRef) -> Result<Selection> {
        let selection = self.load_under(r, r.subpath.as_deref().unwrap_or("")).await?;
        if let (Some(sub), true) = (&r.subpath, selection.entries.is_empty()) {
            return Err(Error::path_not_found(sub, &r.package, &selection.top_hash));
        }
        Ok(selection)
    }
}
