//! Package manifests in quilt3's JSONL format, and their top hashes.
//!
//! This layer does no I/O: it parses, builds, encodes and hashes manifests.
//! A manifest is a header line followed by entry lines and folder-metadata
//! lines. Everything read is kept, including header keys and entry fields
//! Sheaf does not know, so a read/write round trip loses nothing. (The one key
//! that is read but not hashed is the obsolete header `top_hash` of old
//! manifests, which quilt3 drops when it loads them.)

pub mod hash;
mod header;
pub mod json;
pub mod key;
pub mod stream;
pub mod writer;

use hash::EntryHash;
use serde_json::{Map, Value, json};

/// Errors in a manifest's content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line is not valid JSON or lacks a required field.
    #[error("manifest line {line}: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A logical key that could escape an install directory or is malformed.
    #[error("invalid logical key {key:?}: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Two entries with the same logical key.
    #[error("duplicate logical key {0:?}")]
    DuplicateKey(String),
    /// Two entries with the same logical key, found by a streaming pass
    /// (which keeps fingerprints of the keys, not the keys): their lines.
    #[error("duplicate logical key on manifest lines {first} and {second}")]
    DuplicateKeyAt {
        /// Line of the first entry (1 is the header).
        first: usize,
        /// Line of the second.
        second: usize,
    },
    /// An entry's key is a folder of another entry's key (`x` and `x/y`):
    /// no file system can hold both (quilt3 does not load such a manifest).
    #[error("logical key {file:?} is a file, but {under:?} makes it a folder")]
    FileIsFolder {
        /// The key of the file.
        file: String,
        /// A key under it.
        under: String,
    },
    /// [`Error::FileIsFolder`] found by a streaming pass of a manifest not in
    /// walk order (which keeps fingerprints of the keys): their lines.
    #[error("the logical key on manifest line {file} is a file, but the one on line {under} makes it a folder")]
    FileIsFolderAt {
        /// Line of the file's entry (1 is the header).
        file: usize,
        /// Line of an entry under it.
        under: usize,
    },
    /// An entry written after one it sorts before (manifests are in walk
    /// order, see [`key::walk_order`]).
    #[error("logical key {key:?} comes before {previous:?} but was written after it")]
    OutOfOrder {
        /// The key written before.
        previous: String,
        /// The key that should have come first.
        key: String,
    },
    /// An entry whose hash type Sheaf cannot compute, so its data cannot be
    /// checked (a newer quilt, or a foreign writer).
    #[error(
        "entry {key:?} is hashed with {kind:?}, a hash type Sheaf cannot verify (it verifies {}); \
         refusing to treat its data as verified",
        hash::VERIFIABLE.join(", ")
    )]
    UnverifiableHash {
        /// The entry's logical key.
        key: String,
        /// Its hash type.
        kind: String,
    },
}

/// A header key of old manifests (`{"version": "v0", "top_hash": {...}}`) that
/// quilt3 drops when it loads a manifest ("obsolete as of PR #130"), so it is
/// not part of the top hash.
pub const OBSOLETE_TOP_HASH_KEY: &str = "top_hash";

/// One file of a package.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Path inside the package, `/`-separated, validated.
    pub logical_key: String,
    /// Where the bytes live (URLs: `file://`, `s3://`, ...). Not hashed.
    pub physical_keys: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// Content hash.
    pub hash: EntryHash,
    /// Entry metadata (quilt3 keeps user metadata under `user_meta`).
    pub meta: Value,
    /// Fields Sheaf does not interpret, kept for round trips.
    pub extra: Map<String, Value>,
}

/// A folder-metadata line: `{"logical_key": "dir/", "meta": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DirMeta {
    /// Folder key, ending with `/`.
    pub logical_key: String,
    /// The folder's metadata.
    pub meta: Value,
    /// Fields Sheaf does not interpret.
    pub extra: Map<String, Value>,
}

/// A line after the header, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A file.
    Entry(Entry),
    /// Folder metadata.
    Dir(DirMeta),
}

/// What parsing learned about a manifest's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The top hash of the manifest as written.
    pub top_hash: String,
    /// Where it first holds numbers serde_json values hold only
    /// approximately (integers beyond 64 bits, `-0`), if anywhere. Such
    /// lines are kept as read ([`Manifest`] keeps them beside its values), so
    /// they hash and are written back exactly.
    pub inexact: Option<String>,
}

