//! The `sheaf` command: turns flags into library calls and results into text
//! or JSON. Exit codes are part of the interface (see [`exit_code`]).

mod args;
mod auth;
mod bar;
mod gc;
mod get;

pub use args::Cli;
use args::Command;
use bar::Bar;
use serde::Serialize;
use serde_json::{Value, json};
use sheaf::flight;
use sheaf::manifest::hash;
use sheaf::query::Engine;
use sheaf::registry::{PushOptions, Registry};
use sheaf::{Error, PackageName, PackageRef, ReadPolicy, Revision};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

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

/// The exit code for a registry error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Invalid(_) | Error::Ambiguous { .. } | Error::Manifest { .. } => codes::INVALID,
        Error::NotFound(_) => codes::NOT_FOUND,
        Error::Integrity { .. } => codes::INTEGRITY,
        Error::Conflict(_) | Error::Moved { .. } => codes::CONFLICT,
        Error::Forbidden { .. } => codes::FORBIDDEN,
        Error::Storage { .. } | Error::Io { .. } => codes::FAILURE,
    }
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Invalid(_) => "invalid",
        Error::Ambiguous { .. } => "ambiguous",
        Error::Manifest { .. } => "bad_manifest",
        Error::NotFound(_) => "not_found",
        Error::Integrity { .. } => "integrity",
        Error::Conflict(_) | Error::Moved { .. } => "conflict",
        Error::Forbidden { .. } => "forbidden",
        Error::Storage { .. } => "storage",
        Error::Io { .. } => "io",
    }
}

