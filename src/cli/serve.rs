//! `sheaf serve`: the registry over Arrow Flight. Split in two: [`prepare`]
//! checks the flags, reads the files they name and binds the port, so every
//! mistake is reported before the "listening" line; [`Server::run`] serves.

use super::Report;
use super::args::ServeArgs;
use serde::Serialize;
use sheaf::flight::replicas::{Placement, ReplicaOptions};
use sheaf::flight::{self, ServeOptions, TlsOptions, auth::Authenticator};
use sheaf::metrics::otlp::Exporter;
use sheaf::query::Engine;
use sheaf::{Error, ReadPolicy, Registry, Result};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::transport::server::TcpIncoming;

/// Where the server listens. Scripts and tests read this line to learn the
/// port (`--listen 127.0.0.1:0` picks a free one).
#[derive(Serialize)]
pub struct Listening {
    /// `grpc://host:port` or `grpc+tls://host:port`, as clients connect.
    listening: String,
    /// The registry served, as a URL.
    registry: String,
}

impl fmt::Display for Listening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sheaf: serving {} on {}", self.registry, self.listening)
    }
}

impl Report for Listening {}

/// A server ready to run: port bound, options built.
pub struct Server {
    engine: Arc<Engine>,
    shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    traces: Option<Exporter>,
    incoming: TcpIncoming,
    bound: SocketAddr,
    options: ServeOptions,
    listening: Listening,
}

/// Checks the flags of `args` and binds the port; the order of the checks
/// decides which mistake is reported first.
pub async fn prepare(registry: Registry, args: &ServeArgs) -> Result<Server> {
    let traces = match &args.otlp_endpoint {
        Some(endpoint) => {
            let instance = args.advertise.first().cloned().unwrap_or_else(|| args.listen.to_string());
            Some(
                Exporter::start(endpoint, &instance)
                    .map_err(|e| Error::Invalid(sheaf::registry::hide_credentials(&e.to_string()).into_owned()))?,
            )
        }
        None => None,
    };
    init_logging(args.log_json, traces.as_ref());
    if let Some(endpoint) = &args.otlp_endpoint {
        let endpoint = sheaf::registry::hide_credentials(endpoint);
        tracing::info!(otlp_endpoint = %endpoint, "exporting a trace span per RPC over OTLP/gRPC");
    }
    if args.demo {
        let report = super::demo::push(&registry, &sheaf::progress::NoProgress).await?;
        tracing::info!(package = %report.package, top_hash = %report.top_hash, "demo package ready");
    }
    let policy = ReadPolicy::allow_list(&args.allow)?;
    let url = registry.url().to_string();
    let redact = storage_locations(&url, &args.allow);
    // Callers with grants name only a package's own revisions.
    let engine = Arc::new(Engine::new(registry.with_policy(policy).with_own_revisions(args.auth.is_some())));
    let listen = args.listen;
    let (incoming, bound) =
        flight::bind(listen).map_err(|e| Error::Invalid(format!("cannot listen on {listen}: {e}")))?;
    let authenticator = authenticator(args)?;
    let tls = tls(args)?;
    if args.auth.is_some() && tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(listen = %listen, "passwords and tokens travel in plaintext: give --tls-cert and --tls-key");
    }
    let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| Error::Invalid(format!("--metrics-listen: cannot listen on {addr}: {e}")))?;
            tracing::info!(metrics = %listener.local_addr().unwrap_or(addr), "metrics, /healthz and /readyz over HTTP");
            Some(Arc::new(listener))
        }
        None => None,
    };
    let options = ServeOptions {
        listen,
        replicas: replicas(args, tls.as_ref())?,
        metrics,
        drain_delay: args.drain_delay,
        max_concurrent_requests: args.max_concurrent_requests,
        cache_bytes: args.cache_mib << 20,
        cache_min_reads: args.cache_min_reads,
        max_concurrent_scans: args.max_concurrent_scans,
        max_open_scans: args.max_open_scans,
        stream_limits: flight::pipeline::StreamLimits {
            stall_timeout: args.stall_timeout,
            time_budget: args.query_timeout,
        },
        shutdown_grace: args.shutdown_grace,
        redact,
        auth: Arc::new(authenticator),
        tls,
        sql: sheaf::sql::SqlLimits {
            memory_bytes: args.sql_memory_mib << 20,
            timeout: args.sql_timeout,
            max_queries: args.sql_max_queries,
        },
        ..Default::default()
    };
    let listening = Listening { listening: format!("{scheme}://{bound}"), registry: url };
    let shutdown = Box::pin(flight::shutdown_signal());
    Ok(Server { engine, shutdown, traces, incoming, bound, options, listening })
}

impl Server {
    /// The line to print once the port is bound.
    pub fn report(&self) -> &Listening {
        &self.listening
    }

    /// Serves until SIGTERM or Ctrl-C (then lets running requests finish,
    /// up to `--shutdown-grace`).
    pub async fn run(self) -> Result<u8> {
        tracing::info!(listen = %self.bound, registry = %self.listening.registry, "serving");
        let served = flight::serve(self.engine, self.incoming, &self.options, self.shutdown).await;
        if let Some(traces) = self.traces {
            traces.shutdown(std::time::Duration::from_secs(5)).await;
        }
        served.map_err(|e| Error::Invalid(format!("server failed: {e}")))?;
        Ok(super::codes::OK)
    }
}