/// What a manifest read from storage holds that its serde_json values
/// cannot: the lines with integers beyond 64 bits or `-0`, as written.
/// Python keeps such numbers exact, so quilt3 hashes and writes them back
/// unchanged, and so does Sheaf: from this text, never from the values.
#[derive(Debug, Clone, Default, PartialEq)]
struct ExactLines {
    /// The header, its numbers as written.
    header: Option<json::Exact>,
    /// The header line as read, while the header is unchanged.
    header_text: Option<Box<str>>,
    /// Entry and folder lines as read, by logical key.
    lines: std::collections::HashMap<String, Box<str>>,
}

/// A parsed or newly built manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The header object, as read or built (`version`, `message`, `user_meta`, ...).
    pub header: Map<String, Value>,
    /// Entries and folder lines in file order. Their values hold integers
    /// beyond 64 bits as the nearest float: what is written and hashed for
    /// such a line is its text as read.
    pub lines: Vec<Line>,
    exact: ExactLines,
}

impl Manifest {
    /// Builds a new manifest the way quilt3's `build` does: header
    /// `{"version": "v0", "message": ..., "user_meta": ...}` and entries in walk
    /// order. Keys must already be valid and unique.
    pub fn build(
        message: Option<String>,
        user_meta: Option<Map<String, Value>>,
        mut entries: Vec<Entry>,
    ) -> Result<Self, Error> {
        let header = writer::new_header(message, user_meta);
        entries.sort_by(|a, b| key::walk_order(&a.logical_key, &b.logical_key));
        for pair in entries.windows(2) {
            if pair[0].logical_key == pair[1].logical_key {
                return Err(Error::DuplicateKey(pair[0].logical_key.clone()));
            }
            check_pair(&pair[0].logical_key, &pair[1].logical_key)?;
        }
        for e in &entries {
            key::validate(&e.logical_key).map_err(|reason| Error::InvalidKey { key: e.logical_key.clone(), reason })?;
        }
        Ok(Manifest { header, lines: entries.into_iter().map(Line::Entry).collect(), exact: ExactLines::default() })
    }

    /// A new revision of this manifest: `changes` replace the entries with
    /// the same logical key or are added (in walk order); the header is kept
    /// (user metadata, unknown fields) but for its `message` and an obsolete
    /// `top_hash` key, which quilt3 would not write either.
    pub fn with_changes(&self, changes: Vec<Entry>, message: Option<String>) -> Result<Self, Error> {
        let mut header = self.header.clone();
        header.shift_remove(OBSOLETE_TOP_HASH_KEY);
        let message = message.map(Value::String).unwrap_or(Value::Null);
        let mut exact = self.exact.clone();
        exact.header_text = None;
        if let Some(json::Exact::Object(members)) = &mut exact.header {
            members.retain(|(k, _)| k != OBSOLETE_TOP_HASH_KEY);
            let text = json::encode(&message, json::Style::ManifestLine);
            let value = json::parse_exact(&text).expect("encoded JSON parses");
            // Python's dict: a repeated key keeps its first place, last value.
            match members.iter().position(|(k, _)| k == "message") {
                Some(i) => {
                    members.retain(|(k, _)| k != "message");
                    members.insert(i, ("message".into(), value));
                }
                None => members.push(("message".into(), value)),
            }
        }
        header.insert("message".into(), message);
        let mut by_key: std::collections::HashMap<String, Entry> = std::collections::HashMap::new();
        for e in changes {
            key::validate(&e.logical_key).map_err(|reason| Error::InvalidKey { key: e.logical_key.clone(), reason })?;
            if let Some(dup) = by_key.insert(e.logical_key.clone(), e) {
                return Err(Error::DuplicateKey(dup.logical_key));
            }
        }
        for key in by_key.keys() {
            exact.lines.remove(key);
        }
        let mut lines: Vec<Line> = self
            .lines
            .iter()
            .map(|line| match line {
                Line::Entry(e) => Line::Entry(by_key.remove(&e.logical_key).unwrap_or_else(|| e.clone())),
                dir => dir.clone(),
            })
            .collect();
        lines.extend(by_key.into_values().map(Line::Entry));
        lines.sort_by(|a, b| key::walk_order(a.logical_key(), b.logical_key()));
        let mut previous: Option<&str> = None;
        for line in &lines {
            if let Line::Entry(e) = line {
                if let Some(previous) = previous {
                    check_pair(previous, &e.logical_key)?;
                }
                previous = Some(&e.logical_key);
            }
        }
        Ok(Manifest { header, lines, exact })
    }

