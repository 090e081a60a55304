//! Manifests a line at a time, for packages of any number of files: a
//! [`LineParser`] reads one line after another and keeps nothing but the
//! running top hash ([`TopHasher`]) and, for duplicate logical keys, the
//! previous key (manifests in walk order, [`LineParser::streaming`]) or 8
//! bytes per entry ([`LineParser::new`]), so the caller decides what to keep
//! (a folder's entries for `browse`, a sub-path's for `install`) and memory
//! follows what it keeps, not the size of the package.
//!
//! [`super::Manifest::parse`] is this parser keeping every line.

use super::{Entry, Error, Line, OBSOLETE_TOP_HASH_KEY, json, key};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::hash::BuildHasher;

/// The top hash, computed incrementally: the header, then each entry in
/// manifest order (quilt3's `Package.top_hash`).
pub struct TopHasher {
    hasher: Sha256,
    /// The encoding of the entry being hashed (reused).
    buf: String,
}

impl TopHasher {
    /// Starts with the header (an obsolete `top_hash` key is not hashed, as
    /// quilt3 drops it when loading).
    pub fn new(header: &Map<String, Value>) -> Self {
        let mut hasher = Sha256::new();
        let mut header = header.clone();
        header.shift_remove(OBSOLETE_TOP_HASH_KEY);
        hasher.update(json::encode(&Value::Object(header), json::Style::Canonical));
        TopHasher { hasher, buf: String::new() }
    }

    /// Adds the next entry: the canonical JSON of `{hash, logical_key, meta,
    /// size}` (null meta hashes as `{}`).
    pub fn entry(&mut self, e: &Entry) {
        // The canonical JSON of that object, keys in sorted order, written
        // straight into a reused buffer.
        use json::Style::Canonical;
        let out = &mut self.buf;
        out.clear();
        out.push_str("{\"hash\":{\"type\":");
        json::encode_str_into(out, &e.hash.kind, Canonical);
        out.push_str(",\"value\":");
        json::encode_str_into(out, &e.hash.value, Canonical);
        out.push_str("},\"logical_key\":");
        json::encode_str_into(out, &e.logical_key, Canonical);
        out.push_str(",\"meta\":");
        match &e.meta {
            Value::Null => out.push_str("{}"),
            meta => json::encode_into(out, meta, Canonical),
        }
        use std::fmt::Write as _;
        write!(out, ",\"size\":{}}}", e.size).expect("writing to a String cannot fail");
        self.hasher.update(out.as_bytes());
    }

    /// Starts with a header holding numbers serde_json cannot keep exactly,
    /// hashed from their text ([`json::Exact`]).
    pub fn new_exact(header: &json::Exact) -> Self {
        let mut header = header.clone();
        if let json::Exact::Object(members) = &mut header {
            members.retain(|(k, _)| k != OBSOLETE_TOP_HASH_KEY);
        }
        let mut hasher = Sha256::new();
        hasher.update(json::encode_exact_canonical(&header));
        TopHasher { hasher, buf: String::new() }
    }

    /// Adds the next entry from its line's exact form.
    pub fn entry_exact(&mut self, line: &json::Exact) {
        use json::Exact;
        let pick = |v: Option<&Exact>, key: &str| v.and_then(|h| h.get(key)).cloned().unwrap_or(Exact::Null);
        let hash = line.get("hash");
        let meta = match line.get("meta") {
            None | Some(Exact::Null) => Exact::Object(Vec::new()),
            Some(m) => m.clone(),
        };
        let part = Exact::Object(vec![
            (
                "hash".into(),
                Exact::Object(vec![("type".into(), pick(hash, "type")), ("value".into(), pick(hash, "value"))]),
            ),
            ("logical_key".into(), line.get("logical_key").cloned().unwrap_or(Exact::Null)),
            ("meta".into(), meta),
            ("size".into(), line.get("size").cloned().unwrap_or(Exact::Null)),
        ]);
        self.hasher.update(json::encode_exact_canonical(&part));
    }

