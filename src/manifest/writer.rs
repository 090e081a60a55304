//! A new manifest written a line at a time: the header first, then each
//! entry as it is produced, hashing as it goes ([`super::stream::TopHasher`]).
//! `push` feeds it the files of a folder in walk order, so a revision of a
//! million files is never held in memory whole; the top hash is known once
//! the last entry is written.

use super::stream::TopHasher;
use super::{Entry, Error, json as encoding, key};
use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::io::Write;

/// The header quilt3's `build` writes: `{"version": "v0", "message": ...,
/// "user_meta": ...}` (`user_meta` only when given).
pub fn new_header(message: Option<String>, user_meta: Option<Map<String, Value>>) -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("version".into(), json!("v0"));
    header.insert("message".into(), message.map(Value::String).unwrap_or(Value::Null));
    if let Some(meta) = user_meta {
        header.insert("user_meta".into(), Value::Object(meta));
    }
    header
}

/// [`new_header`] with `user_meta` holding numbers serde_json values cannot
/// (see [`encoding::parse_exact`]), for [`ManifestWriter::new_exact`].
pub fn new_header_exact(message: Option<String>, user_meta: encoding::Exact) -> encoding::Exact {
    use encoding::Exact;
    Exact::Object(vec![
        ("version".into(), Exact::String("v0".into())),
        ("message".into(), message.map(Exact::String).unwrap_or(Exact::Null)),
        ("user_meta".into(), user_meta),
    ])
}

/// Writes `line` as quilt3 does: one JSON object, Python's default
/// separators, `\n`-terminated.
pub fn write_line<W: Write + ?Sized>(out: &mut W, line: &Value) -> std::io::Result<()> {
    out.write_all(encoding::encode(line, encoding::Style::ManifestLine).as_bytes())?;
    out.write_all(b"\n")
}

/// Writes a manifest's lines to `W` as they come, checking that every
/// entry's key is valid and comes after the one before in walk order (which
/// also rules out duplicates), and computing the top hash.
pub struct ManifestWriter<W: Write> {
    out: W,
    hasher: TopHasher,
    last: Option<String>,
    entries: usize,
}

impl<W: Write> ManifestWriter<W> {
    /// Starts a manifest with `header` (see [`new_header`]).
    pub fn new(mut out: W, header: Map<String, Value>) -> std::io::Result<Self> {
        let hasher = TopHasher::new(&header);
        write_line(&mut out, &Value::Object(header))?;
        Ok(ManifestWriter { out, hasher, last: None, entries: 0 })
    }

    /// Starts a manifest whose header holds numbers serde_json values
    /// cannot (integers beyond 64 bits): written and hashed from `header`,
    /// its numbers as given.
    pub fn new_exact(mut out: W, header: &encoding::Exact) -> std::io::Result<Self> {
        let hasher = TopHasher::new_exact(header);
        writeln!(out, "{}", encoding::encode_exact_line(header))?;
        Ok(ManifestWriter { out, hasher, last: None, entries: 0 })
    }

    /// Appends an entry. Fails with [`Error::InvalidKey`] for a key that
    /// cannot be one, [`Error::DuplicateKey`] or [`Error::OutOfOrder`]
    /// for a key not after the previous one, and [`Error::FileIsFolder`]
    /// for a key under the previous one; nothing is written then.
    pub fn entry(&mut self, e: &Entry) -> Result<(), WriteError> {
        key::validate(&e.logical_key).map_err(|reason| Error::InvalidKey { key: e.logical_key.clone(), reason })?;
        if let Some(last) = &self.last {
            match key::walk_order(last, &e.logical_key) {
                Ordering::Less => super::check_pair(last, &e.logical_key)?,
                Ordering::Equal => return Err(Error::DuplicateKey(e.logical_key.clone()).into()),
                Ordering::Greater => {
                    return Err(Error::OutOfOrder { previous: last.clone(), key: e.logical_key.clone() }.into());
                }
            }
        }
        write_line(&mut self.out, &e.to_json()).map_err(WriteError::Io)?;
        self.hasher.entry(e);
        self.entries += 1;
        match &mut self.last {
            Some(last) => e.logical_key.clone_into(last),
            None => self.last = Some(e.logical_key.clone()),
        }
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Flushes nothing itself: returns the output and the top hash.
    pub fn finish(self) -> (W, String) {
        (self.out, self.hasher.finish())
    }
}

/// Why an entry could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The entry cannot be in a manifest here.
    #[error(transparent)]
    Manifest(#[from] Error),
    /// The output failed.
    #[error("writing the manifest: {0}")]
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::super::{Manifest, hash};
    use super::*;

    fn entry(key: &str) -> Entry {
        Entry {
            logical_key: key.into(),
            physical_keys: vec![format!("file:///tmp/{key}")],
            size: 3,
            hash: hash::EntryHash { kind: hash::SHA2_256_CHUNKED.into(), value: "AAAA".into() },
            meta: json!({}),
            extra: Map::new(),
        }
    }

    #[test]
    fn writes_the_bytes_and_top_hash_of_the_built_manifest() {
        let keys = ["B", "a/b", "a-b", "b/x", "b.txt"];
        let meta: Map<String, Value> = json!({"n": 1}).as_object().unwrap().clone();
        let built =
            Manifest::build(Some("m".into()), Some(meta.clone()), keys.iter().map(|k| entry(k)).collect()).unwrap();
        let mut w = ManifestWriter::new(Vec::new(), new_header(Some("m".into()), Some(meta))).unwrap();
        for k in keys {
            w.entry(&entry(k)).unwrap();
        }
        assert_eq!(w.entries(), 5);
        let (bytes, top_hash) = w.finish();
        assert_eq!(bytes, built.to_jsonl());
        assert_eq!(top_hash, built.top_hash());
    }

    #[test]
    fn refuses_keys_out_of_walk_order_duplicated_or_invalid() {
        let mut w = ManifestWriter::new(Vec::new(), new_header(None, None)).unwrap();
        w.entry(&entry("a/b")).unwrap();
        let err = w.entry(&entry("B")).unwrap_err();
        assert!(
            matches!(&err, WriteError::Manifest(Error::OutOfOrder { previous, key }) if previous == "a/b" && key == "B")
        );
        assert!(matches!(w.entry(&entry("a/b")), Err(WriteError::Manifest(Error::DuplicateKey(k))) if k == "a/b"));
        assert!(matches!(w.entry(&entry("z/../x")), Err(WriteError::Manifest(Error::InvalidKey { .. }))));
        w.entry(&entry("a-b")).unwrap();
        let (bytes, _) = w.finish();
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 3, "header and the two accepted entries");
    }
}
