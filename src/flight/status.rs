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
//!
//! Every error status also carries a machine-readable detail: a
//! `google.rpc.Status` in the `grpc-status-details-bin` trailer holding one
//! `google.rpc.ErrorInfo` (domain [`DOMAIN`]) whose reason is a name of
//! `sheaf.v1.ErrorReason` and whose metadata names the package, top_hash,
//! path or column at fault. The errors below set the reason they know;
//! [`complete_detail`] (run by the hygiene layer on every response) gives any
//! other error status one from its code, and fills in the package, revision
//! and table the call was about. Clients map reasons to their exception
//! types without reading messages.

use crate::proto::ErrorReason;
use crate::query;
use crate::registry;
use base64::Engine as _;
use prost::Message;
use tonic::{Code, Status};
use tonic_types::pb;

pub use crate::proto::ERROR_DOMAIN as DOMAIN;

/// The header (or trailer) of gRPC's rich error model.
const DETAILS_HEADER: &str = "grpc-status-details-bin";

/// `status` with its detail: `reason` and the non-empty `fields`
/// (`package`, `top_hash`, `path`, `column`).
pub fn detailed(status: Status, reason: ErrorReason, fields: &[(&str, &str)]) -> Status {
    let metadata = fields.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| ((*k).to_owned(), detail_value(v)));
    let info = pb::ErrorInfo {
        reason: reason.as_str_name().to_owned(),
        domain: DOMAIN.to_owned(),
        metadata: metadata.collect(),
    };
    // The detail gets its message from `grpc-message` once the hygiene
    // layer has cleaned it ([`complete_detail`]).
    let rpc = pb::Status { code: status.code() as i32, message: String::new(), details: vec![any(&info)] };
    Status::with_details(status.code(), status.message(), rpc.encode_to_vec().into())
}

/// Characters of one detail value kept: values may quote the request (a
/// column name), and gRPC clients refuse trailers over 16 KiB, which would
/// turn the answer into RESOURCE_EXHAUSTED.
const MAX_DETAIL_CHARS: usize = 512;

fn detail_value(value: &str) -> String {
    crate::query::limits::clip(value, MAX_DETAIL_CHARS).into_owned()
}

fn any(info: &pb::ErrorInfo) -> prost_types::Any {
    prost_types::Any { type_url: crate::proto::ERROR_INFO_TYPE_URL.to_owned(), value: info.encode_to_vec() }
}

/// What a call was about, to fill in an error's detail.
#[derive(Debug, Default, Clone)]
pub struct Subject {
    /// `owner/name`.
    pub package: Option<String>,
    /// The revision's top hash.
    pub top_hash: Option<String>,
    /// The table or entry.
    pub path: Option<String>,
}

/// Gives the error status in `headers` (a trailers-only response's headers,
/// or a stream's trailers) its detail: the one it has, or one from its
/// code, with `subject`'s fields added where it names none.
pub fn complete_detail(headers: &mut http::HeaderMap, subject: &Subject) {
    let code = match headers.get("grpc-status") {
        Some(v) => Code::from_bytes(v.as_bytes()),
        None => return,
    };
    if code == Code::Ok {
        return;
    }
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // gRPC writes binary headers unpadded but readers accept padding.
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engine = GeneralPurpose::new(&base64::alphabet::STANDARD, config.with_encode_padding(false));
    let existing = headers
        .get(DETAILS_HEADER)
        .and_then(|v| engine.decode(v.as_bytes()).ok())
        .and_then(|bytes| pb::Status::decode(bytes.as_slice()).ok());
    let mut rpc = existing.unwrap_or_default();
    rpc.code = code as i32;
    let found = rpc.details.iter().enumerate().find_map(|(i, d)| crate::proto::error_info(d).map(|info| (i, info)));
    let mut info = match found {
        Some((i, info)) => {
            rpc.details.remove(i);
            info
        }
        None => pb::ErrorInfo {
            reason: ErrorReason::of_code(code).as_str_name().to_owned(),
            domain: DOMAIN.to_owned(),
            metadata: Default::default(),
        },
    };
    for (key, value) in [("package", &subject.package), ("top_hash", &subject.top_hash), ("path", &subject.path)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            info.metadata.entry(key.to_owned()).or_insert_with(|| detail_value(v));
        }
    }
    rpc.details.insert(0, any(&info));
    // The detail repeats `grpc-message` (call this once it is cleaned):
    // clients of gRPC's rich error model (Go's, ADBC's) show the detail's
    // message instead of the header's.
    rpc.message = headers
        .get("grpc-message")
        .map(|v| percent_encoding::percent_decode(v.as_bytes()).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(value) = http::HeaderValue::from_str(&engine.encode(rpc.encode_to_vec())) {
        headers.insert(DETAILS_HEADER, value);
    }
}

