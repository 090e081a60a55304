//! The Arrow Flight server: `sheaf serve`.
//!
//! Cross-cutting concerns are tower layers around the service, not code in
//! the handlers, outermost first: the audit line of every call ([`audit`]),
//! response hygiene ([`hygiene`]), authentication ([`auth`]), load shedding
//! under a global concurrency limit; then a request timeout (until the
//! response starts; streams are not cut) and gRPC health.
//! Errors become gRPC status codes in one place ([`status`]).
//!
//! Modules: [`service`](SheafFlight) (the RPCs), [`sql`] (Flight SQL),
//! `actions` (DoAction),
//! `put` (DoPut), [`cache`] (encoded DoGet streams for repeated reads),
//! [`grpc`] (DoGet framed without tonic's codec copy, in front of the
//! generated service).

pub mod actions;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod descriptor;
pub mod doget;
pub mod encode;
pub mod grpc;
pub mod hygiene;
mod ingest;
pub mod linger;
pub mod ops;
pub mod pipeline;
mod put;
pub mod replicas;
mod service;
pub mod sql;
pub mod status;
mod write;

pub use service::SheafFlight;

use crate::query::Engine;
use arrow_flight::flight_service_server::FlightServiceServer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The replicas endpoints name ([`replicas`]); none means "this server".
    pub replicas: replicas::ReplicaOptions,
    /// The operators' HTTP endpoint (`/metrics`, `/healthz`, `/readyz`),
    /// bound already.
    pub metrics: Option<Arc<std::net::TcpListener>>,
    /// Requests handled at once; more are refused with UNAVAILABLE.
    pub max_concurrent_requests: usize,
    /// Time allowed until a response starts.
    pub request_timeout: Duration,
    /// Memory for encoded DoGet streams answered again from memory (0: off).
    pub cache_bytes: u64,
    /// The read of a ticket from which on its stream is kept (1: the first).
    pub cache_min_reads: u32,
    /// DoGet streams producing batches from storage at once; more wait for
    /// a turn. A stream holds a permit only while it produces a batch, not
    /// while it waits for its client (cached reads do not count).
    pub max_concurrent_scans: usize,
    /// DoGet streams reading storage that may be open at once, producing or
    /// waiting for their client; more wait for a turn. Each holds a
    /// decoder's state and a few batches, so this bounds the memory of
    /// uncached reads (at least `max_concurrent_scans`).
    pub max_open_scans: usize,
    /// Limits of each DoGet stream: how long it waits for a client that
    /// takes nothing, and the time it may spend producing batches.
    pub stream_limits: pipeline::StreamLimits,
    /// After a shutdown signal, how long the server reports not ready but
    /// still accepts requests, before it stops accepting.
    pub drain_delay: Duration,
    /// After the drain delay, how long running requests may take to finish
    /// before the server stops anyway.
    pub shutdown_grace: Duration,
    /// Storage locations (URLs and paths) never shown to clients in
    /// messages: the registry root and the allowed locations.
    pub redact: Vec<String>,
    /// Who may do what ([`auth::Authenticator::open`]: anyone, anything).
    pub auth: Arc<auth::Authenticator>,
    /// TLS, when the server has a certificate.
    pub tls: Option<TlsOptions>,
    /// Limits of Flight SQL queries.
    pub sql: crate::sql::SqlLimits,
}

/// The server's TLS certificate and key (PEM), and optionally the CA whose
/// client certificates it requires (mutual TLS).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Certificate chain, PEM.
    pub cert: Vec<u8>,
    /// Private key, PEM.
    pub key: Vec<u8>,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca: Option<Vec<u8>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: ([127, 0, 0, 1], 50051).into(),
            replicas: replicas::ReplicaOptions::default(),
            metrics: None,
            max_concurrent_requests: 256,
            request_timeout: Duration::from_secs(60),
            cache_bytes: 1 << 30,
            cache_min_reads: 2,
            max_concurrent_scans: 8,
            max_open_scans: 16,
            stream_limits: pipeline::StreamLimits::default(),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(30),
            redact: Vec::new(),
            auth: Arc::new(auth::Authenticator::open()),
            tls: None,
            sql: crate::sql::SqlLimits::default(),
        }
    }
}

/// Largest message accepted from clients (DoPut batches).
const MAX_DECODING_MESSAGE: usize = 256 * 1024 * 1024;

