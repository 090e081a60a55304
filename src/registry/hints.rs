//! What the latest revision says about the files a push walks, read a line
//! at a time beside the walk: both are in walk order, so the previous
//! manifest is merged with the walk like two sorted lists and memory holds
//! one entry, whatever the package's size. A file whose key and size match
//! is probably unchanged: `push` then hashes it without copying, and copies
//! it only if its blob is missing.
//!
//! Only a hint: nothing read here is trusted or written. A previous manifest
//! that cannot be read, or is not in walk order, only means fewer hints (the
//! whole manifest's hash is not checked before a hint is used).

use super::Registry;
use crate::manifest::hash::EntryHash;
use crate::manifest::key;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::cmp::Ordering;
use tokio::sync::mpsc;

/// Chunks of the manifest in flight between the reading task and the walk.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The part of a manifest line a hint needs.
#[derive(serde::Deserialize)]
struct Line {
    logical_key: String,
    size: Option<u64>,
    hash: Option<EntryHash>,
}

/// A previous revision's entries, consumed in walk order by
/// [`Hints::lookup`] on a blocking thread.
pub(super) struct Hints {
    chunks: Option<mpsc::Receiver<Bytes>>,
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    pos: usize,
    header_read: bool,
    next: Option<Line>,
}

impl Hints {
    /// No previous revision: no hints.
    pub(super) fn none() -> Self {
        Hints { chunks: None, buf: Vec::new(), pos: 0, header_read: true, next: None }
    }

    /// The previous revision's `(size, hash)` of `key`, when it holds `key`
    /// with a hash naming a blob. Keys must be asked in walk order: the
    /// entries before `key` are passed over for good. Blocks while the
    /// manifest is read; call it on a blocking thread.
    pub(super) fn lookup(&mut self, key: &str) -> Option<(u64, EntryHash)> {
        loop {
            if self.next.is_none() {
                self.next = Some(self.read_line()?);
            }
            let line = self.next.as_ref().expect("just read");
            match key::walk_order(&line.logical_key, key) {
                Ordering::Less => self.next = None,
                Ordering::Greater => return None,
                Ordering::Equal => {
                    let line = self.next.take().expect("just read");
                    let hash = line.hash.filter(|h| h.blob_hex().is_some())?;
                    return Some((line.size?, hash));
                }
            }
        }
    }

    /// The next entry line, or `None` at the end or on anything unexpected
    /// (which ends the hints).
    fn read_line(&mut self) -> Option<Line> {
        loop {
            let text = self.next_text()?;
            if !self.header_read {
                self.header_read = true;
                continue;
            }
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Line>(&text) {
                // A folder-metadata line has no hash: not a file.
                Ok(line) if line.hash.is_some() => return Some(line),
                Ok(_) => continue,
                Err(_) => {
                    self.chunks = None;
                    return None;
                }
            }
        }
    }

    /// The next line's bytes, waiting for more chunks as needed.
    fn next_text(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(len) = self.buf[self.pos..].iter().position(|b| *b == b'\n') {
                let line = self.buf[self.pos..self.pos + len].to_vec();
                self.pos += len + 1;
                return Some(line);
            }
            self.buf.drain(..self.pos);
            self.pos = 0;
            match self.chunks.as_mut().and_then(mpsc::Receiver::blocking_recv) {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => {
                    self.chunks = None;
                    return (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf));
                }
            }
        }
    }
}

impl Registry {
    /// Hints from the manifest named `top_hash`, read by a task of the
    /// current runtime while the caller walks.
    pub(super) fn hints(&self, top_hash: &str) -> Hints {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let store = self.store.clone();
        let path = Self::manifest_path(top_hash);
        tokio::spawn(async move {
            // A failed read ends the hints early: the channel closes.
            let Ok(result) = store.get(&path).await else { return };
            let mut chunks = super::body_stream(result);
            while let Ok(Some(chunk)) = chunks.try_next().await {
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        });
        Hints { chunks: Some(rx), buf: Vec::new(), pos: 0, header_read: false, next: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints_of(text: &str, chunk: usize) -> Hints {
        let (tx, rx) = mpsc::channel(1024);
        for piece in text.as_bytes().chunks(chunk) {
            tx.try_send(Bytes::copy_from_slice(piece)).unwrap();
        }
        Hints { chunks: Some(rx), buf: Vec::new(), pos: 0, header_read: false, next: None }
    }

    fn line(key: &str, size: u64, kind: &str) -> String {
        format!(
            "{{\"logical_key\": \"{key}\", \"physical_keys\": [\"file:///x\"], \"size\": {size}, \
             \"hash\": {{\"type\": \"{kind}\", \"value\": \"{}\"}}, \"meta\": {{}}}}\n",
            // 32 bytes in base64, as sha2-256-chunked values are written.
            "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
        )
    }

    #[test]
    fn merges_the_previous_manifest_with_keys_asked_in_walk_order() {
        let text = [
            "{\"version\": \"v0\", \"message\": null}\n".to_owned(),
            line("B", 1, "sha2-256-chunked"),
            "{\"logical_key\": \"a/\", \"meta\": {\"x\": 1}}\n".to_owned(),
            line("a/b", 2, "sha2-256-chunked"),
            line("a-b", 3, "SHA256"),
            line("b.txt", 4, "sha2-256-chunked"),
        ]
        .concat();
        for chunk in [1, 7, 4096] {
            let mut h = hints_of(&text, chunk);
            assert_eq!(h.lookup("A"), None, "before the first entry");
            assert_eq!(h.lookup("a/b").map(|(size, _)| size), Some(2), "B passed over");
            assert_eq!(h.lookup("a-b"), None, "hashes that name no blob are no hint");
            assert_eq!(h.lookup("b/x"), None, "a key the manifest lacks");
            assert_eq!(h.lookup("b.txt").map(|(size, _)| size), Some(4));
            assert_eq!(h.lookup("c"), None, "after the end");
        }
    }

    #[test]
    fn a_damaged_line_ends_the_hints() {
        let text =
            ["{\"version\": \"v0\"}\n".to_owned(), "{not json\n".to_owned(), line("x", 1, "sha2-256-chunked")].concat();
        assert_eq!(hints_of(&text, 5).lookup("x"), None);
        assert_eq!(Hints::none().lookup("x"), None);
    }
}