/// Who may call: the `--auth` file, or anyone on loopback. Anyone on a
/// network address only when asked for in so many words.
fn authenticator(args: &ServeArgs) -> Result<Authenticator> {
    let listen = args.listen;
    match &args.auth {
        Some(path) => {
            warn_if_others_read(path, "the auth file (it may hold the server key and password hashes)");
            Authenticator::load(path.clone()).map_err(Error::Invalid)
        }
        None if listen.ip().is_loopback() || args.insecure_anonymous => {
            if !listen.ip().is_loopback() {
                tracing::warn!(listen = %listen, "serving without --auth on a non-loopback address: anyone who can reach it reads and writes every package");
            }
            Ok(Authenticator::open())
        }
        None => Err(Error::Invalid(format!(
            "refusing to serve {listen} without --auth: anyone who could reach it would read and write every package; give --auth FILE, listen on loopback, or pass --insecure-anonymous"
        ))),
    }
}

/// Who the replicas are, from `--advertise`, `--peer`, `--peer-dns` and
/// `--placement`; every address is checked now.
fn replicas(args: &ServeArgs, tls: Option<&TlsOptions>) -> Result<ReplicaOptions> {
    // Each address once, in one spelling (`grpc://h:1/` and `grpc://H:1`
    // are one replica, which endpoints must not list twice).
    let addresses = |given: &[String]| -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for url in given {
            let address = replica_address(url)?;
            if !out.contains(&address) {
                out.push(address);
            }
        }
        Ok(out)
    };
    let advertise = addresses(&args.advertise)?;
    let peers = addresses(&args.peer)?;
    if let Some(name) = &args.peer_dns
        && name.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(Error::Invalid(format!("--peer-dns {name:?}: give HOST:PORT, e.g. sheaf-headless:50051")));
    }
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e));
    Ok(ReplicaOptions {
        advertise,
        peers,
        peer_dns: args.peer_dns.clone(),
        placement: match args.placement.as_str() {
            "round-robin" => Placement::RoundRobin,
            _ => Placement::Rendezvous,
        },
        peer_ca: args.peer_ca.as_ref().map(read).transpose()?,
        identity: tls.filter(|t| t.client_ca.is_some()).map(|t| (t.cert.clone(), t.key.clone())),
        tls: tls.is_some(),
        // Set by the server from the registry it serves.
        registry_service: None,
    })
}

/// A replica address in its one spelling, `SCHEME://host:port`; anything
/// else (a path, a query, user info, no port) is refused naming it.
fn replica_address(text: &str) -> Result<String> {
    let bad = || {
        Error::Invalid(format!(
            "{text:?} is not a replica address: give grpc://HOST:PORT or grpc+tls://HOST:PORT (nothing after the port)"
        ))
    };
    let url = url::Url::parse(text).map_err(|_| bad())?;
    let plain = url.path().is_empty() || url.path() == "/";
    if !matches!(url.scheme(), "grpc" | "grpc+tcp" | "grpc+tls")
        || !plain
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) if !host.is_empty() => Ok(format!("{}://{host}:{port}", url.scheme())),
        _ => Err(bad()),
    }
}

/// The TLS files, read now so that a missing one stops the start.
fn tls(args: &ServeArgs) -> Result<Option<TlsOptions>> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e));
    Ok(match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsOptions {
            key: {
                warn_if_others_read(key, "the TLS private key");
                read(key)?
            },
            cert: read(cert)?,
            client_ca: args.tls_client_ca.as_ref().map(read).transpose()?,
        }),
        _ => None,
    })
}

/// Elsewhere file modes say nothing of who may read a file.
#[cfg(not(unix))]
fn warn_if_others_read(_path: &std::path::Path, _what: &str) {}

/// Logs a warning when `path` (a file holding a secret) may be read by its
/// group or by others (the server still starts).
#[cfg(unix)]
fn warn_if_others_read(path: &std::path::Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "{what} may be read by its group or others; make it readable by the server's user only (chmod 600)"
        );
    }
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

/// Structured logs on stderr, level from RUST_LOG (default info); with
/// `traces`, Sheaf's own spans (at info and above, whatever RUST_LOG says)
/// also go to the OpenTelemetry collector.
fn init_logging(json: bool, traces: Option<&Exporter>) {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // The OpenTelemetry SDK's own log: its warnings and errors (a failed export).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry-otlp=warn".into());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    let otel = traces.map(|t| {
        t.layer().with_filter(tracing_subscriber::filter::Targets::new().with_target("sheaf", tracing::Level::INFO))
    });
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).try_init();
    // A panic (a request's is caught by the hygiene layer and answered
    // INTERNAL) is logged as one event in the log's own format, not as raw
    // lines on stderr; its message is escaped (it may quote client input),
    // and a backtrace is added only when RUST_BACKTRACE asks for one.
    std::panic::set_hook(Box::new(|info| {
        let panic = sheaf::query::panic_message(info.payload());
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                tracing::error!(?panic, %location, %backtrace, "panicked")
            }
            _ => tracing::error!(?panic, %location, "panicked"),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_addresses_have_one_spelling() {
        assert_eq!(replica_address("grpc://h:1").unwrap(), "grpc://h:1");
        assert_eq!(replica_address("grpc://h:1/").unwrap(), "grpc://h:1");
        assert_eq!(replica_address("grpc+tls://[::1]:50051").unwrap(), "grpc+tls://[::1]:50051");
        for bad in ["grpc://h", "grpc://h:1/x", "grpc://h:1?q", "grpc://u:p@h:1", "http://h:1", "h:1", ""] {
            assert!(replica_address(bad).is_err(), "{bad}");
        }
    }
}
