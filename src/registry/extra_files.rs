//! Files in a folder that a package does not list, found in bounded memory.
//!
//! `sheaf verify` reports the files of its folder that no selected entry
//! names. A set of every entry's path would cost about 100 bytes an entry
//! (100 MB for a million); instead the expected paths are spooled to a
//! temporary file as the manifest is read, then the expected paths and the
//! files found in the folder are each split on disk into buckets by a hash of
//! the path, and one bucket's expected paths at a time are held in memory to
//! check that bucket's files.

use super::{Error, Result};
use std::collections::HashSet;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path as FsPath;

/// Expected paths held in memory at a time (a few MB).
const PATHS_PER_BUCKET: u64 = 65_536;

/// At most this many buckets a side (two open files each), so a folder of
/// tens of millions of entries neither runs out of file descriptors nor
/// buffers; past 16.7 million entries a bucket holds more paths.
const MAX_BUCKETS: u64 = 256;

/// Where the spooled paths live, for error messages.
const SPOOL: &str = "verify's temporary file of paths";

fn spool_error(e: std::io::Error) -> Error {
    Error::io(SPOOL, e)
}

/// The paths a package's selected entries give, relative to the folder being
/// verified, spooled to a temporary file as they are listed.
pub(crate) struct ExpectedPaths {
    file: BufWriter<File>,
    count: u64,
}

impl ExpectedPaths {
    /// An empty list.
    pub(crate) fn new() -> Result<Self> {
        let file = tempfile::tempfile().map_err(spool_error)?;
        Ok(ExpectedPaths { file: BufWriter::with_capacity(1 << 20, file), count: 0 })
    }

    /// Adds `path`.
    pub(crate) fn push(&mut self, path: &str) -> Result<()> {
        write_record(&mut self.file, 0, path)?;
        self.count += 1;
        Ok(())
    }

    /// How many paths were added.
    pub(crate) fn len(&self) -> u64 {
        self.count
    }

    /// Whether no path was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The files under `dir` (symbolic links followed, links to nothing
    /// skipped) that no expected path
    /// names, relative to `dir` with `/` between components, in the order of
    /// a walk sorted by file name. Blocking.
    pub(crate) fn extra_in(self, dir: &FsPath) -> Result<Vec<String>> {
        self.extra_in_buckets(dir, PATHS_PER_BUCKET)
    }

    fn extra_in_buckets(self, dir: &FsPath, per_bucket: u64) -> Result<Vec<String>> {
        let buckets = self.count.div_ceil(per_bucket.max(1)).clamp(1, MAX_BUCKETS);
        let mut spool = self.file.into_inner().map_err(|e| spool_error(e.into_error()))?;
        spool.seek(SeekFrom::Start(0)).map_err(spool_error)?;
        let expected = split(BufReader::with_capacity(1 << 20, spool), buckets)?;
        let mut found = Buckets::new(buckets)?;
        for (index, item) in super::push::regular_files(dir, super::push::FolderLinks::Follow, None).enumerate() {
            let item = item?;
            let rel = item.path().strip_prefix(dir).expect("under dir");
            let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            found.push(index as u64, &rel)?;
        }
        let mut extra: Vec<(u64, String)> = Vec::new();
        for (expected, found) in expected.into_readers()?.into_iter().zip(found.into_readers()?) {
            let mut names = HashSet::new();
            for_each_record(expected, |_, path| {
                names.insert(path);
            })?;
            for_each_record(found, |index, path| {
                if !names.contains(&path) {
                    extra.push((index, path));
                }
            })?;
        }
        extra.sort_unstable_by_key(|(index, _)| *index);
        Ok(extra.into_iter().map(|(_, path)| path).collect())
    }
}

/// Temporary files of records, a record going to the bucket of its path's hash.
struct Buckets {
    files: Vec<BufWriter<File>>,
}

impl Buckets {
    fn new(count: u64) -> Result<Self> {
        let files = (0..count)
            .map(|_| tempfile::tempfile().map(|f| BufWriter::with_capacity(32 << 10, f)).map_err(spool_error))
            .collect::<Result<_>>()?;
        Ok(Buckets { files })
    }

    fn push(&mut self, index: u64, path: &str) -> Result<()> {
        let mut h = DefaultHasher::new();
        path.hash(&mut h);
        let bucket = (h.finish() % self.files.len() as u64) as usize;
        write_record(&mut self.files[bucket], index, path)
    }

    /// Each bucket's records, read from the start.
    fn into_readers(self) -> Result<Vec<BufReader<File>>> {
        self.files
            .into_iter()
            .map(|w| {
                let mut f = w.into_inner().map_err(|e| spool_error(e.into_error()))?;
                f.seek(SeekFrom::Start(0)).map_err(spool_error)?;
                Ok(BufReader::with_capacity(32 << 10, f))
            })
            .collect()
    }
}

/// The records of `spool` split into `count` buckets.
fn split(spool: impl Read, count: u64) -> Result<Buckets> {
    let mut buckets = Buckets::new(count)?;
    let mut failed = None;
    for_each_record(spool, |index, path| {
        if failed.is_none() {
            failed = buckets.push(index, &path).err();
        }
    })?;
    failed.map_or(Ok(buckets), Err)
}

/// A record: its index (8 bytes), the path's length (4 bytes), the path.
/// Lengths rather than separators: a logical key may hold any character.
fn write_record(out: &mut impl Write, index: u64, path: &str) -> Result<()> {
    let len = u32::try_from(path.len())
        .map_err(|_| Error::Invalid(format!("a path of {} bytes is too long to check", path.len())))?;
    out.write_all(&index.to_le_bytes()).map_err(spool_error)?;
    out.write_all(&len.to_le_bytes()).map_err(spool_error)?;
    out.write_all(path.as_bytes()).map_err(spool_error)
}

fn for_each_record(mut input: impl Read, mut each: impl FnMut(u64, String)) -> Result<()> {
    let mut head = [0u8; 12];
    loop {
        match input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(spool_error(e)),
        }
        let index = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        let mut path = vec![0u8; len];
        input.read_exact(&mut path).map_err(spool_error)?;
        // Written from a &str just before.
        each(index, String::from_utf8(path).map_err(|e| spool_error(std::io::Error::other(e)))?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        dir
    }

    fn expected(paths: &[&str]) -> ExpectedPaths {
        let mut e = ExpectedPaths::new().unwrap();
        for p in paths {
            e.push(p).unwrap();
        }
        e
    }

    #[test]
    fn lists_unexpected_files_in_walk_order_however_many_buckets() {
        let dir = tree(&["a", "b/c", "b/d", "b/f", "e", "b/g/h", "a-z", "line\nbreak"]);
        let want = ["a", "b/c", "b/d", "b/g/h", "missing/x", "line\nbreak"];
        let whole = expected(&want).extra_in(dir.path()).unwrap();
        assert_eq!(whole, vec!["a-z", "b/f", "e"]);
        for per_bucket in [1, 2, 3] {
            let e = expected(&want);
            assert_eq!(e.len(), 6);
            assert_eq!(e.extra_in_buckets(dir.path(), per_bucket).unwrap(), whole, "{per_bucket} a bucket");
        }
    }

    #[test]
    fn an_empty_list_finds_every_file_and_an_empty_folder_nothing() {
        let dir = tree(&["x/y", "z"]);
        let e = expected(&[]);
        assert!(e.is_empty());
        assert_eq!(e.extra_in(dir.path()).unwrap(), vec!["x/y", "z"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(expected(&["x"]).extra_in_buckets(empty.path(), 1).unwrap().is_empty());
    }
}
