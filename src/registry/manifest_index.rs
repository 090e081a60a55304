//! An index of a manifest's entry lines by byte offset, so that a run of
//! entries is read from storage without reading, parsing or holding the rest
//! (the manifest table of a million-file package, one of its tables).
//!
//! The index is built by one streamed pass over the manifest, which checks
//! the top hash and the logical keys as [`Registry::scan_under`] does, and
//! records every [`BLOCK_ENTRIES`] entries a [`Block`]: the byte range of
//! its lines, its entry count and content size, and a keyed digest of its
//! bytes. A later read of blocks fetches their byte range (one ranged GET)
//! and checks each block's digest before handing out any of its entries, so
//! a manifest changed in storage after it was indexed is an error, never
//! different rows. Nothing is written beside the manifest: quilt3 reads the
//! registry as before, and the index lives as long as the server's cache
//! keeps it (about 50 bytes per 1,024 entries).

use super::{Error, Registry, Result};
use crate::manifest::stream::{LineParser, LineSplitter, entry_line, line_text};
use crate::manifest::{self, Entry, Line};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::Arc;

/// Entries per block: a block is the unit a read fetches and checks.
pub const BLOCK_ENTRIES: usize = 1024;

/// A run of [`BLOCK_ENTRIES`] consecutive entries (fewer in the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Byte offset of its first entry's line.
    pub start: u64,
    /// Byte offset just past its last entry's line (and line break).
    pub end: u64,
    /// Entries in it.
    pub entries: u32,
    /// Total size of its entries' data.
    pub bytes: u64,
    /// Keyed digest of its lines ([`ManifestIndex::keys`]).
    digest: u64,
}

/// Where a manifest's entries are, by blocks of [`BLOCK_ENTRIES`].
#[derive(Debug)]
pub struct ManifestIndex {
    /// The manifest's top hash (checked by the pass that built the index).
    pub top_hash: String,
    /// The manifest's header (`message`, `user_meta`, ...).
    pub header: Map<String, Value>,
    /// Entries in the manifest.
    pub entries: u64,
    /// The blocks, in manifest order.
    pub blocks: Vec<Block>,
    /// The key of the blocks' digests: random per index, so bytes cannot be
    /// crafted to match a digest.
    keys: std::hash::RandomState,
}

impl ManifestIndex {
    /// The blocks holding entries `[start, end)`.
    pub fn blocks_of(&self, entries: Range<u64>) -> Range<usize> {
        if entries.start >= entries.end {
            return 0..0;
        }
        let block = BLOCK_ENTRIES as u64;
        (entries.start / block) as usize..entries.end.div_ceil(block).min(self.blocks.len() as u64) as usize
    }

    /// Position in the manifest of block `b`'s first entry.
    pub fn first_entry(&self, b: usize) -> u64 {
        (b * BLOCK_ENTRIES) as u64
    }

    /// Memory the index takes, about.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.top_hash.len()
            + self.blocks.len() * std::mem::size_of::<Block>()
            + Value::Object(self.header.clone()).to_string().len()
    }
}

/// Builds blocks from the lines of a manifest: an entry line opens a block
/// when none is open or the open one is full; the other lines (header,
/// folders, blank) belong to a block only between two of its entries.
struct Blocks {
    keys: std::hash::RandomState,
    done: Vec<Block>,
    open: Option<(Block, std::hash::DefaultHasher)>,
    /// Non-entry lines since the open block's last entry, hashed into it if
    /// another of its entries follows.
    pending: Vec<u8>,
}

impl Blocks {
    /// A line that holds no entry (header, folder, blank): part of the open
    /// block only if another of its entries follows.
    fn other(&mut self, text: &[u8]) {
        if self.open.is_some() {
            self.pending.extend_from_slice(text);
            self.pending.push(b'\n');
        }
    }

    /// An entry's line (`text` without its line break, at bytes `range`) of
    /// `size` bytes of data: returns the number of the block it went to.
    fn entry(&mut self, range: Range<u64>, text: &[u8], size: u64) -> usize {
        if self.open.as_ref().is_some_and(|(b, _)| b.entries as usize == BLOCK_ENTRIES) {
            self.close();
        }
        let (block, hasher) = self.open.get_or_insert_with(|| {
            let block = Block { start: range.start, end: range.end, entries: 0, bytes: 0, digest: 0 };
            (block, self.keys.build_hasher())
        });
        hasher.write(&self.pending);
        self.pending.clear();
        hasher.write(text);
        hasher.write(b"\n");
        block.end = range.end;
        block.entries += 1;
        block.bytes += size;
        self.done.len()
    }

    fn close(&mut self) {
        if let Some((mut block, hasher)) = self.open.take() {
            block.digest = hasher.finish();
            self.done.push(block);
        }
        self.pending.clear();
    }
}