/// Binds the listening socket; returns it with the address actually bound.
pub fn bind(addr: SocketAddr) -> std::io::Result<(TcpIncoming, SocketAddr)> {
    let incoming = TcpIncoming::bind(addr)?.with_nodelay(Some(true));
    let local = incoming.local_addr()?;
    Ok((incoming, local))
}

/// Serves `engine` on `incoming` until `shutdown` completes, then drains:
/// reports not ready (gRPC health, `/readyz`, and to the other replicas) at
/// once, keeps accepting for `options.drain_delay`, then stops accepting and
/// lets running requests finish, and their clients read what was sent
/// ([`linger`]), for at most `options.shutdown_grace`.
pub async fn serve(
    engine: Arc<Engine>,
    incoming: TcpIncoming,
    options: &ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let readiness = Arc::new(ops::Readiness::default());
    let registry_service = replicas::registry_service(engine.registry().url().as_str());
    publish(&readiness, &health, &registry_service).await;
    let mut replica_options = options.replicas.clone();
    replica_options.registry_service = Some(registry_service.clone());
    let replicas = Arc::new(replicas::Replicas::new(replica_options));
    let mut tasks = vec![
        tokio::spawn(trim_when_idle()),
        tokio::spawn(reload_on_hangup(options.auth.clone())),
        tokio::spawn(options.auth.clone().watch(AUTH_FILE_POLL)),
        tokio::spawn(replicas.clone().watch()),
        tokio::spawn(until_registry_answers(
            engine.clone(),
            readiness.clone(),
            health.clone(),
            registry_service.clone(),
        )),
    ];
    if let Some(listener) = &options.metrics {
        let listener = listener.try_clone().and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        });
        match listener {
            Ok(listener) => tasks.push(tokio::spawn(ops::serve(listener, readiness.clone()))),
            Err(e) => tracing::error!(error = %e, "the metrics endpoint cannot listen"),
        }
    }
    let cache = cache::StreamCache::new(options.cache_bytes, options.cache_min_reads);
    let gates = pipeline::Gates::new(options.max_concurrent_scans, options.max_open_scans);
    let sql = Arc::new(crate::sql::SqlEngine::new(engine.clone(), options.sql));
    let flight = SheafFlight::new(engine, replicas.clone(), cache, gates, options.stream_limits)
        .with_auth(options.auth.clone())
        .with_sql(sql::SqlFlight::new(sql, options.auth.clone()));
    let flight = Arc::new(flight);
    let flight = grpc::FlightRoutes::new(flight, |generated| {
        generated.max_decoding_message_size(MAX_DECODING_MESSAGE).max_encoding_message_size(usize::MAX)
    });
    let audit = audit::AuditLayer::default();
    let layers = tower::ServiceBuilder::new()
        .layer(audit.clone())
        .layer(hygiene::HygieneLayer::new(options.redact.clone()))
        .layer(auth::AuthLayer::new(options.auth.clone()))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(options.max_concurrent_requests));
    let signalled = Arc::new(tokio::sync::Notify::new());
    let notify = signalled.clone();
    let drain_delay = options.drain_delay;
    let shutdown = async move {
        shutdown.await;
        readiness.drain();
        replicas.drain();
        publish(&readiness, &health, &registry_service).await;
        tracing::info!(
            drain_delay_s = drain_delay.as_secs_f64(),
            "draining: not ready; accepting until the drain delay ends"
        );
        tokio::time::sleep(drain_delay).await;
        notify.notify_one();
    };
    let grace = options.shutdown_grace;
    let lingering = linger::Lingering::new(grace);
    let incoming = {
        let lingering = lingering.clone();
        tokio_stream::StreamExt::map(incoming, move |accepted| accepted.map(|io| lingering.wrap(io)))
    };
    let mut builder = Server::builder();
    if let Some(tls) = &options.tls {
        let mut config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key));
        if let Some(ca) = &tls.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        builder = builder.tls_config(config)?;
    }
    let server = builder
        .timeout(options.request_timeout)
        .initial_stream_window_size(Some(2 * 1024 * 1024))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .layer(layers)
        .add_service(health_service)
        .add_service(flight)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let grace_over = async {
        signalled.notified().await;
        tokio::time::sleep(grace).await;
        // Before the server, and with it every running call, is dropped.
        audit.cut_at_shutdown();
    };
    tokio::pin!(grace_over);
    let result = tokio::select! {
        result = server => {
            // The connections are closed; their clients may still be reading
            // what was sent. Exit when they are done, within the same grace.
            tokio::select! {
                _ = lingering.settled() => {}
                _ = &mut grace_over => tracing::warn!("clients still reading at the end of the shutdown grace period"),
            }
            result
        }
        _ = &mut grace_over => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "requests still running after the shutdown grace period; stopping anyway");
            Ok(())
        }
    };
    for task in tasks {
        task.abort();
    }
    result
}