    /// Parses JSONL manifest bytes, validating every logical key (a
    /// [`stream::LineParser`] keeping every line).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse_hashed(bytes).map(|(m, _)| m)
    }

    /// Parses like [`Manifest::parse`], also returning the top hash of the
    /// bytes as written. It equals [`Manifest::top_hash`] unless the manifest
    /// holds numbers serde_json cannot keep exactly ([`Parsed::inexact`]),
    /// which this hash covers as quilt3 does.
    pub fn parse_hashed(bytes: &[u8]) -> Result<(Self, Parsed), Error> {
        let mut parser = stream::LineParser::new();
        let mut lines = Vec::new();
        let mut exact = ExactLines::default();
        for raw in bytes.split(|&b| b == b'\n') {
            let text = stream::line_text(raw, parser.lines_read() + 1)?;
            match parser.feed(text)? {
                Some(line) => {
                    if parser.last_line_inexact() {
                        exact.lines.insert(line.logical_key().to_owned(), text.into());
                    }
                    lines.push(line);
                }
                None if exact.header.is_none() && parser.exact_header().is_some() => {
                    exact.header = parser.exact_header().cloned();
                    exact.header_text = Some(text.into());
                }
                None => {}
            }
        }
        let inexact = parser.inexact().map(str::to_owned);
        let (header, top_hash) = match parser.finish() {
            Ok(done) => done,
            Err(Error::DuplicateKey(_) | Error::DuplicateKeyAt { .. }) => {
                // Name the key (the parser only keeps fingerprints).
                let mut seen = std::collections::HashSet::new();
                let dup = lines.iter().find_map(|l| match l {
                    Line::Entry(e) if !seen.insert(e.logical_key.as_str()) => Some(e.logical_key.clone()),
                    _ => None,
                });
                return Err(Error::DuplicateKey(dup.unwrap_or_default()));
            }
            Err(Error::FileIsFolderAt { file, under }) => {
                // Name the keys (the parser only keeps fingerprints).
                let mut keys: Vec<&str> = lines
                    .iter()
                    .filter_map(|l| match l {
                        Line::Entry(e) => Some(e.logical_key.as_str()),
                        _ => None,
                    })
                    .collect();
                keys.sort_by(|a, b| key::walk_order(a, b));
                return Err(keys
                    .windows(2)
                    .find_map(|w| check_pair(w[0], w[1]).err())
                    .unwrap_or(Error::FileIsFolderAt { file, under }));
            }
            Err(e) => return Err(e),
        };
        Ok((Manifest { header, lines, exact }, Parsed { top_hash, inexact }))
    }

    /// Encodes the manifest as quilt3 writes it: one JSON object per line,
    /// `\n`-terminated, UTF-8, Python's default separators.
    pub fn to_jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_jsonl(&mut out).expect("writing to memory cannot fail");
        out
    }

    /// Writes the manifest as [`Manifest::to_jsonl`] does, a line at a time
    /// (a manifest of a million entries never exists as one string).
    pub fn write_jsonl<W: std::io::Write + ?Sized>(&self, out: &mut W) -> std::io::Result<()> {
        match (&self.exact.header_text, &self.exact.header) {
            (Some(text), _) => writeln!(out, "{text}")?,
            (None, Some(header)) => writeln!(out, "{}", json::encode_exact_line(header))?,
            (None, None) => writer::write_line(out, &Value::Object(self.header.clone()))?,
        }
        for line in &self.lines {
            match self.exact_line(line) {
                Some(text) => writeln!(out, "{text}")?,
                None => writer::write_line(out, &line.to_json())?,
            }
        }
        Ok(())
    }

    /// The text of `line` as read, when it holds numbers its values do not.
    fn exact_line(&self, line: &Line) -> Option<&str> {
        match self.exact.lines.is_empty() {
            true => None,
            false => self.exact.lines.get(line.logical_key()).map(|t| &**t),
        }
    }

    /// The top hash (64 lowercase hex characters), computed exactly as quilt3's
    /// `Package.top_hash` of the manifest as quilt3 loads it: SHA-256 over the
    /// canonical JSON of the header (without an obsolete `top_hash` key), then
    /// of `{hash, logical_key, meta, size}` for every entry in order.
    pub fn top_hash(&self) -> String {
        let mut hasher = match &self.exact.header {
            Some(header) => stream::TopHasher::new_exact(header),
            None => stream::TopHasher::new(&self.header),
        };
        for line in &self.lines {
            let Line::Entry(e) = line else { continue };
            match self.exact_line(line) {
                Some(text) => hasher.entry_exact(&json::parse_exact(text).expect("parsed when it was read")),
                None => hasher.entry(e),
            }
        }
        hasher.finish()
    }

    /// Fails with [`Error::UnverifiableHash`] for the first of `entries`
    /// whose hash type Sheaf cannot compute: data that cannot be checked must
    /// never pass as checked (install and verify call this before touching
    /// any file).
    pub fn require_verifiable<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<(), Error> {
        match entries.into_iter().find(|e| !e.hash.is_verifiable()) {
            Some(e) => Err(Error::UnverifiableHash { key: e.logical_key.clone(), kind: e.hash.kind.clone() }),
            None => Ok(()),
        }
    }

    /// About how many bytes of memory the manifest takes (its lines, their
    /// strings and metadata), for caches bounded by memory.
    pub fn memory_size(&self) -> usize {
        let lines: usize = self
            .lines
            .iter()
            .map(|line| match line {
                Line::Entry(e) => e.memory_size() - std::mem::size_of::<Entry>(),
                Line::Dir(d) => d.logical_key.capacity() + json_size(&d.meta) + map_size(&d.extra),
            })
            .sum();
        let exact: usize = self.exact.lines.iter().map(|(k, t)| k.capacity() + t.len() + 4 * 8).sum();
        std::mem::size_of::<Self>()
            + exact
            + map_size(&self.header)
            + self.lines.capacity() * std::mem::size_of::<Line>()
            + lines
    }

    /// File entries in order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(e) => Some(e),
            Line::Dir(_) => None,
        })
    }

    /// The commit message: `None` when null or absent.
    pub fn message(&self) -> Option<&str> {
        self.header.get("message").and_then(Value::as_str)
    }

    /// Package-level user metadata, if any.
    pub fn user_meta(&self) -> Option<&Value> {
        self.header.get("user_meta")
    }
}