/// Reads blocks back from the bytes of their range: keeps each block's lines
/// until its last one, checks the digest, then parses its entries.
struct BlockReader {
    index: Arc<ManifestIndex>,
    /// The next block to complete, and the end of those asked for.
    next: usize,
    last: usize,
    /// Byte offset of the next line.
    pos: u64,
    hasher: std::hash::DefaultHasher,
    lines: Vec<u8>,
    ready: VecDeque<Vec<Entry>>,
}

impl BlockReader {
    fn line(&mut self, text: &[u8]) -> Result<()> {
        let start = self.pos;
        self.pos += text.len() as u64 + 1;
        let Some(block) = self.index.blocks[..self.last].get(self.next) else { return Ok(()) };
        if start < block.start {
            // A folder or blank line between two blocks.
            return Ok(());
        }
        self.hasher.write(text);
        self.hasher.write(b"\n");
        self.lines.extend_from_slice(text);
        self.lines.push(b'\n');
        if start + text.len() as u64 + 1 < block.end {
            return Ok(());
        }
        let digest = std::mem::replace(&mut self.hasher, self.index.keys.build_hasher()).finish();
        let changed = |why: &str| Error::Integrity {
            what: format!("manifest {} (block {} of its index: {why})", self.index.top_hash, self.next),
            expected: "the bytes indexed".into(),
            actual: "other bytes".into(),
        };
        if digest != block.digest {
            return Err(changed("changed in storage since it was read"));
        }
        let bad = |source: manifest::Error| Error::Manifest { top_hash: self.index.top_hash.clone(), source };
        let mut entries = Vec::with_capacity(block.entries as usize);
        for raw in self.lines.split(|&b| b == b'\n') {
            if let Some(e) = entry_line(line_text(raw, 0).map_err(bad)?, 0).map_err(bad)? {
                entries.push(e);
            }
        }
        if entries.len() != block.entries as usize {
            return Err(changed("a different number of entries"));
        }
        self.lines.clear();
        self.ready.push_back(entries);
        self.next += 1;
        Ok(())
    }
}

impl Registry {
    /// Streams the manifest named `top_hash` once, checking it as
    /// [`Registry::scan_under`] does, and indexes its entries by blocks.
    /// `visit` sees every entry with the number of its block, in manifest
    /// order, before the top hash is checked (act on nothing it saw unless
    /// this returns `Ok`).
    pub async fn index_manifest(&self, top_hash: &str, mut visit: impl FnMut(usize, &Entry)) -> Result<ManifestIndex> {
        let keys = std::hash::RandomState::new();
        let mut blocks = Blocks { keys: keys.clone(), done: Vec::new(), open: None, pending: Vec::new() };
        let (header, sorted) = self
            .read_lines(top_hash, LineParser::streaming(), |line| {
                let range = line.start..line.end;
                match &line.parsed {
                    Some(Line::Entry(e)) => visit(blocks.entry(range, line.bytes, e.size), e),
                    _ => blocks.other(line.bytes),
                }
                Ok(())
            })
            .await?;
        blocks.close();
        if !sorted {
            // Duplicate logical keys, wherever they are (16 bytes per entry).
            self.check_unique_keys(top_hash).await?;
        }
        let entries = blocks.done.iter().map(|b| u64::from(b.entries)).sum();
        Ok(ManifestIndex { top_hash: top_hash.to_owned(), header, entries, blocks: blocks.done, keys })
    }

