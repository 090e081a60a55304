//! The wire contract, generated from `proto/sheaf.proto` (the one source of
//! truth for the three clients): tickets, typed dataset requests, endpoint
//! and FlightInfo metadata, action requests and responses, error reasons.
//!
//! Messages travel in two forms (see the proto's comments): binary, packed
//! in a `google.protobuf.Any` when a client sent a typed request, or JSON
//! (serde, with the proto's field names) when it sent text.

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/sheaf.v1.rs"));

use prost::{Message, Name};

/// Packs `message` in a `google.protobuf.Any` and encodes it.
pub fn pack<M: Name>(message: &M) -> Vec<u8> {
    prost_types::Any { type_url: M::type_url(), value: message.encode_to_vec() }.encode_to_vec()
}

/// The `Any` in `bytes` when it is one packing a `sheaf.v1` message:
/// `(message name, encoded message)`. Text (a URI, a JSON body) is never
/// one: a valid `Any` starts with the byte 0x0A (field 1), and its type
/// URL must name a message of Sheaf's package.
pub fn unpack_any(bytes: &[u8]) -> Option<(String, bytes::Bytes)> {
    let any = prost_types::Any::decode(bytes).ok()?;
    // The type's full name follows the URL's last '/' (protobuf's rule).
    let (_, full_name) = any.type_url.rsplit_once('/')?;
    let name = full_name.strip_prefix("sheaf.v1.")?;
    Some((name.to_owned(), any.value.into()))
}

/// The form of a request, which is the form of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A dataset URI or a JSON body: answered in JSON.
    Text,
    /// A packed `sheaf.v1` message: answered in binary.
    Typed,
}

impl Form {
    /// `message` in this form: binary (packed in an `Any` when `any`) or
    /// JSON.
    pub fn encode<M: Name + serde::Serialize>(self, message: &M, any: bool) -> Vec<u8> {
        match (self, any) {
            (Form::Typed, true) => pack(message),
            (Form::Typed, false) => message.encode_to_vec(),
            (Form::Text, _) => serde_json::to_vec(message).unwrap_or_default(),
        }
    }
}

/// Writes a field holding JSON text (serde's `serialize_with`) as the JSON value it holds (`null` when
/// absent), so the JSON form nests metadata rather than quoting it.
pub fn json_text<S: serde::Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    match text.as_deref().map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(value)) => value.serialize(s),
        Some(Err(_)) => text.serialize(s),
        None => s.serialize_none(),
    }
}

/// Reads a write mode (serde's `deserialize_with`) given as its name, with
/// or without the `WRITE_MODE_` prefix and in any case (`error` and
/// `errorifexists`, Spark's names, mean `error_if_exists`), or as its number.
pub fn write_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrNumber {
        Number(i32),
        Name(String),
    }
    match NameOrNumber::deserialize(d)? {
        NameOrNumber::Number(n) => Ok(n),
        NameOrNumber::Name(name) => {
            let mut upper = name.to_ascii_uppercase().replace('-', "_");
            if upper == "ERROR" || upper == "ERRORIFEXISTS" {
                upper = "ERROR_IF_EXISTS".into();
            }
            let full = if upper.starts_with("WRITE_MODE_") { upper } else { format!("WRITE_MODE_{upper}") };
            WriteMode::from_str_name(&full).map(|m| m as i32).ok_or_else(|| {
                D::Error::custom(format!("unknown write mode {name:?} (append, overwrite or error_if_exists)"))
            })
        }
    }
}

/// The `google.rpc.ErrorInfo.domain` of Sheaf's errors.
pub const ERROR_DOMAIN: &str = "sheaf.v1";

/// The type URL of `google.rpc.ErrorInfo` in a status's details.
pub const ERROR_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// Sheaf's `ErrorInfo` in one detail of a `google.rpc.Status`, if it is one.
pub fn error_info(detail: &prost_types::Any) -> Option<tonic_types::pb::ErrorInfo> {
    if !detail.type_url.ends_with("/google.rpc.ErrorInfo") {
        return None;
    }
    let info = tonic_types::pb::ErrorInfo::decode(detail.value.as_slice()).ok()?;
    (info.domain == ERROR_DOMAIN).then_some(info)
}

impl ErrorReason {
    /// The reason of an error status that names none (a status made before
    /// a detail was given, an older server, a proxy): from its gRPC code.
    pub fn of_code(code: tonic::Code) -> Self {
        use tonic::Code as C;
        match code {
            C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => ErrorReason::InvalidRequest,
            C::NotFound => ErrorReason::NotFound,
            C::AlreadyExists | C::Aborted => ErrorReason::Conflict,
            C::PermissionDenied => ErrorReason::PermissionDenied,
            C::Unauthenticated => ErrorReason::Unauthenticated,
            C::ResourceExhausted => ErrorReason::ResourceExhausted,
            C::Unavailable => ErrorReason::Unavailable,
            C::DataLoss => ErrorReason::Integrity,
            C::Unimplemented => ErrorReason::Unimplemented,
            C::Cancelled => ErrorReason::Cancelled,
            C::DeadlineExceeded => ErrorReason::DeadlineExceeded,
            C::Ok | C::Unknown | C::Internal => ErrorReason::Internal,
        }
    }
}
