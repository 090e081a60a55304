//! The one place errors become gRPC status codes.
//!
//! unknown package, hash, tag or path -> NOT_FOUND; bad URI, filter, column
//! or ambiguous hash prefix, and errors raised by the request's own
//! expressions on the data (division by zero, bad casts, overflow) ->
//! INVALID_ARGUMENT; a physical key outside the allowed locations, or a
//! symbolic link inside the registry -> PERMISSION_DENIED; data not matching
//! its hash -> DATA_LOSS; storage failure -> UNAVAILABLE; a request over a
//! resource limit -> RESOURCE_EXHAUSTED; a write based on a revision that is
//! no longer latest -> ABORTED; anything else -> INTERNAL.
//!
//! Messages sent to clients never carry the server's storage paths or the
//! details of an internal failure: those go to the log, and the client gets
//! the logical key or table at fault. (The [`super::hygiene`] layer also caps
//! every message's size.)

use crate::query;
use crate::registry;
use tonic::Status;

/// The status for a registry error.
pub fn from_registry(e: &registry::Error) -> Status {
    use registry::Error as E;
    match e {
        E::Invalid(_) | E::Ambiguous { .. } | E::Manifest { .. } => Status::invalid_argument(e.to_string()),
        E::NotFound(_) => Status::not_found(e.to_string()),
        E::Integrity { what, .. } => {
            tracing::warn!(error = %e, "integrity failure");
            Status::data_loss(format!("{what}: content does not match its hash"))
        }
        E::Forbidden { .. } => {
            tracing::warn!(error = %e, "read refused by the read policy");
            Status::permission_denied(e.public_message())
        }
        E::Conflict(_) => Status::already_exists(e.to_string()),
        E::Moved { .. } => Status::aborted(e.to_string()),
        E::Storage { source: object_store::Error::PermissionDenied { .. }, .. } => {
            tracing::warn!(error = %e, "read refused by storage");
            Status::permission_denied(e.public_message())
        }
        E::Storage { .. } | E::Io { .. } => {
            tracing::warn!(error = %e, "storage failure");
            Status::unavailable(e.public_message())
        }
    }
}

/// The status for a query error.
pub fn from_query(e: &query::Error) -> Status {
    use query::Error as E;
    match e {
        E::Invalid(m) => Status::invalid_argument(m.clone()),
        E::NotFound(_) => Status::not_found(e.to_string()),
        E::Registry(r) => from_registry(r),
        E::Evaluation { .. } => Status::invalid_argument(e.to_string()),
        E::Exhausted { .. } => Status::resource_exhausted(e.to_string()),
        E::Storage { context, .. } => {
            tracing::warn!(error = %e, "storage failure during a scan");
            Status::unavailable(format!("{context}: storage failed; retry later"))
        }
        E::Engine { context, .. } | E::Panicked(context) => {
            tracing::error!(error = %e, "internal error");
            Status::internal(format!("{context}: internal error (details are in the server's log)"))
        }
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
