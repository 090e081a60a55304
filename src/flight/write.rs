//! The write-session actions (`begin_write`, `commit_write`, `abort_write`)
//! and `lineage`. The parts themselves are DoPuts ([`super::put`]); the
//! registry keeps the sessions ([`crate::registry::Registry::begin_write`]).

use crate::auth::{Access, Principal};
use crate::proto;
use crate::query::DatasetUri;
use crate::query::limits::excerpt;
use crate::registry::{self, PackageName, PackageRef, Registry, SessionSpec, WriteMode, is_top_hash};
use serde_json::{Map, Value, json};
use tonic::Status;

/// Longest a session may be asked to live (a week).
const MAX_TTL_SECS: u64 = 7 * 86_400;

/// Most lineage inputs one write records.
const MAX_INPUTS: usize = 10_000;
/// Largest user metadata (JSON text) and commit message a session takes:
/// every read of the revision's manifest reads its header, which holds both.
const MAX_METADATA_BYTES: usize = 1 << 20;
const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// Longest URI a lineage input records (the header holds every input's).
const MAX_INPUT_URI_BYTES: usize = 4 << 10;

/// Refuses a caller who may not write `package`: NOT_FOUND, exactly as for a
/// missing package, to one who may not read it either.
pub(super) fn require_write(registry: &Registry, principal: &Principal, package: &str) -> Result<(), Status> {
    super::auth::require(principal, Access::Write, package, || registry.package_not_found(package).into())
}

/// The spec of write session `id`, for a caller who may read its package:
/// to anyone else a session of a package they may not read answers exactly as
/// a session that does not exist (its id names no package to them).
async fn session_for(registry: &Registry, principal: &Principal, id: &str) -> registry::Result<SessionSpec> {
    let spec = registry.write_session(id).await?;
    if !principal.may(Access::Read, &spec.package) {
        return Err(registry::Error::no_session(id));
    }
    Ok(spec)
}

/// The full top hash `base` (a hash, a prefix of 6+ hex digits, or a tag) of `pkg` names.
async fn resolve_base(registry: &Registry, pkg: &PackageName, base: &str) -> Result<String, Status> {
    let hexy = base.len() >= 6 && base.bytes().all(|b| b.is_ascii_hexdigit());
    let text = if hexy { format!("{pkg}@{base}") } else { format!("{pkg}:{base}") };
    let r: PackageRef = text.parse()?;
    Ok(registry.resolve(&r.package, &r.revision).await?)
}

/// Opens a write session.
pub async fn begin(
    registry: &Registry,
    principal: &Principal,
    note: &super::audit::AuditNote,
    req: proto::BeginWriteRequest,
) -> Result<proto::BeginWriteResponse, Status> {
    if req.package.is_empty() {
        return Err(Status::invalid_argument("begin_write: the body needs \"package\""));
    }
    let pkg: PackageName = req.package.parse()?;
    note.target(&pkg.to_string(), None, None);
    require_write(registry, principal, &pkg.to_string())?;
    let bad = |m: String| Status::invalid_argument(format!("begin_write to {pkg}: {m}"));
    let base = match req.base.as_deref().filter(|b| !b.is_empty()) {
        Some(b) => Some(resolve_base(registry, &pkg, b).await?),
        None => None,
    };
    let mode = match proto::WriteMode::try_from(req.mode) {
        Ok(proto::WriteMode::Append) => WriteMode::Append,
        Ok(proto::WriteMode::Overwrite) => WriteMode::Overwrite,
        Ok(proto::WriteMode::ErrorIfExists) => WriteMode::ErrorIfExists,
        Err(_) => return Err(bad(format!("unknown write mode {}", req.mode))),
    };
    if let Some(text) = req.metadata.as_deref().filter(|t| t.len() > MAX_METADATA_BYTES) {
        return Err(bad(format!("metadata of {} bytes; at most {MAX_METADATA_BYTES} are kept", text.len())));
    }
    if let Some(text) = req.message.as_deref().filter(|t| t.len() > MAX_MESSAGE_BYTES) {
        return Err(bad(format!("a message of {} bytes; at most {MAX_MESSAGE_BYTES} are kept", text.len())));
    }
    let metadata = match req.metadata.as_deref() {
        None => None,
        // Read as Python reads it; an integer beyond 64 bits is refused
        // (a session's metadata is kept as values, which would round it).
        Some(text) => match crate::manifest::json::parse_like_python(text) {
            Ok(Value::Object(m)) => Some(m),
            Ok(_) => return Err(bad("metadata must be a JSON object".into())),
            Err(e) => return Err(bad(format!("metadata: {e}"))),
        },
    };
    if req.inputs.len() > MAX_INPUTS {
        return Err(bad(format!("{} lineage inputs; at most {MAX_INPUTS} are recorded", req.inputs.len())));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        input.package.parse::<PackageName>().map_err(|e| bad(format!("lineage input: {e}")))?;
        if !is_top_hash(&input.top_hash) {
            return Err(bad(format!(
                "lineage input {}@{}: a full top hash (64 lowercase hex digits) is needed",
                input.package,
                excerpt(&input.top_hash)
            )));
        }
        if input.uri.len() > MAX_INPUT_URI_BYTES {
            return Err(bad(format!(
                "lineage input {}@{}: a URI of {} bytes ({}); at most {MAX_INPUT_URI_BYTES} are recorded",
                input.package,
                input.top_hash,
                input.uri.len(),
                excerpt(&input.uri)
            )));
        }
        inputs.push(json!({ "package": input.package, "top_hash": input.top_hash, "uri": input.uri }));
    }
    let mut writer = Map::new();
    writer.insert("principal".into(), json!(principal.label()));
    if !req.tool.is_empty() {
        writer.insert("tool".into(), json!(req.tool.chars().take(200).collect::<String>()));
    }
    writer.insert("server".into(), json!(concat!("sheaf ", env!("CARGO_PKG_VERSION"))));
    let mut lineage = Map::new();
    lineage.insert("inputs".into(), Value::Array(inputs));
    lineage.insert("writer".into(), Value::Object(writer));
    let ttl = req.ttl_seconds.map_or(registry::DEFAULT_TTL_SECS, u64::from).clamp(1, MAX_TTL_SECS);
    let now = registry::now_secs();
    let spec = SessionSpec {
        package: pkg.to_string(),
        base,
        mode,
        message: req.message,
        metadata,
        lineage,
        created_at: now,
        expires_at: now + ttl,
    };
    let key = Some(req.idempotency_key.as_str()).filter(|k| !k.is_empty());
    let (session, spec) = registry.begin_write(spec, key).await?;
    tracing::info!(principal = %principal.label(), package = %pkg, session = %session, "write session begun");
    Ok(proto::BeginWriteResponse { session, package: spec.package, base: spec.base, expires_at: spec.expires_at })
}