/// The status for a registry error.
pub fn from_registry(e: &registry::Error) -> Status {
    use registry::Error as E;
    match e {
        E::Invalid(_) => detailed(Status::invalid_argument(e.to_string()), ErrorReason::InvalidRequest, &[]),
        E::Ambiguous { package, .. } => {
            detailed(Status::invalid_argument(e.to_string()), ErrorReason::AmbiguousHash, &[("package", package)])
        }
        E::Manifest { top_hash, .. } => {
            detailed(Status::invalid_argument(e.to_string()), ErrorReason::InvalidManifest, &[("top_hash", top_hash)])
        }
        E::NotFound(_) => detailed(Status::not_found(e.to_string()), ErrorReason::NotFound, &[]),
        E::Integrity { what, expected, actual } => {
            tracing::warn!(error = %e, "integrity failure");
            let status = match (expected.strip_suffix(" bytes"), actual.strip_suffix(" bytes")) {
                (Some(expected), Some(actual)) => {
                    Status::data_loss(format!("{what}: {actual} bytes, where its manifest records {expected}"))
                }
                _ => Status::data_loss(format!("{what}: content does not match its hash")),
            };
            detailed(status, ErrorReason::Integrity, &[("path", what)])
        }
        E::Forbidden { logical_key, .. } => {
            tracing::warn!(error = %e, "read refused by the read policy");
            let status = Status::permission_denied(e.public_message());
            detailed(status, ErrorReason::ForbiddenLocation, &[("path", logical_key)])
        }
        E::Conflict(_) => detailed(Status::already_exists(e.to_string()), ErrorReason::Conflict, &[]),
        E::SessionNotFound { .. } => detailed(Status::not_found(e.to_string()), ErrorReason::SessionNotFound, &[]),
        E::Exists { package, path } => detailed(
            Status::already_exists(e.to_string()),
            ErrorReason::AlreadyExists,
            &[("package", package), ("path", path)],
        ),
        E::SchemaMismatch { package, path, column, .. } => detailed(
            Status::failed_precondition(e.to_string()),
            ErrorReason::SchemaMismatch,
            &[("package", package), ("path", path), ("column", column)],
        ),
        E::Moved { package, actual, .. } => detailed(
            Status::aborted(e.to_string()),
            ErrorReason::LatestMoved,
            &[("package", package), ("top_hash", actual)],
        ),
        E::Storage { source: object_store::Error::PermissionDenied { .. }, .. } => {
            tracing::warn!(error = %e, "read refused by storage");
            detailed(Status::permission_denied(e.public_message()), ErrorReason::ForbiddenLocation, &[])
        }
        E::Storage { .. } | E::Io { .. } if e.is_storage_full() => {
            tracing::error!(error = %e, "storage full");
            storage_full(e.public_message())
        }
        E::Storage { .. } | E::Io { .. } => {
            tracing::warn!(error = %e, "storage failure");
            detailed(Status::unavailable(e.public_message()), ErrorReason::Unavailable, &[])
        }
    }
}

/// RESOURCE_EXHAUSTED for the server's storage being full (or over a
/// quota), with `message` naming what was being written: no retry helps
/// until space is freed, so it is not UNAVAILABLE (which clients retry).
pub fn storage_full(message: String) -> Status {
    detailed(Status::resource_exhausted(message), ErrorReason::ResourceExhausted, &[])
}

