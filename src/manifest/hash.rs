//! Entry hashes: the three types quilt3 8.x verifies.
//!
//! - `sha2-256-chunked` (quilt3's default, the only type Sheaf writes): the
//!   file is split into chunks (8 MiB, doubled while there would be more than
//!   10,000 of them), each chunk hashed with SHA-256, and the value is the
//!   standard base64 of SHA-256 over the concatenated chunk digests. Chunks
//!   are independent, so one large file is hashed on every core.
//! - `SHA256` (legacy): lowercase hex SHA-256 of the whole file.
//! - `CRC64NVME` (quilt3 7.2+, S3's CRC-64/NVME checksum): standard base64 of
//!   the 8-byte big-endian CRC-64/NVME of the whole file. quilt3 computes it
//!   per 8 MiB part and combines the parts' CRCs, which equals the CRC of the
//!   whole file; an empty file is `AAAAAAAAAAA=`.
//!
//! Any other type cannot be verified: [`StreamHasher::new`] and
//! [`hash_file_like`] say so (`None`), and callers must treat that as an
//! error, never as a match.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Hash type name of quilt3's default chunked SHA-256.
pub const SHA2_256_CHUNKED: &str = "sha2-256-chunked";
/// Hash type name of the legacy whole-file SHA-256 (hex).
pub const SHA256: &str = "SHA256";
/// Hash type name of CRC-64/NVME (base64 of the big-endian 8-byte CRC).
pub const CRC64NVME: &str = "CRC64NVME";
/// Every hash type Sheaf can verify.
pub const VERIFIABLE: [&str; 3] = [SHA2_256_CHUNKED, SHA256, CRC64NVME];

/// CRC-64/NVME (poly 0xad93d23594c93659, reflected, init and xorout all ones),
/// table-driven 16 bytes at a time.
static CRC64_NVME: crc::Crc<u64, crc::Table<16>> = crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_NVME);

const MIN_CHUNK: u64 = 8 * 1024 * 1024;
const MAX_CHUNKS: u64 = 10_000;
/// Read size while hashing: bounds memory per hashing thread.
const READ_BUF: usize = 1024 * 1024;

/// The `hash` object of a manifest entry: `{"type": ..., "value": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntryHash {
    /// Hash type, for example `sha2-256-chunked`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Encoded digest (base64 for chunked, hex for `SHA256`).
    pub value: String,
}

impl EntryHash {
    /// A `sha2-256-chunked` hash from its raw 32-byte digest.
    pub fn chunked(digest: [u8; 32]) -> Self {
        EntryHash { kind: SHA2_256_CHUNKED.into(), value: BASE64.encode(digest) }
    }

    /// A `CRC64NVME` hash from its CRC value.
    pub fn crc64nvme(crc: u64) -> Self {
        EntryHash { kind: CRC64NVME.into(), value: BASE64.encode(crc.to_be_bytes()) }
    }

    /// The raw digest as lowercase hex, used to name content-addressed blobs.
    /// Only `sha2-256-chunked` digests name blobs (they are what Sheaf
    /// writes): a 64-bit CRC is no content address (collisions are easy to
    /// make, and blobs are deduplicated by name), and a whole-file `SHA256`
    /// is a different function whose digests must not share the namespace.
    /// `None` for every other type, so such entries are always read through
    /// their physical key and checked against their own hash.
    pub fn blob_hex(&self) -> Option<String> {
        match self.kind.as_str() {
            SHA2_256_CHUNKED => {
                let raw = BASE64.decode(&self.value).ok()?;
                (raw.len() == 32).then(|| hex::encode(raw))
            }
            _ => None,
        }
    }

    /// Whether Sheaf can check data against this hash type.
    pub fn is_verifiable(&self) -> bool {
        VERIFIABLE.contains(&self.kind.as_str())
    }
}

impl std::fmt::Display for EntryHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// Chunk size quilt3 uses for a file of `size` bytes.
pub fn chunk_size(size: u64) -> u64 {
    let mut chunk = MIN_CHUNK;
    while size.div_ceil(chunk) > MAX_CHUNKS {
        chunk *= 2;
    }
    chunk
}

/// Incremental hasher for data whose total size is known up front (a file
/// being downloaded). Feeds bytes in any slice sizes; checks the size too.
pub struct StreamHasher {
    inner: Inner,
    expected_size: u64,
    seen: u64,
}

enum Inner {
    Chunked { chunk: u64, in_chunk: u64, current: Sha256, digests: Sha256 },
    Whole(Sha256),
    Crc64(crc::Digest<'static, u64, crc::Table<16>>),
}

impl StreamHasher {
    /// A hasher producing the same hash type as `like`, for `size` bytes.
    /// Returns `None` for hash types that cannot be computed.
    pub fn new(like: &EntryHash, size: u64) -> Option<Self> {
        let inner = match like.kind.as_str() {
            SHA2_256_CHUNKED => {
                Inner::Chunked { chunk: chunk_size(size), in_chunk: 0, current: Sha256::new(), digests: Sha256::new() }
            }
            SHA256 => Inner::Whole(Sha256::new()),
            CRC64NVME => Inner::Crc64(CRC64_NVME.digest()),
            _ => return None,
        };
        Some(StreamHasher { inner, expected_size: size, seen: 0 })
    }

