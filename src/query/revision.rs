//! What the engine keeps of a revision instead of its whole manifest: the
//! manifest's index ([`ManifestIndex`], about 50 bytes per 1,024 entries)
//! and its tables, each with the blocks of the index that hold its entries.
//! Finding a table reads only those blocks; the manifest table reads its
//! runs of entries block by block. So a server's memory follows the tables
//! it serves, not the entry count of the packages it serves them from.

use super::Error;
use super::table::{self, Format, Table};
use crate::manifest::key;
use crate::registry::{ManifestIndex, Registry};
use futures::TryStreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

/// A revision's index and tables.
#[derive(Debug)]
pub struct Revision {
    /// The index of the revision's manifest.
    pub index: Arc<ManifestIndex>,
    /// File tables in walk order, with the block holding each.
    files: Vec<(String, Format, usize)>,
    /// Folders holding Parquet files (at any depth), with the blocks
    /// holding those files, and whether the folder is listed (it holds
    /// Parquet files directly).
    folders: BTreeMap<String, (Range<usize>, bool)>,
}

impl Revision {
    /// Indexes the manifest named `top_hash` (one streamed pass, which
    /// checks it) and finds its tables.
    pub async fn read(registry: &Registry, top_hash: &str) -> Result<Revision, Error> {
        let mut files = Vec::new();
        let mut folders: BTreeMap<String, (Range<usize>, bool)> = BTreeMap::new();
        let index = registry
            .index_manifest(top_hash, |block, e| {
                let Some(format) = Format::of_file(&e.logical_key) else { return };
                files.push((e.logical_key.clone(), format, block));
                if format != Format::Parquet {
                    return;
                }
                let mut direct = true;
                let mut rest = e.logical_key.as_str();
                while let Some((folder, _)) = rest.rsplit_once('/') {
                    match folders.get_mut(folder) {
                        Some((span, listed)) => {
                            span.end = span.end.max(block + 1);
                            span.start = span.start.min(block);
                            *listed |= direct;
                        }
                        None => {
                            folders.insert(folder.to_owned(), (block..block + 1, direct));
                        }
                    }
                    direct = false;
                    rest = folder;
                }
            })
            .await?;
        // Manifests are in walk order (as quilt3 and Sheaf write them); one
        // that is not is sorted here, for the lookups.
        if !files.is_sorted_by(|a, b| key::walk_order(&a.0, &b.0).is_le()) {
            files.sort_by(|a, b| key::walk_order(&a.0, &b.0));
        }
        Ok(Revision { index: Arc::new(index), files, folders })
    }

    /// Every table: `(path, format)`, the manifest table first, then files
    /// in walk order, then folders of Parquet parts.
    pub fn tables(&self) -> Vec<(String, Format)> {
        let mut out = vec![(String::new(), Format::Manifest)];
        out.extend(self.files.iter().map(|(path, format, _)| (path.clone(), *format)));
        let folders = self.folders.iter().filter(|(_, (_, listed))| *listed).map(|(f, _)| f);
        out.extend(folders.collect::<BTreeSet<_>>().into_iter().map(|f| (f.clone(), Format::Parquet)));
        out
    }

    /// The blocks holding the entries of the table at `path`, when it is
    /// one (a file table or a folder holding Parquet files).
    fn blocks_of(&self, path: &str) -> Option<Range<usize>> {
        if let Ok(i) = self.files.binary_search_by(|(k, _, _)| key::walk_order(k, path)) {
            let block = self.files[i].2;
            return Some(block..block + 1);
        }
        self.folders.get(path.trim_end_matches('/')).map(|(span, _)| span.clone())
    }

    /// Reads the table at `path` (`""`: the manifest table) from `registry`:
    /// only the blocks holding it, or, for a path that is no table, every
    /// block to say what it is instead.
    pub async fn table(&self, registry: &Registry, path: &str, package: &str) -> Result<Table, Error> {
        if path.is_empty() {
            return Ok(Table::manifest(self.index.clone()));
        }
        let blocks = self.blocks_of(path).unwrap_or(0..self.index.blocks.len());
        let mut finder = table::Finder::new(path);
        let mut read = registry.read_blocks(self.index.clone(), blocks);
        while let Some(block) = read.try_next().await? {
            block.into_iter().for_each(|e| finder.add(e));
        }
        finder.finish(package)
    }

    /// Memory the revision takes, about.
    pub fn memory_size(&self) -> usize {
        let files: usize =
            self.files.iter().map(|(k, _, _)| k.capacity() + std::mem::size_of::<(String, Format, usize)>()).sum();
        let folders: usize = self.folders.keys().map(|k| k.capacity() + 64).sum();
        std::mem::size_of::<Self>() + self.index.memory_size() + files + folders
    }
}
