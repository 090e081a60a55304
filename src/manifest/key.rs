//! Logical keys: the `/`-separated paths of entries inside a package.
//!
//! A key is what `install` turns into a file path under `--dest`, so every key
//! read from any manifest is validated before it is used: no absolute paths, no
//! `..` or `.` segments, no empty segments, no backslashes and no NUL.

use std::cmp::Ordering;

/// Why a logical key was refused.
pub fn validate(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("it is empty");
    }
    if key.starts_with('/') {
        return Err("it is an absolute path");
    }
    if key.contains('\\') {
        return Err("it contains a backslash");
    }
    if key.contains('\0') {
        return Err("it contains a NUL byte");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("it has an empty path segment"),
            "." | ".." => return Err("it has a '.' or '..' segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Validates a folder key of a folder-metadata line (`dir/` or `a/b/`).
pub fn validate_dir(key: &str) -> Result<(), &'static str> {
    match key.strip_suffix('/') {
        Some(inner) => validate(inner),
        None => Err("a folder key must end with '/'"),
    }
}

/// The order quilt3 writes entries in: by path segments, each compared by code
/// point (`B`, `a/b`, `a-b`, `b/x`, `b.txt`).
pub fn walk_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Whether `key` lies under the folder `prefix` (`a/b` is under `a` and `a/`),
/// or is `prefix` itself.
pub fn is_under(key: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || key == prefix || (key.starts_with(prefix) && key.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Whether `key` lies strictly under `file` taken as a folder (`x/y` and
/// `x/y/z` under `x`): a manifest cannot hold both, as no file system (and
/// no quilt3 package) has a file and a folder at one path.
pub fn is_strictly_under(key: &str, file: &str) -> bool {
    key.len() > file.len() && key.starts_with(file) && key.as_bytes()[file.len()] == b'/'
}

/// The proper prefixes of `key` that are folders (`a`, `a/b` for `a/b/c`).
pub fn folders(key: &str) -> impl Iterator<Item = &str> {
    key.match_indices('/').map(move |(i, _)| &key[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders() {
        assert!(is_strictly_under("x/y", "x"));
        assert!(is_strictly_under("x/y/z", "x/y"));
        assert!(!is_strictly_under("x", "x"));
        assert!(!is_strictly_under("xy", "x"));
        assert!(!is_strictly_under("x-y/z", "x"));
        assert_eq!(folders("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(folders("a").count(), 0);
    }

    #[test]
    fn order_matches_quilt3() {
        let mut keys = vec!["b.txt", "a-b", "b/x", "B", "a/b"];
        keys.sort_by(|a, b| walk_order(a, b));
        assert_eq!(keys, ["B", "a/b", "a-b", "b/x", "b.txt"]);
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in ["", "/etc/passwd", "a/../b", "..", "a/./b", "a//b", "a\\b", "a\0b", "a/"] {
            assert!(validate(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a", "a/b.txt", "ünïcode/😀.bin", "..a", "a..", ".hidden"] {
            assert!(validate(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn under_is_segment_aware() {
        assert!(is_under("a/b", "a"));
        assert!(is_under("a/b", "a/"));
        assert!(is_under("a", "a"));
        assert!(!is_under("ab/c", "a"));
        assert!(is_under("x", ""));
    }
}
