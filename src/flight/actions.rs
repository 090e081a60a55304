//! DoAction: the package operations a remote client needs. Each action takes
//! one request message of `proto/sheaf.proto` and answers one response
//! message, in the form it was asked: packed in a `google.protobuf.Any`, or
//! as JSON (the messages' JSON form), so any client can use them without
//! generated code.

use super::audit::AuditNote;
use crate::auth::{Access, Principal, glob_match};
use crate::proto::{self, Form};
use crate::query::{DatasetUri, Engine};
use crate::registry::{PackageName, PackageRef};
use prost::{Message, Name};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;

/// Action names and descriptions (ListActions).
pub const ACTIONS: &[(&str, &str)] = &[
    ("list_packages", r#"Packages and their latest top hash. Body: {"pattern": "team/*"} (optional)."#),
    ("list_revisions", r#"A package's revisions, newest first. Body: {"package": "owner/name"}."#),
    ("browse", r#"A revision's entries. Body: {"ref": "owner/name[@hash|:tag]", "prefix": "dir/"} (prefix optional)."#),
    ("resolve", r#"Resolve a reference to a full top hash. Body: {"ref": "owner/name[@hash|:tag]"}."#),
    ("list_tables", r#"The tables of a revision with their dataset URIs. Body: {"ref": "owner/name[@hash|:tag]"}."#),
    (
        "begin_write",
        r#"Open a write session. Body: {"package": "owner/name", "mode": "WRITE_MODE_APPEND", "message": "...", "metadata": "{...}", "inputs": [...], "idempotency_key": "..."} (all but package optional)."#,
    ),
    (
        "commit_write",
        r#"Commit a write session's parts as one revision. Body: {"session": "...", "parts": ["part id", ...]} (parts optional: all)."#,
    ),
    ("abort_write", r#"Drop a write session and its staged parts. Body: {"session": "..."}."#),
    (
        "lineage",
        r#"A revision's inputs, transitively. Body: {"ref": "owner/name[@hash|:tag]", "depth": 16} (depth optional)."#,
    ),
    (
        "metrics",
        "The server's cumulative counters: bytes read from storage, rows scanned, DoGet streams, rows, batches and bytes sent, DoPut commits. No body.",
    ),
];

/// Decodes an action's body as `M`: a packed `sheaf.v1` message of that
/// type, or its JSON form (an empty body is the default message).
fn request<M: Message + Name + Default + DeserializeOwned>(action: &str, body: &[u8]) -> Result<(M, Form), Status> {
    if let Some((name, value)) = proto::unpack_any(body) {
        if name != M::NAME {
            return Err(Status::invalid_argument(format!(
                "{action} takes sheaf.v1.{}, not sheaf.v1.{}",
                M::NAME,
                crate::query::limits::excerpt(&name)
            )));
        }
        let message = M::decode(value)
            .map_err(|e| Status::invalid_argument(format!("{action}: not a valid sheaf.v1.{}: {e}", M::NAME)))?;
        return Ok((message, Form::Typed));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((M::default(), Form::Text));
    }
    let message = serde_json::from_slice(body).map_err(|e| {
        Status::invalid_argument(format!(
            "{}: the body must be a JSON object or a packed sheaf.v1.{}: {e}",
            crate::query::limits::excerpt(action),
            M::NAME
        ))
    })?;
    Ok((message, Form::Text))
}

/// `response` in `form`: an `Any`, or its JSON form.
fn answer<M: Name + Serialize>(form: Form, response: &M) -> Vec<u8> {
    form.encode(response, true)
}

/// `response` in `form`, where its JSON form is the bare list `items`.
fn answer_list<M: Name + Serialize, T: Serialize>(form: Form, response: &M, items: &[T]) -> Vec<u8> {
    match form {
        Form::Typed => proto::pack(response),
        Form::Text => serde_json::to_vec(items).unwrap_or_default(),
    }
}

fn reference(action: &str, text: &str) -> Result<PackageRef, Status> {
    if text.is_empty() {
        return Err(Status::invalid_argument(format!("{action}: the body needs \"ref\"")));
    }
    Ok(text.parse()?)
}

/// Who asks, and what they ask of.
struct Call<'a> {
    engine: &'a Engine,
    principal: &'a Principal,
    note: &'a AuditNote,
}

impl Call<'_> {
    /// Fails unless the caller may read `package`; a package it may not read
    /// answers as a missing one.
    fn readable(&self, package: &PackageName) -> Result<(), Status> {
        self.note.target(&package.to_string(), None, None);
        super::auth::require(self.principal, Access::Read, &package.to_string(), || {
            self.engine.registry().package_not_found(package).into()
        })
    }
}

/// Runs an action for `principal`, returning its encoded result (in the
/// form of its request). Packages it may not read are left out of listings
/// and answer as missing.
pub async fn run(
    engine: &Engine,
    action: &str,
    body: &[u8],
    principal: &Principal,
    note: &AuditNote,
) -> Result<Vec<u8>, Status> {
    let call = Call { engine, principal, note };
    match action {
        "list_packages" => {
            let (req, form) = request(action, body)?;
            let response = list_packages(&call, req).await?;
            Ok(answer_list(form, &response, &response.packages))
        }
        "list_revisions" => {
            let (req, form) = request(action, body)?;
            let response = list_revisions(&call, req).await?;
            Ok(answer_list(form, &response, &response.revisions))
        }
        "browse" => {
            let (req, form) = request(action, body)?;
            Ok(answer(form, &browse(&call, req).await?))
        }
        "resolve" => {
            let (req, form) = request::<proto::ResolveRequest>(action, body)?;
            let r = reference(action, &req.r#ref)?;
            call.readable(&r.package)?;
            let top_hash = engine.registry().resolve(&r.package, &r.revision).await?;
            Ok(answer(form, &proto::ResolveResponse { package: r.package.to_string(), top_hash }))
        }
        "list_tables" => {
            let (req, form) = request(action, body)?;
            Ok(answer(form, &list_tables(&call, req).await?))
        }
        "begin_write" => {
            let (req, form) = request(action, body)?;
            Ok(answer(form, &super::write::begin(engine.registry(), principal, note, req).await?))
        }
        "commit_write" => {
            let (req, form) = request(action, body)?;
            Ok(answer(form, &super::write::commit(engine.registry(), principal, note, req).await?))
        }
        "abort_write" => {
            let (req, form) = request(action, body)?;
            Ok(answer(form, &super::write::abort(engine.registry(), principal, note, req).await?))
        }
        "lineage" => {
            let (req, form) = request(action, body)?;
            Ok(answer(form, &super::write::lineage(engine.registry(), principal, note, req).await?))
        }
        "metrics" => {
            let (_, form) = request::<proto::MetricsRequest>(action, body)?;
            Ok(answer(form, &metrics()))
        }
        other => {
            let known: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
            Err(Status::invalid_argument(format!(
                "unknown action {}; known: {}",
                crate::query::limits::excerpt(other),
                known.join(", ")
            )))
        }
    }
}

async fn list_packages(
    call: &Call<'_>,
    req: proto::ListPackagesRequest,
) -> Result<proto::ListPackagesResponse, Status> {
    let pattern = if req.pattern.is_empty() { "*" } else { req.pattern.as_str() };
    let packages = call.engine.registry().list_packages().await?;
    let packages = packages
        .into_iter()
        .filter(|p| glob_match(pattern, &p.name) && call.principal.may(Access::Read, &p.name))
        .map(|p| proto::PackageSummary { name: p.name, latest: p.latest })
        .collect();
    Ok(proto::ListPackagesResponse { packages })
}

async fn list_revisions(
    call: &Call<'_>,
    req: proto::ListRevisionsRequest,
) -> Result<proto::ListRevisionsResponse, Status> {
    if req.package.is_empty() {
        return Err(Status::invalid_argument("list_revisions: the body needs \"package\""));
    }
    let name: PackageName = req.package.parse()?;
    call.readable(&name)?;
    let revisions = call.engine.registry().revisions(&name).await?;
    let revisions = revisions
        .into_iter()
        .map(|r| proto::RevisionSummary {
            top_hash: r.top_hash,
            timestamp: r.timestamp,
            message: r.message,
            tags: r.tags,
        })
        .collect();
    Ok(proto::ListRevisionsResponse { revisions })
}

async fn browse(call: &Call<'_>, req: proto::BrowseRequest) -> Result<proto::BrowseResponse, Status> {
    let r = reference("browse", &req.r#ref)?;
    call.readable(&r.package)?;
    let prefix = Some(req.prefix).filter(|p| !p.is_empty()).or(r.subpath.clone()).unwrap_or_default();
    // Streamed, as the CLI's browse: only the entries under the prefix are kept.
    let manifest = call.engine.registry().load_under(&r, &prefix).await?;
    let entries = manifest
        .entries
        .iter()
        .map(|e| proto::Entry {
            logical_key: e.logical_key.clone(),
            size: e.size,
            hash: Some(proto::EntryHash { r#type: e.hash.kind.clone(), value: e.hash.value.clone() }),
            meta: Some(&e.meta).filter(|m| !m.is_null()).map(ToString::to_string),
        })
        .collect();
    Ok(proto::BrowseResponse {
        package: r.package.to_string(),
        top_hash: manifest.top_hash.clone(),
        message: manifest.message().map(str::to_owned),
        user_meta: manifest.user_meta().map(ToString::to_string),
        entries,
    })
}

async fn list_tables(call: &Call<'_>, req: proto::ListTablesRequest) -> Result<proto::ListTablesResponse, Status> {
    let r = reference("list_tables", &req.r#ref)?;
    call.readable(&r.package)?;
    let top_hash = call.engine.registry().resolve(&r.package, &r.revision).await?;
    let tables = call
        .engine
        .revision(&top_hash)
        .await?
        .tables()
        .into_iter()
        .map(|(path, format)| proto::TableSummary {
            uri: DatasetUri::table(&r.package, &top_hash, &path).to_string(),
            format: format.name().to_owned(),
            path,
        })
        .collect();
    Ok(proto::ListTablesResponse { package: r.package.to_string(), top_hash, tables })
}

fn metrics() -> proto::MetricsResponse {
    let m = crate::metrics::snapshot();
    proto::MetricsResponse {
        bytes_read: m.bytes_read,
        rows_scanned: m.rows_scanned,
        do_get: m.do_get,
        do_get_cached: m.do_get_cached,
        rows_sent: m.rows_sent,
        batches_sent: m.batches_sent,
        bytes_sent: m.bytes_sent,
        do_put: m.do_put,
    }
}