/// How often a ready server checks that its registry's storage still answers.
const REGISTRY_WATCH: Duration = Duration::from_secs(5);

/// Tries the registry's storage every second until it answers, then reports
/// the Flight service ready (unless it already drains); then checks it every
/// [`REGISTRY_WATCH`], reporting not ready while it does not answer (a local
/// registry's folder deleted or unmounted), ready again once it does.
async fn until_registry_answers(
    engine: Arc<Engine>,
    readiness: Arc<ops::Readiness>,
    health: tonic_health::server::HealthReporter,
    registry_service: String,
) {
    let mut warned = false;
    loop {
        match engine.registry().reachable().await {
            Ok(()) => break,
            Err(e) if !warned => {
                tracing::warn!(error = %e, "the registry's storage does not answer; not ready until it does");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    readiness.registry_reachable();
    publish(&readiness, &health, &registry_service).await;
    let mut answering = true;
    loop {
        tokio::time::sleep(REGISTRY_WATCH).await;
        let now = engine.registry().reachable().await;
        match (&now, answering) {
            (Err(e), true) => {
                tracing::error!(error = %e, "the registry's storage stopped answering; not ready until it does");
                readiness.registry_lost();
            }
            (Ok(()), false) => {
                tracing::info!("the registry's storage answers again; ready");
                readiness.registry_reachable();
            }
            _ => continue,
        }
        answering = now.is_ok();
        publish(&readiness, &health, &registry_service).await;
    }
}

/// Tells the gRPC health service what `/readyz` says: the FlightService, and
/// `registry_service` (the registry it serves, [`replicas::registry_service`],
/// which peers check), are SERVING only when ready (the overall service `""`
/// stays SERVING while the process lives).
async fn publish(readiness: &ops::Readiness, health: &tonic_health::server::HealthReporter, registry_service: &str) {
    let status = match readiness.check() {
        Ok(()) => {
            health.set_serving::<FlightServiceServer<SheafFlight>>().await;
            ServingStatus::Serving
        }
        Err(_) => {
            health.set_not_serving::<FlightServiceServer<SheafFlight>>().await;
            ServingStatus::NotServing
        }
    };
    health.set_service_status(registry_service, status).await;
}

/// How often the auth file (and the files it names) are checked for changes.
const AUTH_FILE_POLL: Duration = Duration::from_secs(2);

/// Re-reads the auth file on SIGHUP; running streams keep going, new
/// requests see the new file. A file with errors is refused (logged) and the
/// running configuration stays.
async fn reload_on_hangup(auth: Arc<auth::Authenticator>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    while hangups.recv().await.is_some() {
        match auth.reload() {
            Ok(()) => tracing::info!("auth file reloaded"),
            Err(e) => tracing::error!(error = %e, "auth file not reloaded; the running configuration stays"),
        }
    }
}

/// Gives freed memory back to the OS once the server has been quiet for a
/// moment. The allocator tuning ([`tune_allocator`]) keeps freed memory for
/// reuse while reads run, which is what makes them fast; without this, the
/// peak of a burst would stay the process's size for good. Trimming only
/// when nothing was read for two seconds costs reads nothing.
async fn trim_when_idle() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut last = crate::metrics::BYTES_SENT.get();
        let mut trimmed = true;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = crate::metrics::BYTES_SENT.get();
            if now != last {
                (last, trimmed) = (now, false);
            } else if !trimmed {
                // SAFETY: malloc_trim only returns free memory to the OS.
                tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) });
                trimmed = true;
            }
        }
    }
}

/// Tunes glibc's allocator for a server that allocates and frees large
/// Arrow buffers all the time: without it every read pays ~100k page faults
/// and the trimming of freed memory (measured: about half of DoGet's CPU).
/// Large buffers stay in the heap (mmap threshold 32 MiB) and freed memory
/// is not returned to the OS after every read (trim threshold 4 GiB).
/// Call once at start-up, before threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    // Registered now, not when first polled: a SIGTERM that arrives right
    // after the "serving" line must start a drain, not kill the process.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let term = async {
            match term.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => futures::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
        tracing::info!("shutting down: finishing running requests");
    }
}
