//! The client's error type. A server error keeps its status and the
//! machine-readable detail every Sheaf error carries (`sheaf.v1.ErrorReason`
//! and the package, revision, path or column at fault), so callers branch on
//! [`Error::reason`], never on message text.

use crate::proto::ErrorReason;
use arrow_flight::error::FlightError;
use prost::Message;

/// Errors from the client: the server's status, or a transport or decoding
/// failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status.
    #[error("{}: {}", .0.status.code(), .0.status.message())]
    Server(Box<ServerError>),
    /// Connecting failed.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The server URL.
        url: String,
        /// Why.
        message: String,
    },
    /// A stream contradicted its plan (other rows or another schema than
    /// the server planned): the answer is broken, not to be used.
    #[error("{0}")]
    Contradicted(String),
    /// Anything else (decoding, bad responses).
    #[error("{0}")]
    Other(String),
}

/// An error status from the server, with its detail decoded.
#[derive(Debug)]
pub struct ServerError {
    /// The status as received.
    pub status: tonic::Status,
    /// Why it failed (from the detail, else from the code).
    pub reason: ErrorReason,
    /// The package at fault, when the server named one.
    pub package: Option<String>,
    /// The revision at fault.
    pub top_hash: Option<String>,
    /// The table or entry at fault.
    pub path: Option<String>,
    /// The column at fault.
    pub column: Option<String>,
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let info = detail(status.details());
        let field = |key: &str| info.as_ref().and_then(|i| i.metadata.get(key).cloned());
        let reason = info
            .as_ref()
            .and_then(|i| ErrorReason::from_str_name(&i.reason))
            .unwrap_or_else(|| ErrorReason::of_code(status.code()));
        Error::Server(Box::new(ServerError {
            reason,
            package: field("package"),
            top_hash: field("top_hash"),
            path: field("path"),
            column: field("column"),
            status,
        }))
    }
}

/// The `ErrorInfo` of domain `sheaf.v1` in a status's details.
fn detail(details: &[u8]) -> Option<tonic_types::pb::ErrorInfo> {
    let rpc = tonic_types::pb::Status::decode(details).ok()?;
    rpc.details.iter().find_map(crate::proto::error_info)
}

impl From<FlightError> for Error {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(status) => Error::from(*status),
            other => Error::Other(other.to_string()),
        }
    }
}

impl Error {
    /// The gRPC code, when the server answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        self.server().map(|s| s.status.code())
    }

    /// Why the server refused, when it answered with an error.
    pub fn reason(&self) -> Option<ErrorReason> {
        self.server().map(|s| s.reason)
    }

    /// The server's error, when it answered with one.
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            Error::Server(s) => Some(s),
            _ => None,
        }
    }

    /// Whether another location of the same endpoint may succeed: the
    /// connection failed, or the server was unavailable.
    pub(crate) fn try_elsewhere(&self) -> bool {
        matches!(self, Error::Connect { .. }) || self.code() == Some(tonic::Code::Unavailable)
    }

    /// Whether a stream failed because its server went away (the connection
    /// broke), not because the server refused: the read may continue at
    /// another location. A status the server sent carries Sheaf's detail;
    /// one made by the transport does not.
    pub(crate) fn replica_failed(&self) -> bool {
        let Some(server) = self.server() else { return false };
        let transport = server.status.details().is_empty() && server.status.metadata().is_empty();
        match server.status.code() {
            tonic::Code::Unavailable => true,
            tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled => transport,
            _ => false,
        }
    }
}