/// Commits a write session: one new revision.
pub async fn commit(
    registry: &Registry,
    principal: &Principal,
    note: &super::audit::AuditNote,
    req: proto::CommitWriteRequest,
) -> Result<proto::CommitWriteResponse, Status> {
    let spec = session_for(registry, principal, &req.session).await?;
    note.target(&spec.package, None, None);
    require_write(registry, principal, &spec.package)?;
    let outcome = registry.commit_write(&req.session, &req.parts).await?;
    crate::metrics::DO_PUT.add(1);
    note.target(&outcome.package, Some(&outcome.top_hash), None);
    tracing::info!(principal = %principal.label(), package = %outcome.package, session = %req.session, top_hash = %outcome.top_hash,
        previous = ?outcome.previous, rows = outcome.rows, bytes = outcome.bytes, "write session committed");
    let pkg: PackageName = outcome.package.parse()?;
    let uris = outcome.tables.iter().map(|t| DatasetUri::table(&pkg, &outcome.top_hash, t).to_string()).collect();
    Ok(proto::CommitWriteResponse {
        package: outcome.package,
        top_hash: outcome.top_hash,
        previous: outcome.previous,
        uris,
        keys: outcome.keys,
        rows: outcome.rows,
        bytes: outcome.bytes,
    })
}

/// Aborts a write session; one that is already gone answers success.
pub async fn abort(
    registry: &Registry,
    principal: &Principal,
    note: &super::audit::AuditNote,
    req: proto::AbortWriteRequest,
) -> Result<proto::AbortWriteResponse, Status> {
    match session_for(registry, principal, &req.session).await {
        Ok(spec) => {
            note.target(&spec.package, None, None);
            require_write(registry, principal, &spec.package)?
        }
        Err(registry::Error::SessionNotFound { .. }) => return Ok(proto::AbortWriteResponse {}),
        Err(e) => return Err(e.into()),
    }
    registry.abort_write(&req.session).await?;
    tracing::info!(principal = %principal.label(), session = %req.session, "write session aborted");
    Ok(proto::AbortWriteResponse {})
}

/// A revision's lineage, as far as the caller may read.
pub async fn lineage(
    registry: &Registry,
    principal: &Principal,
    note: &super::audit::AuditNote,
    req: proto::LineageRequest,
) -> Result<proto::LineageResponse, Status> {
    if req.r#ref.is_empty() {
        return Err(Status::invalid_argument("lineage: the body needs \"ref\""));
    }
    let root: PackageRef = req.r#ref.parse()?;
    note.target(&root.package.to_string(), None, None);
    super::auth::require(principal, Access::Read, &root.package.to_string(), || {
        registry.package_not_found(&root.package).into()
    })?;
    let depth = req.depth.unwrap_or(16).min(64);
    let reader = principal.clone();
    let nodes = registry.lineage(&root, depth, move |p: &str| reader.may(Access::Read, p)).await?;
    let nodes = nodes
        .into_iter()
        .map(|n| proto::LineageNode {
            package: n.package,
            top_hash: n.top_hash,
            depth: n.depth,
            message: n.message,
            principal: n.principal,
            tool: n.tool,
            inputs: n
                .inputs
                .into_iter()
                .map(|i| proto::LineageInput { package: i.package, top_hash: i.top_hash, uri: i.uri })
                .collect(),
            missing: n.missing,
        })
        .collect();
    Ok(proto::LineageResponse { nodes })
}