    /// A `sha2-256-chunked` hasher for `size` bytes.
    pub fn chunked(size: u64) -> Self {
        Self::new(&EntryHash { kind: SHA2_256_CHUNKED.into(), value: String::new() }, size)
            .expect("chunked is supported")
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.seen += data.len() as u64;
        match &mut self.inner {
            Inner::Whole(h) => h.update(data),
            Inner::Crc64(c) => c.update(data),
            Inner::Chunked { chunk, in_chunk, current, digests } => {
                while !data.is_empty() {
                    let room = (*chunk - *in_chunk) as usize;
                    let take = room.min(data.len());
                    current.update(&data[..take]);
                    *in_chunk += take as u64;
                    data = &data[take..];
                    if *in_chunk == *chunk {
                        digests.update(std::mem::take(current).finalize());
                        *in_chunk = 0;
                    }
                }
            }
        }
    }

    /// The hash of everything fed, or `Err(bytes fed)` when that differs from
    /// the size given at construction.
    pub fn finish(self) -> Result<EntryHash, u64> {
        if self.seen != self.expected_size {
            return Err(self.seen);
        }
        Ok(match self.inner {
            Inner::Whole(h) => EntryHash { kind: SHA256.into(), value: hex::encode(h.finalize()) },
            Inner::Crc64(c) => EntryHash::crc64nvme(c.finalize()),
            Inner::Chunked { in_chunk, current, mut digests, .. } => {
                if in_chunk > 0 {
                    digests.update(current.finalize());
                }
                EntryHash::chunked(digests.finalize().into())
            }
        })
    }
}

/// Hashes a local file with `sha2-256-chunked`, its chunks in parallel on the
/// rayon pool, reading through a bounded buffer per chunk. Returns the size
/// hashed and the hash.
pub fn hash_file_chunked(path: &Path) -> io::Result<(u64, EntryHash)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let chunk = chunk_size(size);
    let chunks = size.div_ceil(chunk);
    let digests: Vec<[u8; 32]> = (0..chunks)
        .into_par_iter()
        .map(|i| {
            let start = i * chunk;
            let end = (start + chunk).min(size);
            hash_range(&file, start, end)
        })
        .collect::<io::Result<_>>()?;
    let mut top = Sha256::new();
    for d in &digests {
        top.update(d);
    }
    Ok((size, EntryHash::chunked(top.finalize().into())))
}

/// Hashes a local file with the hash type of `like` (for verifying). The
/// hash is `None` when Sheaf cannot compute that type: the caller must treat
/// the file as unverified, never as matching.
pub fn hash_file_like(path: &Path, like: &EntryHash) -> io::Result<(u64, Option<EntryHash>)> {
    match like.kind.as_str() {
        SHA2_256_CHUNKED => hash_file_chunked(path).map(|(s, h)| (s, Some(h))),
        SHA256 | CRC64NVME => {
            let file = File::open(path)?;
            let size = file.metadata()?.len();
            let mut hasher = StreamHasher::new(like, size).expect("a supported hash type");
            read_range(&file, 0, size, |data| hasher.update(data))?;
            let hash = hasher.finish().map_err(|_| io::Error::other("file changed size while it was being hashed"))?;
            Ok((size, Some(hash)))
        }
        _ => Ok((std::fs::metadata(path)?.len(), None)),
    }
}

fn hash_range(file: &File, start: u64, end: u64) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    read_range(file, start, end, |data| hasher.update(data))?;
    Ok(hasher.finalize().into())
}