    /// The entries of `blocks` of an indexed manifest, a block at a time, in
    /// manifest order, fetched with one ranged read; each block is checked
    /// against its digest before any of its entries is handed out.
    pub fn read_blocks(
        &self,
        index: Arc<ManifestIndex>,
        blocks: Range<usize>,
    ) -> BoxStream<'static, Result<Vec<Entry>>> {
        let blocks = blocks.start.min(index.blocks.len())..blocks.end.min(index.blocks.len());
        if blocks.is_empty() {
            return futures::stream::empty().boxed();
        }
        let range = index.blocks[blocks.start].start..index.blocks[blocks.end - 1].end;
        let store = self.store.clone();
        let path = Self::manifest_path(&index.top_hash);
        let what = format!("manifest {} in {}", index.top_hash, self.url());
        let reader = BlockReader {
            hasher: index.keys.build_hasher(),
            next: blocks.start,
            last: blocks.end,
            pos: range.start,
            index,
            lines: Vec::new(),
            ready: VecDeque::new(),
        };
        struct State {
            body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
            splitter: Option<LineSplitter>,
            reader: BlockReader,
            received: u64,
        }
        let state = State { body: None, splitter: Some(LineSplitter::default()), reader, received: 0 };
        futures::stream::try_unfold(state, move |mut state| {
            let (store, path, what, range) = (store.clone(), path.clone(), what.clone(), range.clone());
            async move {
                loop {
                    if let Some(entries) = state.reader.ready.pop_front() {
                        return Ok(Some((entries, state)));
                    }
                    let Some(splitter) = state.splitter.as_mut() else { return Ok(None) };
                    if state.body.is_none() {
                        let options =
                            GetOptions { range: Some(GetRange::Bounded(range.clone())), ..Default::default() };
                        let result = store.get_opts(&path, options).await.map_err(|e| Error::storage(&what, e))?;
                        state.body = Some(super::body_stream(result));
                    }
                    let body = state.body.as_mut().expect("opened above");
                    match body.try_next().await.map_err(|e| Error::storage(&what, e))? {
                        Some(chunk) => {
                            state.received += chunk.len() as u64;
                            splitter.push(&chunk, |line| state.reader.line(line))?;
                        }
                        None => {
                            // A body that ends early is a failed read (worth a
                            // retry), whether the read or the file was cut.
                            let expected = range.end - range.start;
                            if state.received != expected {
                                return Err(Error::cut_short(what, state.received, expected));
                            }
                            let splitter = state.splitter.take().expect("present");
                            splitter.finish(|line| state.reader.line(line))?;
                            if state.reader.next < state.reader.last {
                                return Err(Error::Integrity {
                                    what: format!("manifest {} (its index)", state.reader.index.top_hash),
                                    expected: format!("{} blocks", state.reader.last),
                                    actual: format!("{} blocks", state.reader.next),
                                });
                            }
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    /// A registry holding one manifest of `n` entries, with folder lines
    /// between some entries; returns it, the manifest's top hash and path.
    async fn registry_with(n: usize) -> (tempfile::TempDir, Registry, Manifest) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path().to_str().unwrap()).unwrap();
        let mut text = String::from("{\"version\": \"v0\", \"message\": \"m\"}\n");
        for i in 0..n {
            if i % 700 == 0 {
                text.push_str(&format!("{{\"logical_key\": \"d{:05}/\", \"meta\": {{\"n\": {i}}}}}\n", i / 700));
            }
            text.push_str(&format!(
                "{{\"logical_key\": \"d{:05}/f{i:07}.bin\", \"physical_keys\": [\"file:///x/{i}\"], \"size\": {i}, \
                 \"hash\": {{\"type\": \"SHA256\", \"value\": \"{}\"}}, \"meta\": {{}}}}\n",
                i / 700,
                "0".repeat(64)
            ));
        }
        let manifest = Manifest::parse(text.as_bytes()).unwrap();
        let top = manifest.top_hash();
        let path = dir.path().join(".quilt/packages").join(&top);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        (dir, registry, manifest)
    }

    #[tokio::test]
    async fn blocks_read_back_the_entries_of_the_manifest() {
        let (_dir, registry, manifest) = registry_with(3000).await;
        let top = manifest.top_hash();
        let mut seen = Vec::new();
        let index =
            Arc::new(registry.index_manifest(&top, |b, e| seen.push((b, e.logical_key.clone()))).await.unwrap());
        assert_eq!(index.entries, 3000);
        assert_eq!(index.blocks.len(), 3);
        assert_eq!(index.blocks.iter().map(|b| b.entries).collect::<Vec<_>>(), [1024, 1024, 952]);
        assert_eq!(seen[1023].0, 0);
        assert_eq!(seen[1024].0, 1);
        assert_eq!(index.header.get("message"), Some(&Value::from("m")));
        let all: Vec<Entry> = manifest.entries().cloned().collect();
        for blocks in [0..3, 1..2, 2..3, 0..1, 1..3] {
            let read: Vec<Entry> = registry.read_blocks(index.clone(), blocks.clone()).try_concat().await.unwrap();
            let from = index.first_entry(blocks.start) as usize;
            assert_eq!(read, all[from..from + read.len()], "blocks {blocks:?}");
            let expected: u32 = index.blocks[blocks].iter().map(|b| b.entries).sum();
            assert_eq!(read.len(), expected as usize);
        }
        assert_eq!(index.blocks_of(0..1), 0..1);
        assert_eq!(index.blocks_of(1023..1025), 0..2);
        assert_eq!(index.blocks_of(2048..3000), 2..3);
        assert_eq!(index.blocks_of(5..5), 0..0);
    }

    #[tokio::test]
    async fn a_manifest_changed_after_indexing_is_an_error() {
        let (dir, registry, manifest) = registry_with(2100).await;
        let top = manifest.top_hash();
        let index = Arc::new(registry.index_manifest(&top, |_, _| {}).await.unwrap());
        let path = dir.path().join(".quilt/packages").join(&top);
        let text = std::fs::read_to_string(&path).unwrap();
        // Same length, one entry's size changed in the second block.
        let changed = text.replacen("\"size\": 1500,", "\"size\": 1501,", 1);
        assert_ne!(changed, text);
        std::fs::write(&path, &changed).unwrap();
        let first: Vec<Entry> = registry.read_blocks(index.clone(), 0..1).try_concat().await.unwrap();
        assert_eq!(first.len(), 1024);
        let err = registry.read_blocks(index.clone(), 1..2).try_concat().await.unwrap_err();
        assert!(err.to_string().contains(&top) && err.to_string().contains("block 1"), "{err}");
        // Cut short.
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let err = registry.read_blocks(index, 0..3).try_concat().await.unwrap_err();
        assert!(err.to_string().contains(&top), "{err}");
    }
}
