//! Which revisions are a package's own, remembered for a while: with
//! [`super::Registry::with_own_revisions`] set, every `owner/name@HASH` is
//! checked against the package's pointers (its timestamp files, `latest` and
//! tags), which costs a listing and a read per revision. A hash once found
//! among them is taken as the package's own for [`TTL`] without reading them
//! again; a hash not found is never remembered, so a new revision is seen
//! at once.

use super::PackageName;
use quick_cache::sync::Cache;
use std::time::{Duration, Instant};

/// How long a confirmed revision is taken as the package's own. A revision
/// deleted from the package (`sheaf delete`) stays readable by its hash for
/// at most this long through a server that confirmed it before.
pub const TTL: Duration = Duration::from_secs(60);

/// `(package, top hash)` pairs remembered at most (about 150 bytes each).
const ENTRIES: usize = 100_000;

/// The confirmed `(package, top hash)` pairs and when they were confirmed.
pub(super) struct OwnRevisions {
    confirmed: Cache<(PackageName, String), Instant>,
}

impl OwnRevisions {
    pub(super) fn new() -> Self {
        OwnRevisions { confirmed: Cache::new(ENTRIES) }
    }

    /// Whether `top_hash` was found among `package`'s revisions within [`TTL`].
    pub(super) fn knows(&self, package: &PackageName, top_hash: &str) -> bool {
        self.confirmed.get(&(package.clone(), top_hash.to_owned())).is_some_and(|when| when.elapsed() < TTL)
    }

    /// Remembers `hashes`, just read from `package`'s pointers, as its own.
    pub(super) fn confirm(&self, package: &PackageName, hashes: &[String]) {
        let now = Instant::now();
        for hash in hashes {
            self.confirmed.insert((package.clone(), hash.clone()), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_what_was_confirmed_for_its_package() {
        let (ab, ac): (PackageName, PackageName) = ("a/b".parse().unwrap(), "a/c".parse().unwrap());
        let own = OwnRevisions::new();
        assert!(!own.knows(&ab, "h1"));
        own.confirm(&ab, &["h1".into(), "h2".into()]);
        assert!(own.knows(&ab, "h1") && own.knows(&ab, "h2"));
        assert!(!own.knows(&ac, "h1"));
        assert!(!own.knows(&ab, "h3"));
        // Expired confirmations count as unknown.
        own.confirmed.insert((ab.clone(), "old".into()), Instant::now() - TTL - Duration::from_secs(1));
        assert!(!own.knows(&ab, "old"));
    }
}
