//! Exit codes, and how a failed command reports itself on stderr.

use sheaf::Error;

/// Exit codes scripts can rely on.
pub mod codes {
    /// Success.
    pub const OK: u8 = 0;
    /// Storage, network or local I/O failure.
    pub const FAILURE: u8 = 1;
    /// Invalid arguments or input (bad name, reference, key, metadata, ambiguous prefix).
    pub const INVALID: u8 = 2;
    /// A package, revision, tag, path or file does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// Data does not match its hash, or `verify` found differences.
    pub const INTEGRITY: u8 = 4;
    /// A tag points elsewhere, or too many concurrent writers.
    pub const CONFLICT: u8 = 5;
    /// A physical key lies outside the locations that may be read.
    pub const FORBIDDEN: u8 = 6;
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The library refused or failed; its kind is named in JSON.
    Registry(Error),
    /// A server (or the local file) failed `get`: JSON names the exit code,
    /// as `get` always has, since server errors have no registry kind.
    Remote {
        /// The exit code.
        code: u8,
        /// What went wrong.
        message: String,
    },
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Registry(e)
    }
}

impl Failure {
    /// The exit code to end with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Registry(e) => exit_code(e),
            Failure::Remote { code, .. } => *code,
        }
    }

    /// Writes the failure on stderr: one JSON line with `json`, else
    /// `sheaf: error: ...`.
    pub fn print(&self, json: bool) {
        eprintln!("{}", self.render(json));
    }

    /// The line [`Failure::print`] writes.
    fn render(&self, json: bool) -> String {
        use serde_json::json;
        match (self, json) {
            (Failure::Registry(e), true) => {
                json!({"error": {"kind": error_kind(e), "message": e.to_string()}}).to_string()
            }
            (Failure::Remote { code, message }, true) => {
                json!({"error": {"code": code, "message": message}}).to_string()
            }
            (Failure::Registry(e), false) => format!("sheaf: error: {e}"),
            (Failure::Remote { message, .. }, false) => format!("sheaf: error: {message}"),
        }
    }
}

/// The exit code for a registry error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Invalid(_) | Error::Ambiguous { .. } | Error::Manifest { .. } | Error::SchemaMismatch { .. } => {
            codes::INVALID
        }
        Error::NotFound(_) | Error::SessionNotFound { .. } => codes::NOT_FOUND,
        Error::Exists { .. } => codes::CONFLICT,
        Error::Integrity { .. } => codes::INTEGRITY,
        Error::Conflict(_) | Error::Moved { .. } => codes::CONFLICT,
        Error::Forbidden { .. } => codes::FORBIDDEN,
        Error::Storage { .. } | Error::Io { .. } => codes::FAILURE,
    }
}

/// A client error of a call to `server` as the CLI reports it: its exit code
/// and message. A plaintext URL whose call broke in the HTTP/2 layer (what
/// a TLS server answers a plaintext client) gets a hint to use TLS.
pub fn client_failure(e: &sheaf_client::Error, server: &str) -> (u8, String) {
    let plaintext = !server.contains("://") || server.starts_with("grpc://") || server.starts_with("grpc+tcp://");
    let broken_transport = e.server().is_some_and(|s| {
        s.status.details().is_empty()
            && matches!(
                s.status.code(),
                tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
            )
            && (s.status.message().contains("h2 protocol error") || s.status.code() == tonic::Code::Cancelled)
    });
    let mut message = e.to_string();
    if plaintext && broken_transport {
        message.push_str(&format!(" (if {server} serves TLS, connect with grpc+tls://)"));
    }
    (client_exit_code(e), message)
}

/// The exit code for a client error (`sheaf get`), by its gRPC status.
pub fn client_exit_code(e: &sheaf_client::Error) -> u8 {
    use tonic::Code;
    if matches!(e, sheaf_client::Error::Contradicted(_)) {
        return codes::INTEGRITY; // a stream that broke its plan: data lost on the way
    }
    match e.code() {
        Some(Code::NotFound) => codes::NOT_FOUND,
        Some(Code::InvalidArgument) => codes::INVALID,
        Some(Code::PermissionDenied) => codes::FORBIDDEN,
        Some(Code::DataLoss) => codes::INTEGRITY,
        Some(Code::AlreadyExists) => codes::CONFLICT,
        _ => codes::FAILURE,
    }
}

/// The kind named in a JSON error, stable for scripts.
fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Invalid(_) => "invalid",
        Error::Ambiguous { .. } => "ambiguous",
        Error::Manifest { .. } => "bad_manifest",
        Error::NotFound(_) => "not_found",
        Error::SessionNotFound { .. } => "session_not_found",
        Error::Exists { .. } => "already_exists",
        Error::SchemaMismatch { .. } => "schema_mismatch",
        Error::Integrity { .. } => "integrity",
        Error::Conflict(_) | Error::Moved { .. } => "conflict",
        Error::Forbidden { .. } => "forbidden",
        Error::Storage { .. } => "storage",
        Error::Io { .. } => "io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_print_as_scripts_expect() {
        let invalid = Failure::from(Error::Invalid("bad \"x\"".into()));
        assert_eq!(invalid.render(false), "sheaf: error: bad \"x\"");
        assert_eq!(invalid.render(true), r#"{"error":{"kind":"invalid","message":"bad \"x\""}}"#);
        assert_eq!(invalid.exit_code(), codes::INVALID);
        let remote = Failure::Remote { code: codes::NOT_FOUND, message: "gone".into() };
        assert_eq!(remote.render(false), "sheaf: error: gone");
        assert_eq!(remote.render(true), r#"{"error":{"code":3,"message":"gone"}}"#);
        assert_eq!(remote.exit_code(), codes::NOT_FOUND);
    }
}
