//! Package names (`owner/name`), tags, and references to a revision
//! (`owner/name[/SUBPATH][@HASH_PREFIX|:TAG]`).

use super::Error;
use crate::manifest::key;
use std::fmt;
use std::str::FromStr;

/// Shortest hash prefix accepted, as in quilt3.
pub const MIN_HASH_PREFIX: usize = 6;

/// A validated package name, `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName {
    /// The owner (user or team) part.
    pub owner: String,
    /// The package part.
    pub name: String,
}

/// Longest owner, name or tag: one directory name in a local registry.
pub const MAX_NAME_PART: usize = 255;

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_NAME_PART
        && !part.starts_with('.')
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// At most 64 characters of a caller-given `text`, for messages.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

impl FromStr for PackageName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.split_once('/') {
            Some((owner, name)) if valid_part(owner) && valid_part(name) => {
                Ok(PackageName { owner: owner.into(), name: name.into() })
            }
            _ => Err(Error::invalid(format!(
                "invalid package name {:?}: expected OWNER/NAME using letters, digits, '_', '-' and '.' \
                 (at most {MAX_NAME_PART} each)",
                excerpt(s)
            ))),
        }
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Validates a tag name: letters, digits, `_`, `-`, `.`; not `latest`, which
/// always means the package's latest pointer.
pub fn validate_tag(tag: &str) -> Result<(), Error> {
    if tag == "latest" {
        return Err(Error::invalid("\"latest\" is reserved: it always names the newest revision"));
    }
    if !valid_part(tag) {
        return Err(Error::invalid(format!(
            "invalid tag {:?}: use letters, digits, '_', '-' and '.' (at most {MAX_NAME_PART}), not starting with '.'",
            excerpt(tag)
        )));
    }
    Ok(())
}

/// Which revision of a package a reference means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    /// The `latest` pointer.
    Latest,
    /// A full top hash or a prefix of at least six hex characters.
    Hash(String),
    /// A named tag (`:v1`); `:latest` is [`Revision::Latest`].
    Tag(String),
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revision::Latest => write!(f, ":latest"),
            Revision::Hash(h) => write!(f, "@{h}"),
            Revision::Tag(t) => write!(f, ":{t}"),
        }
    }
}

/// `owner/name[/SUBPATH][@HASH_PREFIX|:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRef {
    /// The package.
    pub package: PackageName,
    /// A path inside the package (file or folder), if given.
    pub subpath: Option<String>,
    /// The revision.
    pub revision: Revision,
}

impl FromStr for PackageRef {
    type Err = Error;

    /// Accepts the revision after the name or at the very end:
    /// `owner/name@abc123/sub/path` and `owner/name/sub/path@abc123` mean the same.
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut parts = s.splitn(3, '/');
        let (owner, second, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
        let (name, revision, subpath) = if let Some((name, rev)) = split_revision(second, s)? {
            (name, rev, rest.map(str::to_owned))
        } else {
            // A revision after the path: a '@' or ':' inside a file name
            // lands here, so a refusal says how to write one.
            let after_path = rest.map(|r| split_revision(r, s)).transpose().map_err(|e| match e {
                Error::Invalid(m) => {
                    Error::Invalid(format!("{m} (a '@' or ':' that belongs to the path is written %40 or %3A)"))
                }
                other => other,
            })?;
            match after_path.flatten() {
                Some((sub, rev)) => (second, rev, Some(sub.to_owned())),
                None => (second, Revision::Latest, rest.map(str::to_owned)),
            }
        };
        let package: PackageName = format!("{owner}/{name}").parse()?;
        let subpath = match subpath.as_deref().map(|p| p.trim_end_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                key::validate(p).map_err(|why| Error::invalid(format!("invalid path {p:?} in {s:?}: {why}")))?;
                Some(p.to_owned())
            }
        };
        Ok(PackageRef { package, subpath, revision })
    }
}

/// Splits a trailing `@HASH_PREFIX` or `:TAG` off `text`; `None` when it has
/// neither. `whole` is the full reference, for error messages.
fn split_revision<'a>(text: &'a str, whole: &str) -> Result<Option<(&'a str, Revision)>, Error> {
    if let Some((rest, hash)) = text.rsplit_once('@') {
        let revision = Revision::hash(hash)
            .map_err(|_| Error::invalid(format!("invalid revision in {whole:?}: {}", Revision::HASH_RULE)))?;
        return Ok(Some((rest, revision)));
    }
    match text.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((rest, tag)) => Ok(Some((rest, Revision::tag(tag)?))),
        None => Ok(None),
    }
}

impl Revision {
    const HASH_RULE: &str = "a hash must be 6 to 64 hex characters";

    /// A revision by top hash or prefix (6 to 64 hex characters, any case).
    pub fn hash(hash: &str) -> Result<Revision, Error> {
        let hash = hash.to_ascii_lowercase();
        if hash.len() < MIN_HASH_PREFIX || hash.len() > 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("invalid revision {hash:?}: {}", Self::HASH_RULE)));
        }
        Ok(Revision::Hash(hash))
    }

    /// A revision by tag; `latest` is [`Revision::Latest`].
    pub fn tag(tag: &str) -> Result<Revision, Error> {
        if tag == "latest" {
            return Ok(Revision::Latest);
        }
        validate_tag(tag)?;
        Ok(Revision::Tag(tag.to_owned()))
    }
}

impl fmt::Display for PackageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.package)?;
        if let Some(p) = &self.subpath {
            write!(f, "/{p}")?;
        }
        if self.revision != Revision::Latest {
            write!(f, "{}", self.revision)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_refused_with_a_short_message() {
        let part = "n".repeat(MAX_NAME_PART);
        assert!(format!("o/{part}").parse::<PackageName>().is_ok());
        let err = format!("o/{part}n").parse::<PackageName>().unwrap_err().to_string();
        assert!(err.contains("at most 255") && err.len() < 300, "{err}");
        assert!(validate_tag(&"t".repeat(MAX_NAME_PART + 1)).is_err());
    }

    #[test]
    fn refs_parse() {
        let r: PackageRef = "team/data/images/train@ABCDEF12".parse().unwrap();
        assert_eq!(r.package.to_string(), "team/data");
        assert_eq!(r.subpath.as_deref(), Some("images/train"));
        assert_eq!(r.revision, Revision::Hash("abcdef12".into()));
        let r: PackageRef = "team/data:v1".parse().unwrap();
        assert_eq!(r.revision, Revision::Tag("v1".into()));
        assert_eq!(r.subpath, None);
        let r: PackageRef = "team/data:latest".parse().unwrap();
        assert_eq!(r.revision, Revision::Latest);
        assert!("team/data@abc".parse::<PackageRef>().is_err());
        assert!("team".parse::<PackageRef>().is_err());
        assert!("team/../x".parse::<PackageRef>().is_err());
        assert!("team/data/../../etc".parse::<PackageRef>().is_err());
        assert!("../x/y".parse::<PackageRef>().is_err());
        let early: PackageRef = "team/data@abcdef12/images/train".parse().unwrap();
        assert_eq!(early, "team/data/images/train@abcdef12".parse::<PackageRef>().unwrap());
        let early: PackageRef = "team/data:v1/x.csv".parse().unwrap();
        assert_eq!(early.revision, Revision::Tag("v1".into()));
        assert_eq!(early.subpath.as_deref(), Some("x.csv"));
        let err = "team/data/photos/me@home.jpg".parse::<PackageRef>().unwrap_err().to_string();
        assert!(err.contains("written %40 or %3A"), "{err}");
    }
}