impl Line {
    /// The entry's or folder's logical key.
    pub fn logical_key(&self) -> &str {
        match self {
            Line::Entry(e) => &e.logical_key,
            Line::Dir(d) => &d.logical_key,
        }
    }

    /// The line as the JSON object quilt3 writes.
    pub fn to_json(&self) -> Value {
        match self {
            Line::Entry(e) => e.to_json(),
            Line::Dir(d) => {
                let mut obj = Map::new();
                obj.insert("logical_key".into(), json!(d.logical_key));
                obj.insert("meta".into(), d.meta.clone());
                obj.extend(d.extra.clone());
                Value::Object(obj)
            }
        }
    }
}

impl Entry {
    /// About how many bytes of memory the entry takes (itself, its strings
    /// and metadata), for caches bounded by memory.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.logical_key.capacity()
            + self.physical_keys.iter().map(|k| std::mem::size_of::<String>() + k.capacity()).sum::<usize>()
            + self.hash.kind.capacity()
            + self.hash.value.capacity()
            + json_size(&self.meta)
            + map_size(&self.extra)
    }

    /// The entry's line as the JSON object quilt3 writes.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("logical_key".into(), json!(self.logical_key));
        obj.insert("physical_keys".into(), json!(self.physical_keys));
        obj.insert("size".into(), json!(self.size));
        obj.insert("hash".into(), json!({"type": self.hash.kind, "value": self.hash.value}));
        obj.insert("meta".into(), self.meta.clone());
        obj.extend(self.extra.clone());
        Value::Object(obj)
    }
}

/// Refuses two keys next to each other in walk order where the first is a
/// folder of the second (`x`, `x/y`): in walk order a file's key is followed
/// by the keys under it, so checking neighbours finds every such pair.
pub(crate) fn check_pair(previous: &str, key: &str) -> Result<(), Error> {
    match key::is_strictly_under(key, previous) {
        true => Err(Error::FileIsFolder { file: previous.into(), under: key.into() }),
        false => Ok(()),
    }
}