    /// The top hash: 64 lowercase hex characters.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

/// Parses a manifest line by line (blank lines are skipped), validating
/// every logical key and hashing as it goes.
pub struct LineParser {
    line_no: usize,
    header: Option<Map<String, Value>>,
    hasher: Option<TopHasher>,
    /// Fingerprints of the entries' logical keys, checked for duplicates at
    /// the end (a real duplicate is confirmed by the caller's keys when it
    /// kept them; a 64-bit collision among a million keys has odds of about
    /// 3 in 100 million). `None` for [`LineParser::streaming`].
    fingerprints: Option<Vec<(u64, u32)>>,
    /// Fingerprints of the folders the entries' keys lie in, with the line
    /// first naming each (a run of siblings records its folder once):
    /// checked against the keys' when the manifest is not in walk order.
    folders: Option<Vec<(u64, u32)>>,
    /// Whether every entry so far came after the one before in walk order
    /// (as quilt3 and Sheaf write them): duplicates are then adjacent.
    sorted: bool,
    keys: std::hash::RandomState,
    /// The last entry's key, to report an adjacent duplicate by name.
    previous: Option<String>,
    /// The first line with numbers serde_json cannot keep exactly.
    inexact: Option<String>,
    /// The header with its numbers as written, when it holds such numbers.
    exact_header: Option<json::Exact>,
    /// Whether the line just fed holds such numbers.
    last_inexact: bool,
}

impl Default for LineParser {
    fn default() -> Self {
        Self::new()
    }
}

impl LineParser {
    /// A parser expecting the header line first, finding duplicate logical
    /// keys wherever they are (16 bytes per entry: a fingerprint and a line number).
    pub fn new() -> Self {
        LineParser {
            line_no: 0,
            header: None,
            hasher: None,
            fingerprints: Some(Vec::new()),
            folders: Some(Vec::new()),
            sorted: true,
            keys: std::hash::RandomState::new(),
            previous: None,
            inexact: None,
            exact_header: None,
            last_inexact: false,
        }
    }

    /// A parser keeping nothing per entry: a duplicate logical key is found
    /// when the manifest is in walk order (every manifest quilt3 and Sheaf
    /// write is), where it is next to its twin. For a manifest that is not
    /// ([`LineParser::sorted`] is then false at the end) the caller checks
    /// for duplicates with a second pass of [`LineParser::new`].
    pub fn streaming() -> Self {
        LineParser { fingerprints: None, folders: None, ..Self::new() }
    }

    /// Whether every entry so far came after the one before in walk order.
    pub fn sorted(&self) -> bool {
        self.sorted
    }

