//! Part of a revision, read without holding the whole manifest: the manifest
//! is streamed from storage a line at a time ([`crate::manifest::stream`]),
//! every line hashed, and only the entries under a prefix kept. `browse` of a
//! folder and `install`/`verify` of a sub-path use this, so their memory
//! follows the part they show or write, not the size of the package.

use super::{Error, PackageRef, Registry, Result};
use crate::manifest::stream::{LineParser, LineSplitter, line_text};
use crate::manifest::{self, Entry, Line, key};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde_json::{Map, Value};

/// The entries of one revision under a prefix, with the revision's header.
/// Not a manifest: it cannot be written back or re-hashed.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The revision's top hash (checked against the whole manifest).
    pub top_hash: String,
    /// The manifest's header (`message`, `user_meta`, ...).
    pub header: Map<String, Value>,
    /// The entries under the prefix, in manifest order.
    pub entries: Vec<Entry>,
}

impl Selection {
    /// The commit message: `None` when null or absent.
    pub fn message(&self) -> Option<&str> {
        self.header.get("message").and_then(Value::as_str)
    }

    /// Package-level user metadata, if any.
    pub fn user_meta(&self) -> Option<&Value> {
        self.header.get("user_meta")
    }
}

/// A line of a manifest as [`Registry::read_lines`] reads it.
pub(super) struct ReadLine<'a> {
    /// Its bytes, without the line break.
    pub(super) bytes: &'a [u8],
    /// Byte offsets of its start and of its end (after its line break).
    pub(super) start: u64,
    pub(super) end: u64,
    /// The entry or folder line it holds (`None`: the header, a blank line).
    pub(super) parsed: Option<Line>,
}

impl Registry {
    /// Resolves `r` and reads the entries of its manifest under `prefix`
    /// (`""` for every entry; a file's own key selects that file), checking
    /// the whole manifest's top hash before returning anything.
    pub async fn load_under(&self, r: &PackageRef, prefix: &str) -> Result<Selection> {
        let top_hash = self.resolve(&r.package, &r.revision).await?;
        self.read_under(&top_hash, prefix).await
    }

    /// The entries under `prefix` of the manifest named `top_hash`,
    /// streamed from storage.
    pub async fn read_under(&self, top_hash: &str, prefix: &str) -> Result<Selection> {
        let mut entries = Vec::new();
        let header = self
            .scan_under(top_hash, prefix, |e| {
                entries.push(e);
                Ok(())
            })
            .await?;
        Ok(Selection { top_hash: top_hash.to_owned(), header, entries })
    }

    /// Streams the manifest named `top_hash` from storage, handing each
    /// entry under `prefix` to `visit` in manifest order, and checks the
    /// whole manifest's top hash at the end (so nothing `visit` saw may be
    /// acted on before this returns `Ok`). Returns the header.
    ///
    /// Memory does not grow with the manifest when it is in walk order (as
    /// quilt3 and Sheaf write them); one that is not is read a second time to
    /// look for duplicate logical keys (16 bytes per entry).
    pub async fn scan_under(
        &self,
        top_hash: &str,
        prefix: &str,
        mut visit: impl FnMut(Entry) -> Result<()>,
    ) -> Result<Map<String, Value>> {
        Ok(self.scan_under_lines(top_hash, prefix, |e, _| visit(e)).await?.0)
    }

    /// As [`Registry::scan_under`], handing `visit` each entry's line as
    /// written too, and returning the header's line beside the header: for
    /// showing what a serde_json value cannot hold exactly (integers beyond
    /// 64 bits, see [`crate::manifest::json::Exact`]).
    pub async fn scan_under_lines(
        &self,
        top_hash: &str,
        prefix: &str,
        mut visit: impl FnMut(Entry, &str) -> Result<()>,
    ) -> Result<(Map<String, Value>, String)> {
        let mut header_line = None;
        let each = |line: ReadLine<'_>| match line.parsed {
            Some(Line::Entry(e)) if key::is_under(&e.logical_key, prefix) => {
                visit(e, std::str::from_utf8(line.bytes).unwrap_or_default())
            }
            None if header_line.is_none() && !line.bytes.trim_ascii().is_empty() => {
                header_line = Some(String::from_utf8_lossy(line.bytes).into_owned());
                Ok(())
            }
            _ => Ok(()),
        };
        let (header, sorted) = self.read_lines(top_hash, LineParser::streaming(), each).await?;
        if !sorted {
            self.check_unique_keys(top_hash).await?;
        }
        Ok((header, header_line.unwrap_or_default()))
    }

    /// Reads the manifest named `top_hash` again keeping every logical key
    /// (a fingerprint and a line, 16 bytes each), to refuse duplicates in a
    /// manifest not in walk order
    /// (a streaming pass only compares neighbours).
    pub(super) async fn check_unique_keys(&self, top_hash: &str) -> Result<()> {
        self.read_lines(top_hash, LineParser::new(), |_| Ok(())).await.map(drop)
    }

    /// Streams the manifest named `top_hash` through `parser`, handing every
    /// line to `each` with its place in the file, and checks the top hash at
    /// the end. Returns the header and whether the entries were in walk order.
    pub(super) async fn read_lines(
        &self,
        top_hash: &str,
        mut parser: LineParser,
        mut each: impl FnMut(ReadLine<'_>) -> Result<()>,
    ) -> Result<(Map<String, Value>, bool)> {
        let what = format!("manifest {top_hash} in {}", self.url());
        let bad = |source: manifest::Error| Error::Manifest { top_hash: top_hash.into(), source };
        let result = self.store.get(&Self::manifest_path(top_hash)).await.map_err(|e| Error::storage(&what, e))?;
        let expected = result.range.end - result.range.start;
        let mut chunks = super::body_stream(result);
        let mut splitter = LineSplitter::default();
        let (mut pos, mut received) = (0u64, 0u64);
        let mut feed = |bytes: &[u8], line_break: bool| -> Result<()> {
            let start = pos;
            pos += bytes.len() as u64 + u64::from(line_break);
            let text = line_text(bytes, parser.lines_read() + 1).map_err(bad)?;
            let parsed = parser.feed(text).map_err(bad)?;
            each(ReadLine { bytes, start, end: pos, parsed })
        };
        while let Some(chunk) = chunks.try_next().await.map_err(|e| Error::storage(&what, e))? {
            received += chunk.len() as u64;
            splitter.push(&chunk, |bytes| feed(bytes, true))?;
        }
        // A body that ends early is a failed read (worth a retry), not a
        // malformed manifest: said before its cut last line is parsed.
        if received != expected {
            return Err(Error::cut_short(what, received, expected));
        }
        splitter.finish(|bytes| feed(bytes, false))?;
        let sorted = parser.sorted();
        let (header, actual) = parser.finish().map_err(bad)?;
        if actual != top_hash {
            return Err(Error::Integrity {
                what: format!("manifest {top_hash} (corrupt)"),
                expected: top_hash.into(),
                actual,
            });
        }
        Ok((header, sorted))
    }
}