fn parse_line(mut obj: Map<String, Value>, line: usize) -> Result<Line, Error> {
    let bad = |message: &str| Error::Parse { line, message: message.to_string() };
    let logical_key = match obj.remove("logical_key") {
        Some(Value::String(k)) => k,
        _ => return Err(bad("missing string \"logical_key\"")),
    };
    let meta = obj.remove("meta").unwrap_or(Value::Null);
    if !obj.contains_key("physical_keys") && !obj.contains_key("hash") {
        key::validate_dir(&logical_key).map_err(|reason| Error::InvalidKey { key: logical_key.clone(), reason })?;
        return Ok(Line::Dir(DirMeta { logical_key, meta, extra: obj }));
    }
    key::validate(&logical_key).map_err(|reason| Error::InvalidKey { key: logical_key.clone(), reason })?;
    let physical_keys = match obj.remove("physical_keys") {
        Some(Value::Array(keys)) => keys
            .into_iter()
            .map(|k| k.as_str().map(str::to_owned).ok_or_else(|| bad("physical_keys must be strings")))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("missing array \"physical_keys\"")),
    };
    let size = obj.remove("size").and_then(|s| s.as_u64()).ok_or_else(|| bad("missing integer \"size\""))?;
    let hash: EntryHash = obj
        .remove("hash")
        .and_then(|h| serde_json::from_value(h).ok())
        .ok_or_else(|| bad("missing \"hash\" object with \"type\" and \"value\""))?;
    Ok(Line::Entry(Entry { logical_key, physical_keys, size, hash, meta, extra: obj }))
}