    /// Reads the next line (without its line break). Returns the entry or
    /// folder line it holds, or `None` for the header and blank lines.
    pub fn feed(&mut self, text: &str) -> Result<Option<Line>, Error> {
        self.line_no += 1;
        self.last_inexact = false;
        if text.trim().is_empty() {
            return Ok(None);
        }
        // Numbers serde_json would round (integers beyond 64 bits, -0) are
        // hashed from the line's text, so the top hash stays quilt3's.
        let exact = match json::has_inexact_numbers(text) {
            false => None,
            true => Some(json::parse_exact(text).map_err(|message| Error::Parse { line: self.line_no, message })?),
        };
        if self.header.is_none() {
            let obj = parse_object(text, self.line_no)?;
            if obj.contains_key("logical_key") {
                return Err(Error::Parse { line: self.line_no, message: "first line must be the header".into() });
            }
            if exact.is_some() {
                self.inexact = Some("the header".into());
            }
            self.hasher = Some(match &exact {
                Some(x) => TopHasher::new_exact(x),
                None => TopHasher::new(&obj),
            });
            self.header = Some(obj);
            self.exact_header = exact;
            return Ok(None);
        }
        let line = match plain_entry(text) {
            Some(e) => {
                key::validate(&e.logical_key)
                    .map_err(|reason| Error::InvalidKey { key: e.logical_key.clone(), reason })?;
                Line::Entry(e)
            }
            None => super::parse_line(parse_object(text, self.line_no)?, self.line_no)?,
        };
        self.last_inexact = exact.is_some();
        if let Line::Entry(e) = &line {
            if let Some(previous) = &self.previous {
                match key::walk_order(previous, &e.logical_key) {
                    std::cmp::Ordering::Less => super::check_pair(previous, &e.logical_key)?,
                    std::cmp::Ordering::Equal => return Err(Error::DuplicateKey(e.logical_key.clone())),
                    std::cmp::Ordering::Greater => {
                        self.sorted = false;
                        super::check_pair(&e.logical_key, previous)?;
                    }
                }
            }
            if let Some(fingerprints) = &mut self.fingerprints {
                fingerprints.push((self.keys.hash_one(&e.logical_key), self.line_no as u32));
            }
            if let Some(folders) = &mut self.folders {
                let previous = self.previous.as_deref().unwrap_or("");
                for folder in key::folders(&e.logical_key) {
                    if !key::is_strictly_under(previous, folder) {
                        folders.push((self.keys.hash_one(folder), self.line_no as u32));
                    }
                }
            }
            match &mut self.previous {
                Some(previous) => e.logical_key.clone_into(previous),
                None => self.previous = Some(e.logical_key.clone()),
            }
            let hasher = self.hasher.as_mut().expect("header read first");
            match &exact {
                Some(x) => {
                    self.inexact.get_or_insert_with(|| format!("entry {:?}", e.logical_key));
                    hasher.entry_exact(x);
                }
                None => hasher.entry(e),
            }
        } else if exact.is_some() {
            self.inexact.get_or_insert_with(|| format!("line {}", self.line_no));
        }
        Ok(Some(line))
    }

    /// Where the manifest first holds numbers that Sheaf reads only
    /// approximately (integers beyond 64 bits, `-0`): hashed exactly, but a
    /// manifest written from the parsed values would change them.
    pub fn inexact(&self) -> Option<&str> {
        self.inexact.as_deref()
    }

    /// Whether the line just fed holds numbers that Sheaf reads only
    /// approximately: its text is what must be written back.
    pub fn last_line_inexact(&self) -> bool {
        self.last_inexact
    }

    /// The header with its numbers as written, when it holds numbers that
    /// Sheaf reads only approximately.
    pub fn exact_header(&self) -> Option<&json::Exact> {
        self.exact_header.as_ref()
    }

    /// Lines read so far (blank ones included), for error messages.
    pub fn lines_read(&self) -> usize {
        self.line_no
    }

    /// Ends the manifest: its header and top hash. Fails for an empty
    /// manifest and for duplicate logical keys.
    pub fn finish(mut self) -> Result<(Map<String, Value>, String), Error> {
        let header = self.header.ok_or(Error::Parse { line: 1, message: "empty manifest".into() })?;
        if let Some(fingerprints) = &mut self.fingerprints {
            fingerprints.sort_unstable();
            if let Some(w) = fingerprints.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(Error::DuplicateKeyAt { first: w[0].1 as usize, second: w[1].1 as usize });
            }
            // In walk order every file-and-folder pair was next to each other
            // and refused as it was fed.
            if let Some(folders) = self.folders.as_mut().filter(|_| !self.sorted) {
                folders.sort_unstable();
                for &(key, line) in fingerprints.iter() {
                    let at = folders.partition_point(|&(f, _)| f < key);
                    if let Some(&(f, under)) = folders.get(at)
                        && f == key
                    {
                        return Err(Error::FileIsFolderAt { file: line as usize, under: under as usize });
                    }
                }
            }
        }
        Ok((header, self.hasher.expect("set with the header").finish()))
    }
}