/// Feeds the bytes `start..end` of `file` to `sink` through a bounded buffer.
fn read_range(file: &File, start: u64, end: u64, mut sink: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUF.min((end - start) as usize).max(1)];
    let mut pos = start;
    while pos < end {
        let want = buf.len().min((end - pos) as usize);
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while it was being hashed"));
        }
        sink(&buf[..n]);
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn vectors_from_quilt3() {
        let mut h = StreamHasher::chunked(13);
        h.update(b"Hello, World!");
        assert_eq!(h.finish().unwrap().value, "BCp9ZKWB7y7pg/IQWIAcw1ZjtwXmxV9i+o4PGOzHCYk=");

        let empty = StreamHasher::chunked(0).finish().unwrap();
        assert_eq!(empty.value, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");

        let like = EntryHash { kind: SHA256.into(), value: String::new() };
        let mut h = StreamHasher::new(&like, 13).unwrap();
        h.update(b"Hello, World!");
        assert_eq!(h.finish().unwrap().value, "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f");
    }

    fn crc64nvme_of(pieces: &[&[u8]]) -> String {
        let size = pieces.iter().map(|p| p.len() as u64).sum();
        let like = EntryHash { kind: CRC64NVME.into(), value: String::new() };
        let mut h = StreamHasher::new(&like, size).expect("CRC64NVME is supported");
        for p in pieces {
            h.update(p);
        }
        let hash = h.finish().unwrap();
        assert_eq!(hash.kind, CRC64NVME);
        hash.value
    }

    /// Values computed by quilt3 8.0.0 itself
    /// (`quilt3.checksums.calculate_multipart_checksum_bytes(data, checksum_type="CRC64NVME")`).
    #[test]
    fn crc64nvme_vectors_from_quilt3() {
        assert_eq!(crc64nvme_of(&[b"Hello, World!"]), "1Km+Qyat0k0=");
        assert_eq!(crc64nvme_of(&[b"Hello, ", b"World", b"!"]), "1Km+Qyat0k0=");
        // The empty file: quilt3 combines no parts into 0.
        assert_eq!(crc64nvme_of(&[]), "AAAAAAAAAAA=");
        assert_eq!(crc64nvme_of(&[b""]), "AAAAAAAAAAA=");
        // The catalogue's check value 0xae8b14860a799888, big-endian.
        assert_eq!(crc64nvme_of(&[b"123456789"]), "rosUhgp5mIg=");
        assert_eq!(EntryHash::crc64nvme(0xae8b14860a799888).value, "rosUhgp5mIg=");
        // crc64fast-nvme's documented example 0xd9160d1fa8e418e3.
        assert_eq!(crc64nvme_of(&[b"hello world!"]), "2RYNH6jkGOM=");
    }

    /// quilt3 hashes files of more than 8 MiB in parts and combines the
    /// parts' CRCs: the result must equal one CRC over the whole file.
    #[test]
    fn crc64nvme_of_a_multi_part_file_matches_quilt3() {
        let data: Vec<u8> = (0..(MIN_CHUNK as usize * 2 + 12345)).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        let like = EntryHash { kind: CRC64NVME.into(), value: "qut3kQvtw0A=".into() };
        let (size, hash) = hash_file_like(f.path(), &like).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(hash, Some(like.clone()));
        let pieces: Vec<&[u8]> = data.chunks(999_983).collect();
        assert_eq!(crc64nvme_of(&pieces), like.value);

        // One flipped bit anywhere is caught.
        let mut bad = data.clone();
        bad[MIN_CHUNK as usize + 7] ^= 0x10;
        assert_ne!(crc64nvme_of(&[&bad]), like.value);
    }

    #[test]
    fn sha256_file_hash_equals_streaming_hash() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"Hello, World!").unwrap();
        let like = EntryHash { kind: SHA256.into(), value: String::new() };
        let (size, hash) = hash_file_like(f.path(), &like).unwrap();
        assert_eq!(size, 13);
        assert_eq!(hash.unwrap().value, "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f");
    }

    #[test]
    fn unknown_hash_types_are_never_computed() {
        let like = EntryHash { kind: "BLAKE3".into(), value: "x".into() };
        assert!(!like.is_verifiable());
        assert!(StreamHasher::new(&like, 1).is_none());
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"x").unwrap();
        assert_eq!(hash_file_like(f.path(), &like).unwrap(), (1, None));
        for kind in VERIFIABLE {
            let h = EntryHash { kind: kind.into(), value: String::new() };
            assert!(h.is_verifiable() && StreamHasher::new(&h, 0).is_some(), "{kind}");
        }
    }

    #[test]
    fn only_chunked_digests_name_blobs() {
        let chunked = StreamHasher::chunked(0).finish().unwrap();
        assert_eq!(chunked.blob_hex().unwrap(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(EntryHash::crc64nvme(0xae8b14860a799888).blob_hex(), None);
        let sha = EntryHash {
            kind: SHA256.into(),
            value: "dffd6021bb2bd5b0af676290809ec3a53191dd81c7f70a4b28688a362182986f".into(),
        };
        assert_eq!(sha.blob_hex(), None);
    }

    #[test]
    fn chunk_size_doubles_past_ten_thousand_chunks() {
        assert_eq!(chunk_size(0), MIN_CHUNK);
        assert_eq!(chunk_size(MIN_CHUNK * MAX_CHUNKS), MIN_CHUNK);
        assert_eq!(chunk_size(MIN_CHUNK * MAX_CHUNKS + 1), 2 * MIN_CHUNK);
    }

    #[test]
    fn parallel_file_hash_equals_streaming_hash_across_chunks() {
        let data: Vec<u8> = (0..(MIN_CHUNK as usize * 2 + 12345)).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        let (size, parallel) = hash_file_chunked(f.path()).unwrap();
        assert_eq!(size, data.len() as u64);
        let mut streaming = StreamHasher::chunked(data.len() as u64);
        for piece in data.chunks(777_777) {
            streaming.update(piece);
        }
        assert_eq!(streaming.finish().unwrap(), parallel);
    }

    #[test]
    fn size_mismatch_is_reported() {
        let mut h = StreamHasher::chunked(10);
        h.update(b"short");
        assert_eq!(h.finish().unwrap_err(), 5);
    }
}