/// Heap bytes a JSON value holds beyond its own size (strings, and for
/// arrays and objects their items; an object's entry counts a key, a value
/// and about three words of its map's bookkeeping).
fn json_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.capacity(),
        Value::Array(items) => items.iter().map(|v| std::mem::size_of::<Value>() + json_size(v)).sum(),
        Value::Object(map) => map_size(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

fn map_size(map: &Map<String, Value>) -> usize {
    map.iter()
        .map(|(k, v)| {
            std::mem::size_of::<String>() + k.capacity() + std::mem::size_of::<Value>() + 3 * 8 + json_size(v)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, size: u64, value: &str) -> Entry {
        Entry {
            logical_key: key.into(),
            physical_keys: vec![format!("file:///tmp/{key}")],
            size,
            hash: EntryHash { kind: hash::SHA2_256_CHUNKED.into(), value: value.into() },
            meta: json!({}),
            extra: Map::new(),
        }
    }

    #[test]
    fn memory_size_counts_every_entry_and_its_metadata() {
        let entries = |n: usize| (0..n).map(|i| entry(&format!("dir/file-{i:06}.txt"), 1, "AAAA")).collect();
        let small = Manifest::build(None, None, entries(10)).unwrap().memory_size();
        let large = Manifest::build(None, None, entries(10_000)).unwrap().memory_size();
        // Each entry holds its key, a physical key, a hash and a line: well
        // over 100 bytes, and never a kilobyte.
        let per_entry = (large - small) / 9_990;
        assert!((100..1000).contains(&per_entry), "{per_entry} bytes per entry");
        let mut with_meta = Manifest::build(None, None, entries(10)).unwrap();
        if let Line::Entry(e) = &mut with_meta.lines[0] {
            e.meta = json!({"sheaf": {"profile": {"notes": "x".repeat(10_000), "columns": [1, 2, 3]}}});
        }
        assert!(with_meta.memory_size() >= small + 10_000);
    }

    #[test]
    fn no_revision_holds_a_file_that_is_also_a_folder() {
        let got = Manifest::build(None, None, vec![entry("x/y", 1, "AAAA"), entry("x", 1, "AAAA")]);
        assert!(matches!(&got, Err(Error::FileIsFolder { file, under }) if file == "x" && under == "x/y"), "{got:?}");
        let base = Manifest::build(None, None, vec![entry("x", 1, "AAAA"), entry("x-y", 1, "AAAA")]).unwrap();
        let got = base.with_changes(vec![entry("x/z/w", 1, "AAAA")], None);
        assert!(matches!(&got, Err(Error::FileIsFolder { file, under }) if file == "x" && under == "x/z/w"), "{got:?}");
        base.with_changes(vec![entry("x.d/z", 1, "AAAA"), entry("x", 2, "BBBB")], None).unwrap();
    }

    #[test]
    fn header_only_vector_from_quilt3() {
        let m = Manifest::parse(br#"{"version": "v0", "message": null}"#).unwrap();
        assert_eq!(m.top_hash(), "2a5a67156ca9238c14d12042db51c5b52260fdd5511b61ea89b58929d6e1769b");
        let built = Manifest::build(None, None, vec![]).unwrap();
        assert_eq!(built.top_hash(), m.top_hash());
    }

    #[test]
    fn null_empty_and_absent_messages_differ() {
        let null = Manifest::parse(br#"{"version": "v0", "message": null}"#).unwrap().top_hash();
        let empty = Manifest::parse(br#"{"version": "v0", "message": ""}"#).unwrap().top_hash();
        let absent = Manifest::parse(br#"{"version": "v0"}"#).unwrap().top_hash();
        assert_ne!(null, empty);
        assert_ne!(null, absent);
        assert_ne!(empty, absent);
    }

    #[test]
    fn round_trip_keeps_unknown_keys_and_folder_lines() {
        let text = concat!(
            "{\"version\": \"v0\", \"message\": \"hé\", \"custom\": [1, 2.5], \"user_meta\": {\"z\": 1e+16}}\n",
            "{\"logical_key\": \"a/\", \"meta\": {\"x\": 1}}\n",
            "{\"logical_key\": \"a/b.txt\", \"physical_keys\": [\"file:///x\"], \"size\": 3, ",
            "\"hash\": {\"type\": \"sha2-256-chunked\", \"value\": \"abc=\"}, \"meta\": {}, \"future\": true}\n",
        );
        let m = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(m.to_jsonl()).unwrap(), text);
        assert_eq!(Manifest::parse(&m.to_jsonl()).unwrap().top_hash(), m.top_hash());
    }

    #[test]
    fn build_sorts_in_walk_order_and_refuses_bad_keys() {
        let m = Manifest::build(None, None, vec![entry("b.txt", 1, "x"), entry("B", 1, "y"), entry("a/b", 1, "z")])
            .unwrap();
        let keys: Vec<_> = m.entries().map(|e| e.logical_key.as_str()).collect();
        assert_eq!(keys, ["B", "a/b", "b.txt"]);
        assert!(matches!(Manifest::build(None, None, vec![entry("../x", 1, "x")]), Err(Error::InvalidKey { .. })));
        assert!(matches!(
            Manifest::build(None, None, vec![entry("x", 1, "x"), entry("x", 1, "x")]),
            Err(Error::DuplicateKey(_))
        ));
    }

    /// Top hashes computed by quilt3 8.0.0 (`Package.load(...).top_hash`),
    /// which drops the obsolete header key `top_hash` before hashing.
    #[test]
    fn legacy_top_hash_header_key_is_not_hashed_as_quilt3_does() {
        let legacy = concat!(
            "{\"version\": \"v0\", \"top_hash\": {\"alg\": \"v0\", \"value\": ",
            "\"2a5a67156ca9238c14d12042db51c5b52260fdd5511b61ea89b58929d6e1769b\"}, \"message\": null}\n",
        );
        let m = Manifest::parse(legacy.as_bytes()).unwrap();
        assert_eq!(m.top_hash(), "2a5a67156ca9238c14d12042db51c5b52260fdd5511b61ea89b58929d6e1769b");
        // The key is kept as read: Sheaf never rewrites a manifest it read.
        assert_eq!(String::from_utf8(m.to_jsonl()).unwrap(), legacy);

        let with_entry = concat!(
            "{\"version\": \"v0\", \"top_hash\": {\"alg\": \"v0\", \"value\": \"x\"}}\n",
            "{\"logical_key\": \"a.txt\", \"physical_keys\": [\"file:///tmp/a.txt\"], \"size\": 13, ",
            "\"hash\": {\"type\": \"SHA256\", \"value\": ",
            "\"dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f\"}, \"meta\": {}}\n",
        );
        let m = Manifest::parse(with_entry.as_bytes()).unwrap();
        assert_eq!(m.top_hash(), "a5af201739ed2de47c347f65d46e6cae6f4b3545ba2d8555062cd610763fee97");

        // A new revision built on it is written as quilt3 would: without the key.
        let next = m.with_changes(vec![], Some("next".into())).unwrap();
        assert!(!next.header.contains_key(OBSOLETE_TOP_HASH_KEY));
        assert_eq!(Manifest::parse(&next.to_jsonl()).unwrap().top_hash(), next.top_hash());
        // Only the header's own key is dropped: user metadata named top_hash is hashed.
        let meta = Manifest::parse(br#"{"version": "v0", "message": null, "user_meta": {"top_hash": 1}}"#).unwrap();
        assert_eq!(meta.top_hash(), "0563e63347f846f7e668809789c2da5fc49e7970b96b7d64779325cee9835c23");
    }

    #[test]
    fn a_new_revision_keeps_numbers_beyond_64_bits_as_written() {
        let text = concat!(
            "{\"version\": \"v0\", \"top_hash\": {\"alg\": \"v0\"}, \"message\": \"old\", ",
            "\"user_meta\": {\"n\": 1180591620717411303424, \"z\": -0}}\n",
            "{\"logical_key\": \"a\", \"physical_keys\": [\"file:///a\"], \"size\": 1, ",
            "\"hash\": {\"type\": \"SHA256\", \"value\": \"00\"}, \"meta\": {\"big\": -1208925819614629174706176}}\n",
            "{\"logical_key\": \"c\", \"physical_keys\": [\"file:///c\"], \"size\": 1, ",
            "\"hash\": {\"type\": \"SHA256\", \"value\": \"00\"}, \"meta\": {}}\n",
        );
        let (m, parsed) = Manifest::parse_hashed(text.as_bytes()).unwrap();
        assert!(parsed.inexact.is_some());
        assert_eq!(m.top_hash(), parsed.top_hash, "hashed from the text as read");
        assert_eq!(String::from_utf8(m.to_jsonl()).unwrap(), text, "written back as read");

        let next = m.with_changes(vec![entry("b", 2, "x")], Some("new".into())).unwrap();
        let written = String::from_utf8(next.to_jsonl()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(
            lines[0],
            "{\"version\": \"v0\", \"message\": \"new\", \"user_meta\": {\"n\": 1180591620717411303424, \"z\": 0}}"
        );
        assert_eq!(lines[1], text.lines().nth(1).unwrap(), "the untouched entry is kept as read");
        assert!(lines[2].contains("\"b\"") && lines[3] == text.lines().nth(2).unwrap());
        let (reread, parsed) = Manifest::parse_hashed(written.as_bytes()).unwrap();
        assert_eq!((next.top_hash(), reread.top_hash()), (parsed.top_hash.clone(), parsed.top_hash));

        // An entry replaced by a change is written from its new values.
        let replaced = m.with_changes(vec![entry("a", 2, "x")], None).unwrap();
        assert!(!String::from_utf8(replaced.to_jsonl()).unwrap().contains("1208925819614629174706176"));
    }

    #[test]
    fn unverifiable_hash_types_are_named_with_their_entry() {
        let mut crc = entry("b/crc.bin", 1, "AAAAAAAAAAA=");
        crc.hash.kind = hash::CRC64NVME.into();
        let mut odd = entry("c/odd.bin", 1, "xyz");
        odd.hash.kind = "BLAKE3".into();
        assert!(Manifest::require_verifiable([&entry("a", 1, "x"), &crc]).is_ok());
        let err = Manifest::require_verifiable([&entry("a", 1, "x"), &crc, &odd]).unwrap_err();
        assert!(
            matches!(&err, Error::UnverifiableHash { key, kind } if key == "c/odd.bin" && kind == "BLAKE3"),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("\"c/odd.bin\"") && text.contains("\"BLAKE3\"") && text.contains("CRC64NVME"), "{text}");
    }

    #[test]
    fn parse_refuses_traversal_keys() {
        let text = "{\"version\": \"v0\"}\n{\"logical_key\": \"../../etc/passwd\", \"physical_keys\": [\"file:///etc/passwd\"], \"size\": 1, \"hash\": {\"type\": \"SHA256\", \"value\": \"00\"}, \"meta\": {}}\n";
        let err = Manifest::parse(text.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("../../etc/passwd"), "{err}");
    }
}
