//! Compiles `proto/sheaf.proto` with protox (a protobuf compiler in Rust), so
//! building Sheaf needs no system `protoc`. The server uses this crate's
//! generated contract too (`sheaf::proto`): it is generated once.
//!
//! The messages that also travel as JSON (metadata of text requests, JSON
//! action bodies and results) derive serde with their proto field names, so
//! the JSON form is generated from the same definition as the binary one.

/// Messages answered as JSON to text requests.
const JSON_OUT: &[&str] = &[
    "FlightInfoMetadata",
    "EndpointMetadata",
    "PutResponse",
    "ListPackagesResponse",
    "PackageSummary",
    "ListRevisionsResponse",
    "RevisionSummary",
    "BrowseResponse",
    "Entry",
    "EntryHash",
    "ResolveResponse",
    "ListTablesResponse",
    "TableSummary",
    "MetricsResponse",
    "BeginWriteResponse",
    "CommitWriteResponse",
    "AbortWriteResponse",
    "LineageResponse",
    "LineageNode",
    "LineageInput",
];

/// Action requests accepted as JSON bodies (missing fields take defaults;
/// unknown fields are ignored, as proto3 parsers do).
const JSON_IN: &[&str] = &[
    "ListPackagesRequest",
    "ListRevisionsRequest",
    "BrowseRequest",
    "ResolveRequest",
    "ListTablesRequest",
    "MetricsRequest",
    "BeginWriteRequest",
    "LineageInput",
    "CommitWriteRequest",
    "AbortWriteRequest",
    "LineageRequest",
];

/// Metadata a client may receive as JSON (it asked with a text URI).
const JSON_BOTH: &[&str] = &["FlightInfoMetadata", "EndpointMetadata", "PutResponse"];

/// Fields holding JSON text, written as the JSON value they hold.
const JSON_TEXT: &[&str] = &["BrowseResponse.user_meta", "Entry.meta"];

/// Write-mode fields, read from JSON as a name (`"overwrite"`,
/// `"WRITE_MODE_OVERWRITE"`) or a number.
const JSON_WRITE_MODE: &[&str] = &["BeginWriteRequest.mode"];

/// Optional fields left out of JSON when absent (instead of `null`), so a
/// client that does not know them sees the same object as before.
const JSON_OMIT_NONE: &[&str] = &["EndpointMetadata.selected_rows", "EndpointMetadata.rows"];

fn main() {
    println!("cargo:rerun-if-changed=../../proto/sheaf.proto");
    let descriptors =
        protox::compile(["../../proto/sheaf.proto"], ["../../proto"]).expect("proto/sheaf.proto compiles");
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    for m in JSON_OUT {
        config.type_attribute(format!(".sheaf.v1.{m}"), "#[derive(serde::Serialize)]");
    }
    for m in JSON_IN {
        config.type_attribute(format!(".sheaf.v1.{m}"), "#[derive(serde::Deserialize)] #[serde(default)]");
    }
    for m in JSON_BOTH {
        config.type_attribute(format!(".sheaf.v1.{m}"), "#[derive(serde::Deserialize)] #[serde(default)]");
    }
    for f in JSON_TEXT {
        config.field_attribute(format!(".sheaf.v1.{f}"), "#[serde(serialize_with = \"crate::proto::json_text\")]");
    }
    for f in JSON_WRITE_MODE {
        config.field_attribute(format!(".sheaf.v1.{f}"), "#[serde(deserialize_with = \"crate::proto::write_mode\")]");
    }
    for f in JSON_OMIT_NONE {
        config.field_attribute(format!(".sheaf.v1.{f}"), "#[serde(skip_serializing_if = \"Option::is_none\")]");
    }
    config.compile_fds(descriptors).expect("prost generates code");
}