/// Parses one line of a manifest's body on its own (a line re-read from a
/// known offset, after the whole manifest was checked): the entry it holds,
/// or `None` for a folder line or a blank one.
pub fn entry_line(text: &str, line: usize) -> Result<Option<Entry>, Error> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    if let Some(e) = plain_entry(text) {
        return Ok(Some(e));
    }
    match super::parse_line(parse_object(text, line)?, line)? {
        Line::Entry(e) => Ok(Some(e)),
        Line::Dir(_) => Ok(None),
    }
}

/// An entry line with exactly the fields quilt3 writes, each of the
/// expected type, read straight into an [`Entry`]: most lines, and twice as
/// fast as a map of values. Anything else (folder lines, unknown or repeated
/// fields, odd types) is `None` and goes the general way
/// ([`super::parse_line`]), which keeps what it does not know and names
/// what is wrong.
fn plain_entry(text: &str) -> Option<Entry> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Plain {
        logical_key: String,
        physical_keys: Vec<String>,
        size: u64,
        hash: super::hash::EntryHash,
        #[serde(default)]
        meta: Value,
    }
    let p: Plain = serde_json::from_str(text).ok()?;
    Some(Entry {
        logical_key: p.logical_key,
        physical_keys: p.physical_keys,
        size: p.size,
        hash: p.hash,
        meta: p.meta,
        extra: Map::new(),
    })
}

fn parse_object(text: &str, line: usize) -> Result<Map<String, Value>, Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Parse { line, message: "not a JSON object".into() }),
        Err(e) => Err(Error::Parse { line, message: e.to_string() }),
    }
}

/// Splits a byte stream into lines for a [`LineParser`], across chunk
/// boundaries; each complete line is handed to `each`.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds a chunk, calling `each` for every line it completes.
    pub fn push<E>(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.pending.is_empty() {
                each(&rest[..pos])?;
            } else {
                self.pending.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.pending);
                each(&line)?;
            }
            rest = &rest[pos + 1..];
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }

    /// The last line, when the stream did not end with a line break.
    pub fn finish<E>(self, mut each: impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.pending.is_empty() { Ok(()) } else { each(&self.pending) }
    }
}

