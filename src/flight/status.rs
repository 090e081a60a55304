//! The one place errors become gRPC status codes.
//!
//! unknown package, hash, tag or path -> NOT_FOUND; bad URI, filter, column
//! or ambiguous hash prefix -> INVALID_ARGUMENT (with the parser's message);
//! a physical key outside the allowed locations -> PERMISSION_DENIED; data
//! not matching its hash -> DATA_LOSS; storage failure -> UNAVAILABLE; a
//! write based on a revision that is no longer latest -> ABORTED.

use crate::query;
use crate::registry;
use tonic::Status;

/// The status for a registry error.
pub fn from_registry(e: &registry::Error) -> Status {
    use registry::Error as E;
    let msg = e.to_string();
    match e {
        E::Invalid(_) | E::Ambiguous { .. } | E::Manifest { .. } => Status::invalid_argument(msg),
        E::NotFound(_) => Status::not_found(msg),
        E::Integrity { .. } => Status::data_loss(msg),
        E::Forbidden { .. } => Status::permission_denied(msg),
        E::Conflict(_) => Status::already_exists(msg),
        E::Moved { .. } => Status::aborted(msg),
        E::Storage { .. } | E::Io { .. } => Status::unavailable(msg),
    }
}

/// The status for a query error.
pub fn from_query(e: &query::Error) -> Status {
    match e {
        query::Error::Invalid(m) => Status::invalid_argument(m.clone()),
        query::Error::NotFound(_) => Status::not_found(e.to_string()),
        query::Error::Registry(r) => from_registry(r),
        // DataFusion reports object-store failures inside its own errors.
        query::Error::Engine { message, .. } if message.contains("Object Store error") => Status::unavailable(e.to_string()),
        query::Error::Engine { .. } => Status::internal(e.to_string()),
    }
}

impl From<query::Error> for Status {
    fn from(e: query::Error) -> Status {
        from_query(&e)
    }
}

impl From<registry::Error> for Status {
    fn from(e: registry::Error) -> Status {
        from_registry(&e)
    }
}