/// The status for a query error.
pub fn from_query(e: &query::Error) -> Status {
    use query::Error as E;
    match e {
        E::Invalid(m) => detailed(Status::invalid_argument(m.clone()), ErrorReason::InvalidRequest, &[]),
        E::UnknownColumn { column, message } => {
            detailed(Status::invalid_argument(message.clone()), ErrorReason::UnknownColumn, &[("column", column)])
        }
        E::NotFound(_) => detailed(Status::not_found(e.to_string()), ErrorReason::NotFound, &[]),
        E::Registry(r) => from_registry(r),
        E::Evaluation { .. } => detailed(Status::invalid_argument(e.to_string()), ErrorReason::EvaluationFailed, &[]),
        E::Exhausted { .. } => detailed(Status::resource_exhausted(e.to_string()), ErrorReason::ResourceExhausted, &[]),
        E::TimedOut(m) => detailed(Status::deadline_exceeded(m.clone()), ErrorReason::ResourceExhausted, &[]),
        E::Cancelled(m) => detailed(Status::cancelled(m.clone()), ErrorReason::InvalidRequest, &[]),
        E::ReadOnly(m) => detailed(Status::invalid_argument(m.clone()), ErrorReason::InvalidRequest, &[]),
        E::Storage { context, .. } => {
            tracing::warn!(error = %e, "storage failure during a scan");
            let status = Status::unavailable(format!("{context}: storage failed; retry later"));
            detailed(status, ErrorReason::Unavailable, &[])
        }
        E::Corrupt { .. } => {
            tracing::warn!(error = %e, "stored data cannot be decoded");
            detailed(Status::data_loss(e.to_string()), ErrorReason::Integrity, &[])
        }
        E::Engine { context, .. } | E::Panicked(context) => {
            tracing::error!(error = %e, "internal error");
            let status = Status::internal(format!("{context}: internal error (details are in the server's log)"));
            detailed(status, ErrorReason::Internal, &[])
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

/// Whether a failure may pass on a retry (storage, time and resource limits).
pub fn is_transient(status: &Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled | Code::Aborted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(headers: &http::HeaderMap) -> pb::ErrorInfo {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(headers.get(DETAILS_HEADER).expect("a detail").as_bytes())
            .unwrap();
        let rpc = pb::Status::decode(bytes.as_slice()).unwrap();
        pb::ErrorInfo::decode(rpc.details[0].value.as_slice()).unwrap()
    }

    #[test]
    fn every_error_status_gets_a_detail_with_its_subject() {
        let subject = Subject {
            package: Some("demo/weather".into()),
            top_hash: Some("ab".repeat(32)),
            path: Some("t.parquet".into()),
        };
        // A status made without one gets a reason from its code.
        let mut headers = http::HeaderMap::new();
        Status::resource_exhausted("too big").add_header(&mut headers).unwrap();
        complete_detail(&mut headers, &subject);
        let i = info(&headers);
        assert_eq!((i.reason.as_str(), i.domain.as_str()), ("RESOURCE_EXHAUSTED", DOMAIN));
        assert_eq!(i.metadata["package"], "demo/weather");
        assert_eq!(i.metadata["path"], "t.parquet");
        // A status with one keeps its reason and the fields it names.
        let mut headers = http::HeaderMap::new();
        let e = query::Error::UnknownColumn { column: "x".into(), message: "unknown column x".into() };
        from_query(&e).add_header(&mut headers).unwrap();
        complete_detail(&mut headers, &Subject { path: Some("other".into()), ..subject });
        let i = info(&headers);
        assert_eq!((i.reason.as_str(), i.metadata["column"].as_str()), ("UNKNOWN_COLUMN", "x"));
        assert_eq!(i.metadata["path"], "other");
        // OK stays as it is.
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("0"));
        complete_detail(&mut headers, &Subject::default());
        assert!(headers.get(DETAILS_HEADER).is_none());
    }
}