/// `bytes` as the UTF-8 text of manifest line `line`.
pub fn line_text(bytes: &[u8], line: usize) -> Result<&str, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Parse { line, message: format!("not UTF-8: {e}") })?;
    Ok(text.strip_suffix('\r').unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_entries_read_as_the_general_way_reads_them() {
        let line = |rest: &str| {
            format!(
                "{{\"logical_key\": \"a/b.csv\", \"physical_keys\": [\"file:///a\"], \"size\": 3, \
                 \"hash\": {{\"type\": \"SHA256\", \"value\": \"00\"}}{rest}}}"
            )
        };
        let general = |text: &str| super::super::parse_line(parse_object(text, 2).unwrap(), 2).unwrap();
        for (text, plain) in [
            (line(", \"meta\": {\"x\": [1, 2.5, null]}"), true),
            (line(""), true),
            (line(", \"meta\": null"), true),
            (line(", \"meta\": {}, \"future\": true"), false),
            (line(", \"meta\": {}, \"size\": 4"), false),
        ] {
            match plain_entry(&text) {
                Some(e) => {
                    assert!(plain, "{text}");
                    assert_eq!(Line::Entry(e), general(&text), "{text}");
                }
                None => assert!(!plain, "{text}"),
            }
        }
        let folder = "{\"logical_key\": \"a/\", \"meta\": {}}";
        assert!(plain_entry(folder).is_none());
        assert!(matches!(general(folder), Line::Dir(_)));
        assert!(plain_entry(&line("").replace("\"size\": 3", "\"size\": 3.5")).is_none());
    }

    #[test]
    fn lines_split_across_chunks() {
        let text = b"{\"version\": \"v0\"}\n{\"logical_key\": \"a\", \"physical_keys\": [\"file:///a\"], \"size\": 1, \"hash\": {\"type\": \"SHA256\", \"value\": \"00\"}, \"meta\": {}}\n";
        let whole = super::super::Manifest::parse(text).unwrap();
        for cut in 1..text.len() {
            let mut parser = LineParser::new();
            let mut splitter = LineSplitter::default();
            let mut kept = Vec::new();
            let mut feed = |bytes: &[u8]| -> Result<(), Error> {
                let n = parser.lines_read() + 1;
                if let Some(l) = parser.feed(line_text(bytes, n)?)? {
                    kept.push(l);
                }
                Ok(())
            };
            splitter.push(&text[..cut], &mut feed).unwrap();
            splitter.push(&text[cut..], &mut feed).unwrap();
            splitter.finish(&mut feed).unwrap();
            let (header, top) = parser.finish().unwrap();
            assert_eq!((header, kept, top), (whole.header.clone(), whole.lines.clone(), whole.top_hash()));
        }
    }

    #[test]
    fn duplicates_are_found_adjacent_or_not() {
        let line = |k: &str| {
            format!(
                "{{\"logical_key\": \"{k}\", \"physical_keys\": [\"file:///x\"], \"size\": 1, \"hash\": {{\"type\": \"SHA256\", \"value\": \"00\"}}}}"
            )
        };
        let mut p = LineParser::new();
        p.feed("{\"version\": \"v0\"}").unwrap();
        p.feed(&line("a")).unwrap();
        assert!(matches!(p.feed(&line("a")), Err(Error::DuplicateKey(k)) if k == "a"));
        let mut p = LineParser::new();
        for l in ["{\"version\": \"v0\"}".to_owned(), line("a"), line("b"), line("a")] {
            p.feed(&l).unwrap();
        }
        assert!(matches!(p.finish(), Err(Error::DuplicateKeyAt { first: 2, second: 4 })));
    }

    #[test]
    fn a_file_that_is_also_a_folder_is_refused_adjacent_or_not() {
        let line = |k: &str| {
            format!(
                "{{\"logical_key\": \"{k}\", \"physical_keys\": [\"file:///x\"], \"size\": 1, \"hash\": {{\"type\": \"SHA256\", \"value\": \"00\"}}}}"
            )
        };
        let feed_all = |keys: &[&str], mut p: LineParser| -> Result<(), Error> {
            p.feed("{\"version\": \"v0\"}")?;
            for k in keys {
                p.feed(&line(k))?;
            }
            p.finish().map(drop)
        };
        // In walk order: refused as fed, by name, streaming or not.
        for p in [LineParser::new(), LineParser::streaming()] {
            let got = feed_all(&["a", "x", "x/b/c", "y"], p);
            assert!(
                matches!(&got, Err(Error::FileIsFolder { file, under }) if file == "x" && under == "x/b/c"),
                "{got:?}"
            );
        }
        // Out of order, next to each other.
        let got = feed_all(&["x/y", "x"], LineParser::new());
        assert!(matches!(&got, Err(Error::FileIsFolder { file, under }) if file == "x" && under == "x/y"), "{got:?}");
        // Out of order, apart: found at the end by fingerprints, by line.
        let got = feed_all(&["b/c/d", "b/c/e", "z", "a", "b/c"], LineParser::new());
        assert!(matches!(got, Err(Error::FileIsFolderAt { file: 6, under: 2 })), "{got:?}");
        // Siblings, lookalike names and an unsorted manifest without conflicts load.
        feed_all(&["x", "x-y/z", "x.txt", "xy/z"], LineParser::new()).unwrap();
        feed_all(&["b/c/d", "a/b", "b/c/e", "a/c/d"], LineParser::new()).unwrap();
        // A whole parse names the keys.
        let text = ["{\"version\": \"v0\"}".to_owned(), line("b/c/d"), line("z"), line("b/c")].join("\n");
        let got = super::super::Manifest::parse(text.as_bytes());
        assert!(
            matches!(&got, Err(Error::FileIsFolder { file, under }) if file == "b/c" && under == "b/c/d"),
            "{got:?}"
        );
    }
}
