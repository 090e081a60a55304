//! DoAction: the package operations a remote client needs. Bodies and
//! results are UTF-8 JSON, so any client can use them without generated code.

use crate::auth::{Access, Principal, glob_match};
use crate::query::{DatasetUri, Engine, table};
use crate::registry::{PackageName, PackageRef};
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::Status;

/// Action names and descriptions (ListActions).
pub const ACTIONS: &[(&str, &str)] = &[
    ("list_packages", r#"Packages and their latest top hash. Body: {"pattern": "team/*"} (optional)."#),
    ("list_revisions", r#"A package's revisions, newest first. Body: {"package": "owner/name"}."#),
    ("browse", r#"A revision's entries. Body: {"ref": "owner/name[@hash|:tag]", "prefix": "dir/"} (prefix optional)."#),
    ("resolve", r#"Resolve a reference to a full top hash. Body: {"ref": "owner/name[@hash|:tag]"}."#),
    ("list_tables", r#"The tables of a revision with their dataset URIs. Body: {"ref": "owner/name[@hash|:tag]"}."#),
    (
        "metrics",
        "The server's cumulative counters: bytes read from storage, rows scanned, DoGet streams, rows, batches and bytes sent, DoPut commits. No body.",
    ),
];

#[derive(Deserialize, Default)]
struct Body {
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    package: Option<String>,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
}

fn parse_body(action: &str, body: &[u8]) -> Result<Body, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Status::invalid_argument(format!(
            "{}: the body must be a JSON object: {e}",
            crate::query::limits::excerpt(action)
        ))
    })
}

fn reference(action: &str, body: &Body) -> Result<PackageRef, Status> {
    let text = body
        .reference
        .as_deref()
        .ok_or_else(|| Status::invalid_argument(format!("{action}: the body needs \"ref\"")))?;
    Ok(text.parse()?)
}

/// Runs an action for `principal`, returning its JSON result. Packages it
/// may not read are left out of listings and answer as missing.
pub async fn run(
    engine: &Engine,
    action: &str,
    body: &[u8],
    principal: &Principal,
    note: &super::audit::AuditNote,
) -> Result<Value, Status> {
    let registry = engine.registry();
    let body = parse_body(action, body)?;
    let readable = |package: &PackageName| {
        note.target(&package.to_string(), None, None);
        super::auth::require(principal, Access::Read, &package.to_string(), || {
            crate::registry::Error::NotFound(format!("package {package} in {}", registry.url())).into()
        })
    };
    match action {
        "list_packages" => {
            let pattern = body.pattern.as_deref().unwrap_or("*");
            let packages = registry.list_packages().await?;
            let visible =
                packages.into_iter().filter(|p| glob_match(pattern, &p.name) && principal.may(Access::Read, &p.name));
            Ok(json!(visible.collect::<Vec<_>>()))
        }
        "list_revisions" => {
            let name: PackageName = body
                .package
                .as_deref()
                .ok_or_else(|| Status::invalid_argument("list_revisions: the body needs \"package\""))?
                .parse()?;
            readable(&name)?;
            Ok(json!(registry.revisions(&name).await?))
        }
        "browse" => {
            let r = reference(action, &body)?;
            readable(&r.package)?;
            let (top_hash, manifest) = registry.load(&r).await?;
            let prefix = body.prefix.or(r.subpath).unwrap_or_default();
            let entries: Vec<Value> = manifest
                .entries()
                .filter(|e| crate::manifest::key::is_under(&e.logical_key, &prefix))
                .map(|e| json!({"logical_key": e.logical_key, "size": e.size, "hash": e.hash, "meta": e.meta}))
                .collect();
            Ok(json!({"package": r.package.to_string(), "top_hash": top_hash, "message": manifest.message(),
                      "user_meta": manifest.user_meta(), "entries": entries}))
        }
        "resolve" => {
            let r = reference(action, &body)?;
            readable(&r.package)?;
            let top_hash = registry.resolve(&r.package, &r.revision).await?;
            Ok(json!({"package": r.package.to_string(), "top_hash": top_hash}))
        }
        "list_tables" => {
            let r = reference(action, &body)?;
            readable(&r.package)?;
            let top_hash = registry.resolve(&r.package, &r.revision).await?;
            let manifest = engine.manifest(&top_hash).await?;
            let tables: Vec<Value> = table::list(&manifest)
                .into_iter()
                .map(|(path, format)| {
                    let uri = DatasetUri::table(&r.package, &top_hash, &path).to_string();
                    json!({"path": path, "format": format.name(), "uri": uri})
                })
                .collect();
            Ok(json!({"package": r.package.to_string(), "top_hash": top_hash, "tables": tables}))
        }
        "metrics" => Ok(json!(crate::metrics::snapshot())),
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
