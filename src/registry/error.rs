//! The registry layer's error type. Every message names the package, hash,
//! path or URL at fault; the CLI maps variants to exit codes and the server
//! will map them to gRPC status codes, each in one place.

use crate::manifest;
use std::borrow::Cow;

/// Errors from registry operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (bad name, reference, key or option).
    #[error("{0}")]
    Invalid(String),
    /// A package, revision, tag, path or object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A hash prefix matches more than one revision.
    #[error("hash prefix {prefix} of {package} is ambiguous; it matches {}", candidates.join(", "))]
    Ambiguous {
        /// The package asked for.
        package: String,
        /// The prefix given.
        prefix: String,
        /// Every matching top hash.
        candidates: Vec<String>,
    },
    /// Data does not match the hash the manifest records.
    #[error("{what}: content does not match its hash (expected {expected}, got {actual})")]
    Integrity {
        /// The file or manifest at fault.
        what: String,
        /// Hash (or size) recorded in the manifest.
        expected: String,
        /// Hash (or size) of the bytes found.
        actual: String,
    },
    /// A physical key points outside the locations the reader may read.
    #[error("physical key {physical_key} of {logical_key} is outside the locations this registry may read; refused")]
    Forbidden {
        /// The refused key.
        physical_key: String,
        /// The entry whose data it is.
        logical_key: String,
    },
    /// A tag already points elsewhere, or a similar write conflict.
    #[error("{0}")]
    Conflict(String),
    /// A write based on one revision found `latest` at another.
    #[error(
        "latest of {package} is {actual}, not {expected} that this write was based on; read the new revision and retry"
    )]
    Moved {
        /// `owner/name`.
        package: String,
        /// The revision the write was based on.
        expected: String,
        /// Where `latest` points now.
        actual: String,
    },
    /// A write session that does not exist (any more).
    #[error("write session {session} not found: {why}")]
    SessionNotFound {
        /// The session id asked for.
        session: String,
        /// Why: never begun, aborted, expired.
        why: String,
    },
    /// A write whose table exists, in the mode that refuses that.
    #[error("{path} exists in {package}; the write's mode (error if exists) refuses to replace or append to it")]
    Exists {
        /// `owner/name`.
        package: String,
        /// The table (file or folder).
        path: String,
    },
    /// Appended data whose columns differ from the table's.
    #[error("appending to {path} of {package}: column {column}: {why}")]
    SchemaMismatch {
        /// `owner/name`.
        package: String,
        /// The table.
        path: String,
        /// The first column at fault.
        column: String,
        /// What differs.
        why: String,
    },
    /// A manifest is malformed.
    #[error("manifest {top_hash}: {source}")]
    Manifest {
        /// The manifest's name (top hash) or file.
        top_hash: String,
        /// What is wrong with it.
        source: manifest::Error,
    },
    /// The object store failed.
    #[error("{context}: {}", hide_credentials(&source.to_string()))]
    Storage {
        /// What was being done.
        context: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Whether `e`, or an error it wraps, is a file system out of space (or
/// over its quota): `ENOSPC`, `EDQUOT`.
pub fn storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Result with the registry [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Wraps a local I/O error; a missing file or folder becomes
    /// [`Error::NotFound`] naming the path.
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(path.into()),
            _ => Error::Io { path: path.into(), source },
        }
    }

    /// Whether this is the server's storage being full (or over a quota):
    /// no retry helps until space is freed.
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => storage_full(source),
            Error::Storage { source, .. } => storage_full(source),
            _ => false,
        }
    }

    /// The message for a client of a shared server: it names the package,
    /// revision, entry or path at fault but not the server's storage
    /// locations, nor the store's own message (both are for the log).
    pub fn public_message(&self) -> String {
        match self {
            Error::Storage { context, .. } if self.is_storage_full() => {
                format!("{context}: the server's storage is full; retrying will not help until space is freed")
            }
            Error::Io { .. } if self.is_storage_full() => {
                "the server's storage is full; retrying will not help until space is freed".to_owned()
            }
            Error::Forbidden { logical_key, .. } => {
                format!("the data of {logical_key} is outside the locations this server may read; refused")
            }
            Error::Storage { context, source: object_store::Error::PermissionDenied { .. } } => {
                format!("{context}: refused (a symbolic link inside the registry is never followed)")
            }
            Error::Storage { context, .. } => format!("{context}: storage failed; retry later"),
            Error::Io { .. } => "a local file operation failed on the server".to_owned(),
            other => other.to_string(),
        }
    }

    /// A write session `id` names no session (never begun, or collected).
    pub fn no_session(id: &str) -> Self {
        Error::SessionNotFound {
            session: id.to_owned(),
            why: "it does not exist, was aborted, or expired and was collected".to_owned(),
        }
    }

    /// A sub-path that selects no entry of revision `top_hash` of `package`.
    pub fn path_not_found(path: &str, package: impl std::fmt::Display, top_hash: &str) -> Self {
        Error::NotFound(format!("path {path} in {package}@{top_hash}"))
    }

    /// Wraps a store error; a store "not found" becomes [`Error::NotFound`]
    /// naming `context`.
    pub fn storage(context: impl Into<String>, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound(context.into()),
            source => Error::Storage { context: context.into(), source },
        }
    }

    /// A read of `context` whose data ended after `got` of its `expected`
    /// bytes: a storage failure (worth a retry), not malformed data.
    pub fn cut_short(context: impl Into<String>, got: u64, expected: u64) -> Self {
        let message = format!("the read ended after {got} of {expected} bytes");
        Error::storage(context, object_store::Error::Generic { store: "sheaf", source: message.into() })
    }
}

/// `text` with the credentials of every URL in it (the `user:password@` of
/// `scheme://user:password@host/...`, as an endpoint such as
/// `AWS_ENDPOINT_URL` may carry) replaced by `***`: store errors quote the
/// URL they requested, and no message may show a secret.
pub fn hide_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::hide_credentials;

    #[test]
    fn credentials_in_urls_are_hidden() {
        let text = "GET http://admin:hunter2@127.0.0.1:9/bucket?x=a@b failed; s3://bucket/k@1 and https://tok@h";
        assert_eq!(
            hide_credentials(text),
            "GET http://***@127.0.0.1:9/bucket?x=a@b failed; s3://bucket/k@1 and https://***@h"
        );
        assert_eq!(hide_credentials("no url here: a@b"), "no url here: a@b");
        assert_eq!(hide_credentials("file:///tmp/a@b/c"), "file:///tmp/a@b/c");
    }
}