/// The default registry: a local folder, so nothing needs configuring.
fn default_registry() -> String {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("sheaf/registry").display().to_string()
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match dispatch(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if json {
                eprintln!("{}", json!({"error": {"kind": error_kind(&e), "message": e.to_string()}}));
            } else {
                eprintln!("sheaf: error: {e}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Prints `value` as one line of JSON, or `human` otherwise. A closed stdout
/// (as in `sheaf browse x | head -1`) is not an error.
fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    use std::io::Write;
    let text = if json { serde_json::to_string(value).expect("serializable") } else { human() };
    if !text.is_empty() {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn when(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

async fn dispatch(cli: Cli) -> Result<u8, Error> {
    let json = cli.json;
    match &cli.command {
        Command::Hash { files } => return hash_files(files, json).await,
        Command::Auth { command } => return auth::run(command, json),
        Command::Get { uri, server, out, token, tls_root_certs, tls_client_cert, tls_client_key, parallelism } => {
            let tls = get::TlsFiles {
                root_certs: tls_root_certs.as_deref(),
                client_cert: tls_client_cert.as_deref(),
                client_key: tls_client_key.as_deref(),
            };
            return match get::get(server, token.clone(), &tls, uri, out, *parallelism).await {
                Ok(report) => {
                    emit(json, &report, || format!("{} rows of {} -> {}", report.rows, report.pinned_uri, report.out));
                    Ok(codes::OK)
                }
                Err((code, message)) => {
                    if json {
                        eprintln!("{}", json!({"error": {"code": code, "message": message}}));
                    } else {
                        eprintln!("sheaf: error: {message}");
                    }
                    Ok(code)
                }
            };
        }
        _ => {}
    }
    let registry = Registry::open(&cli.registry.unwrap_or_else(default_registry))?;
    let progress = Bar::new(json);
    match cli.command {
        Command::Push { package, dir, message, meta } => {
            let package: PackageName = package.parse()?;
            let user_meta = match meta {
                None => None,
                Some(text) => match sheaf::manifest::json::parse_like_python(&text) {
                    Ok(Value::Object(m)) => Some(m),
                    Ok(_) => return Err(Error::Invalid(format!("--meta must be a JSON object, got {text}"))),
                    Err(e) => return Err(Error::Invalid(format!("--meta is not valid JSON: {e}"))),
                },
            };
            let report = registry.push(&package, &dir, &PushOptions { message, user_meta }, &progress).await?;
            emit(json, &report, || {
                if report.unchanged {
                    format!("{}: unchanged, {} is already latest; nothing uploaded", report.package, report.top_hash)
                } else {
                    eprintln!(
                        "pushed {} files ({}); uploaded {} new blobs ({})",
                        report.files,
                        human_bytes(report.bytes),
                        report.uploaded_files,
                        human_bytes(report.uploaded_bytes)
                    );
                    report.top_hash.clone()
                }
            });
        }
        Command::List => {
            let packages = registry.list_packages().await?;
            emit(json, &packages, || {
                packages
                    .iter()
                    .map(|p| format!("{:<40} {}", p.name, p.latest.as_deref().map(short).unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Log { package } => {
            let package: PackageName = package.parse()?;
            let revisions = registry.revisions(&package).await?;
            emit(json, &revisions, || {
                revisions
                    .iter()
                    .map(|r| {
                        let tags = if r.tags.is_empty() { String::new() } else { format!(" ({})", r.tags.join(", ")) };
                        format!("{}  {}{}  {}", r.top_hash, when(r.timestamp), tags, r.message.as_deref().unwrap_or(""))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Browse { reference, prefix } => {
            let r: PackageRef = reference.parse()?;
            let prefix = prefix.or(r.subpath.clone()).unwrap_or_default();
            // Streamed: only the entries under the prefix are kept.
            let manifest = registry.load_under(&r, &prefix).await?;
            let top_hash = manifest.top_hash.clone();
            let entries: Vec<Value> = manifest
                .entries
                .iter()
                .map(|e| json!({"logical_key": e.logical_key, "size": e.size, "hash": e.hash, "meta": e.meta, "physical_keys": e.physical_keys}))
                .collect();
            let out = json!({"top_hash": top_hash, "message": manifest.message(), "user_meta": manifest.user_meta(), "entries": entries});
            emit(json, &out, || {
                let mut lines = vec![format!("{} {}", r.package, top_hash)];
                if let Some(m) = manifest.message() {
                    lines.push(format!("message: {m}"));
                }
                if let Some(m) = manifest.user_meta() {
                    lines.push(format!("meta: {m}"));
                }
                for e in &manifest.entries {
                    let meta = match &e.meta {
                        Value::Object(m) if m.is_empty() => String::new(),
                        Value::Null => String::new(),
                        m => format!("  {m}"),
                    };
                    lines.push(format!("{:>12}  {}  {}{}", e.size, e.hash, e.logical_key, meta));
                }
                lines.join("\n")
            });
        }
        Command::Install { reference, dest } => {
            let r: PackageRef = reference.parse()?;
            let report = registry.install(&r, &dest, &progress).await?;
            emit(json, &report, || {
                format!(
                    "installed {}@{} into {}: {} files ({}), downloaded {} ({}), {} already present",
                    r.package,
                    short(&report.top_hash),
                    dest.display(),
                    report.files,
                    human_bytes(report.bytes),
                    report.downloaded_files,
                    human_bytes(report.downloaded_bytes),
                    report.skipped_files
                )
            });
        }
        Command::Verify { reference, dir, extra_files_ok } => {
            let r: PackageRef = reference.parse()?;
            let report = registry.verify(&r, &dir, extra_files_ok, &progress).await?;
            emit(json, &report, || {
                let mut lines = Vec::new();
                lines.extend(report.missing.iter().map(|k| format!("missing   {k}")));
                lines.extend(report.modified.iter().map(|k| format!("modified  {k}")));
                lines.extend(report.extra.iter().map(|k| format!("extra     {k}")));
                lines.extend(report.unverifiable.iter().map(|k| format!("unverifiable hash type (size checked) {k}")));
                lines.push(format!(
                    "{}: {} against {}@{} ({} files checked)",
                    dir.display(),
                    if report.ok { "OK" } else { "FAILED" },
                    r.package,
                    short(&report.top_hash),
                    report.checked
                ));
                lines.join("\n")
            });
            if !report.ok {
                return Ok(codes::INTEGRITY);
            }
        }
        Command::Diff { from, to } => {
            let (a, b): (PackageRef, PackageRef) = (from.parse()?, to.parse()?);
            let diff = registry.diff(&a, &b).await?;
            emit(json, &diff, || {
                let mut lines = vec![format!("{} -> {}", short(&diff.from), short(&diff.to))];
                if diff.header_changed {
                    lines.push("~ header (message or metadata)".into());
                }
                lines.extend(diff.added.iter().map(|k| format!("+ {k}")));
                lines.extend(diff.removed.iter().map(|k| format!("- {k}")));
                lines.extend(diff.modified.iter().map(|k| format!("M {k}")));
                lines.join("\n")
            });
        }
        Command::Tag { reference, tag, force } => {
            let r: PackageRef = reference.parse()?;
            let top_hash = registry.resolve(&r.package, &r.revision).await?;
            registry.tag(&r.package, &top_hash, &tag, force).await?;
            emit(json, &json!({"package": r.package.to_string(), "tag": tag, "top_hash": top_hash}), || {
                format!("{}:{tag} -> {top_hash}", r.package)
            });
        }
        Command::Delete { reference } => {
            let r: PackageRef = reference.parse()?;
            if matches!(r.revision, Revision::Tag(_)) || r.subpath.is_some() {
                return Err(Error::Invalid(format!("delete takes OWNER/NAME or OWNER/NAME@HASH, not {reference}")));
            }
            let top_hash = match &r.revision {
                Revision::Hash(_) => Some(registry.resolve(&r.package, &r.revision).await?),
                _ => None,
            };
            let report = registry.delete(&r.package, top_hash.as_deref()).await?;
            emit(json, &report, || {
                format!(
                    "removed {} pointers of {}{}; latest is now {} (manifests and data are kept)",
                    report.removed_pointers,
                    r.package,
                    top_hash.as_deref().map(|h| format!("@{}", short(h))).unwrap_or_default(),
                    report.latest.as_deref().unwrap_or("gone")
                )
            });
        }
        Command::Gc { delete, older_than, unreferenced } => {
            return gc::run(&registry, sheaf::registry::GcOptions { older_than, unreferenced, delete }, json).await;
        }
        Command::Demo => {
            let report = push_demo(&registry, &progress).await?;
            emit(json, &report, || {
                format!(
                    "{} is in {} at {}\ntry: sheaf browse {}   or   sheaf install {} --dest ./weather",
                    report.package,
                    registry.url(),
                    report.top_hash,
                    report.package,
                    report.package
                )
            });
        }
        Command::Serve {
            listen,
            advertise,
            allow,
            demo,
            max_concurrent_requests,
            cache_mib,
            max_concurrent_scans,
            max_open_scans,
            stall_timeout,
            query_timeout,
            shutdown_grace,
            log_json,
            auth,
            tls_cert,
            tls_key,
            tls_client_ca,
            insecure_anonymous,
        } => {
            init_logging(log_json);
            if demo {
                let report = push_demo(&registry, &sheaf::progress::NoProgress).await?;
                tracing::info!(package = %report.package, top_hash = %report.top_hash, "demo package ready");
            }
            let policy = ReadPolicy::allow_list(&allow)?;
            let url = registry.url().to_string();
            let redact = storage_locations(&url, &allow);
            let engine = std::sync::Arc::new(Engine::new(registry.with_policy(policy)));
            let (incoming, bound) =
                flight::bind(listen).map_err(|e| Error::Invalid(format!("cannot listen on {listen}: {e}")))?;
            let authenticator = match &auth {
                Some(path) => flight::auth::Authenticator::load(path.clone()).map_err(Error::Invalid)?,
                None if listen.ip().is_loopback() || insecure_anonymous => {
                    if !listen.ip().is_loopback() {
                        tracing::warn!(listen = %listen, "serving without --auth on a non-loopback address: anyone who can reach it reads and writes every package");
                    }
                    flight::auth::Authenticator::open()
                }
                None => {
                    return Err(Error::Invalid(format!(
                        "refusing to serve {listen} without --auth: anyone who could reach it would read and write every package;                          give --auth FILE, listen on loopback, or pass --insecure-anonymous"
                    )));
                }
            };
            let read = |p: &std::path::PathBuf| std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e));
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(flight::TlsOptions {
                    cert: read(cert)?,
                    key: read(key)?,
                    client_ca: tls_client_ca.as_ref().map(read).transpose()?,
                }),
                _ => None,
            };
            if auth.is_some() && tls.is_none() && !listen.ip().is_loopback() {
                tracing::warn!(listen = %listen, "passwords and tokens travel in plaintext: give --tls-cert and --tls-key");
            }
            let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
            let options = flight::ServeOptions {
                listen,
                advertise,
                max_concurrent_requests,
                cache_bytes: cache_mib << 20,
                max_concurrent_scans,
                max_open_scans,
                stream_limits: flight::pipeline::StreamLimits { stall_timeout, time_budget: query_timeout },
                shutdown_grace,
                redact,
                auth: std::sync::Arc::new(authenticator),
                tls,
                ..Default::default()
            };
            // Scripts and tests read this line to learn the port.
            emit(json, &json!({"listening": format!("{scheme}://{bound}"), "registry": url}), || {
                format!("sheaf: serving {url} on {scheme}://{bound}")
            });
            tracing::info!(listen = %bound, registry = %url, "serving");
            flight::serve(engine, incoming, &options, flight::shutdown_signal())
                .await
                .map_err(|e| Error::Invalid(format!("server failed: {e}")))?;
        }
        Command::Hash { .. } | Command::Get { .. } | Command::Auth { .. } => unreachable!("handled above"),
    }
    Ok(codes::OK)
}

/// Every spelling of the server's storage locations (as URLs, paths and
/// real paths), which messages to clients must not reveal.
fn storage_locations(registry_url: &str, allow: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for spec in std::iter::once(registry_url.to_owned()).chain(allow.iter().cloned()) {
        let Ok(location) = sheaf::registry::Location::parse(&spec) else { continue };
        out.push(location.url.to_string());
        if let Some(root) = &location.local_root {
            out.push(root.display().to_string().trim_end_matches('/').to_owned());
            if let Ok(real) = std::fs::canonicalize(root) {
                out.push(real.display().to_string());
                if let Ok(u) = url::Url::from_file_path(&real) {
                    out.push(u.to_string());
                }
            }
        }
    }
    out
}

/// Pushes the demo package (files written to a temporary folder).
async fn push_demo(
    registry: &Registry,
    progress: &dyn sheaf::progress::Progress,
) -> Result<sheaf::registry::PushReport, Error> {
    let dir = std::env::temp_dir().join(format!("sheaf-demo-{}", std::process::id()));
    sheaf::demo::write_demo_files(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let package: PackageName = sheaf::demo::DEMO_PACKAGE.parse()?;
    let opts = PushOptions { message: Some("Sheaf demo data".into()), user_meta: None };
    let pushed = registry.push(&package, &dir, &opts, progress).await;
    let _ = std::fs::remove_dir_all(&dir);
    pushed
}

/// Structured logs on stderr; level from RUST_LOG (default info).
fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

async fn hash_files(files: &[PathBuf], json: bool) -> Result<u8, Error> {
    let files = files.to_vec();
    let hashed = tokio::task::spawn_blocking(move || {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|f| {
                hash::hash_file_chunked(f)
                    .map(|(size, h)| (f.display().to_string(), size, h))
                    .map_err(|e| Error::io(f.display().to_string(), e))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .expect("hash task panicked")?;
    let out: Vec<Value> = hashed.iter().map(|(p, s, h)| json!({"path": p, "size": s, "hash": h})).collect();
    emit(json, &out, || hashed.iter().map(|(p, _, h)| format!("{}  {p}", h.value)).collect::<Vec<_>>().join("\n"));
    Ok(codes::OK)
}
