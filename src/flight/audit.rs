//! The audit log, a tower layer around every route: one structured line per
//! RPC, on the `audit` tracing target, when its response ends:
//!
//! ```text
//! INFO audit: principal="user:alice" rpc="DoGet" package="team/sales" top_hash="1f0e…"
//!     table="data/orders.parquet" outcome="OK" bytes=1048576 ms=12 peer="10.0.0.7"
//! ```
//!
//! `principal` is set by the auth layer (`unauthenticated` when it refused
//! the call, the claimed `user:NAME` for a failed login); `package`,
//! `top_hash` and `table` by the handlers through the [`AuditNote`] in the
//! request's extensions. `outcome` is the gRPC status code, or `CANCELLED`
//! when the client went away before the end; `bytes` counts the response
//! body; `request_id` is the caller's `x-request-id` or a fresh one, also
//! returned in the response headers and carried by every log line of the
//! call (a tracing span). Secrets never reach it: it carries names, never
//! credentials.
//!
//! The same record feeds the Prometheus request metrics: a count, a latency
//! histogram and response bytes per RPC and status code
//! ([`crate::metrics::prometheus::observe_request`]), and, when traces are
//! exported, the attributes of the call's span ([`crate::metrics::otlp`]).

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument;

/// What the auth layer and the handlers tell the audit line about a call.
/// Cheap to clone; every clone writes to the same record.
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Arc<Mutex<Fields>>);

#[derive(Debug, Default, Clone)]
struct Fields {
    principal: Option<String>,
    package: Option<String>,
    top_hash: Option<String>,
    table: Option<String>,
}

impl AuditNote {
    /// The note of a request (a fresh one, written nowhere, when the audit
    /// layer is not in front of it, as in tests).
    pub fn of(extensions: &http::Extensions) -> AuditNote {
        extensions.get::<AuditNote>().cloned().unwrap_or_default()
    }

    /// Records who called (a label such as `user:alice`).
    pub fn principal(&self, label: &str) {
        self.fields().principal = Some(crate::query::limits::clip(label, 200).into_owned());
    }

    /// Records the package, revision and table a call is about.
    pub fn target(&self, package: &str, top_hash: Option<&str>, table: Option<&str>) {
        let clip = |s: &str| crate::query::limits::clip(s, 400).into_owned();
        let mut fields = self.fields();
        fields.package = Some(clip(package));
        if let Some(h) = top_hash {
            fields.top_hash = Some(clip(h));
        }
        if let Some(t) = table {
            fields.table = Some(clip(t));
        }
    }

    /// The package, revision and table recorded so far, for error details.
    pub fn subject(&self) -> super::status::Subject {
        let fields = self.fields();
        super::status::Subject {
            package: fields.package.clone(),
            top_hash: fields.top_hash.clone(),
            path: fields.table.clone(),
        }
    }

    fn fields(&self) -> std::sync::MutexGuard<'_, Fields> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The layer.
#[derive(Clone, Default)]
pub struct AuditLayer {
    cut: Arc<AtomicBool>,
}

impl AuditLayer {
    /// Records that the server's shutdown grace period ended with calls
    /// still running: from then on a call that ends without its status was
    /// cut by the server (UNAVAILABLE), not left by its client (CANCELLED).
    pub fn cut_at_shutdown(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Audit<S> {
        Audit { inner, cut: self.cut.clone() }
    }
}

/// The service made by [`AuditLayer`].
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    cut: Arc<AtomicBool>,
}

impl<S> Service<http::Request<Body>> for Audit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(request));
        }
        let rpc = path.rsplit('/').next().unwrap_or_default();
        let rpc = crate::query::limits::clip(rpc, 64).into_owned();
        let note = AuditNote::default();
        request.extensions_mut().insert(note.clone());
        let request_id = request_id(request.headers());
        let span = if crate::metrics::otlp::enabled() {
            // Named after the RPC in the exported trace, a child of the caller's.
            let span = tracing::info_span!("rpc", otel.name = %rpc, otel.kind = "server", request_id = %request_id);
            crate::metrics::otlp::adopt_parent(&span, request.headers());
            span
        } else {
            tracing::info_span!("rpc", request_id = %request_id)
        };
        let peer = super::auth::peer(&request);
        let line = Line {
            note,
            rpc,
            request_id: request_id.clone(),
            peer,
            started: Instant::now(),
            bytes: 0,
            code: None,
            span: span.clone(),
            cut: self.cut.clone(),
        };
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let response = future.await?;
                let (mut parts, body) = response.into_parts();
                if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                    parts.headers.insert(REQUEST_ID, value);
                }
                let mut line = line;
                // A trailers-only response (an error before any message) carries
                // its status in the headers.
                line.code = status_code(&parts.headers);
                Ok(http::Response::from_parts(parts, Body::new(AuditBody { inner: body, line: Some(line) })))
            }
            .instrument(span),
        )
    }
}

/// The header that carries a request's id, both ways.
const REQUEST_ID: &str = "x-request-id";

/// The caller's `x-request-id` (clipped to 64 characters, of which only
/// letters, digits and `-_.:/+@` are kept, so that it can neither quote nor
/// forge the fields of a log line), or a fresh one: every log line of the
/// request carries it, and the response returns it.
fn request_id(headers: &http::HeaderMap) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static PROCESS: LazyLock<u32> = LazyLock::new(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        (nanos as u32) ^ std::process::id().rotate_left(16)
    });
    let given = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    match given {
        Some(id) => id.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.:/+@".contains(*c)).take(64).collect(),
        None => format!("{:08x}-{:x}", *PROCESS, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
    }
}

fn status_code(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers.get("grpc-status").map(|v| tonic::Code::from_bytes(v.as_bytes()))
}

/// The record of one call, written once when its response ends.
struct Line {
    note: AuditNote,
    rpc: String,
    request_id: String,
    peer: Option<std::net::IpAddr>,
    started: Instant,
    bytes: u64,
    code: Option<tonic::Code>,
    /// The call's span, kept open until the response ends (a DoGet's span
    /// covers its stream).
    span: tracing::Span,
    /// Set when the server cut running calls at the end of its shutdown grace.
    cut: Arc<AtomicBool>,
}

impl Line {
    fn write(self, ended: bool) {
        let fields = self.note.fields().clone();
        let outcome = match (self.code, ended) {
            (Some(code), _) => code_name(code),
            // A stream that ended without a status is an error the client sees.
            (None, true) => "UNKNOWN",
            (None, false) if self.cut.load(Ordering::Relaxed) => "UNAVAILABLE",
            (None, false) => "CANCELLED",
        };
        let elapsed = self.started.elapsed();
        crate::metrics::prometheus::observe_request(&self.rpc, outcome, elapsed.as_secs_f64(), self.bytes);
        let principal = fields.principal.as_deref().unwrap_or("unauthenticated");
        crate::metrics::otlp::finish_span(
            &self.span,
            self.code,
            outcome,
            &[
                ("sheaf.principal", principal),
                ("sheaf.package", fields.package.as_deref().unwrap_or("")),
                ("sheaf.top_hash", fields.top_hash.as_deref().unwrap_or("")),
                ("sheaf.table", fields.table.as_deref().unwrap_or("")),
            ],
        );
        tracing::info!(
            target: "audit",
            principal,
            rpc = %self.rpc,
            package = fields.package.as_deref().unwrap_or(""),
            top_hash = fields.top_hash.as_deref().unwrap_or(""),
            table = fields.table.as_deref().unwrap_or(""),
            outcome,
            bytes = self.bytes,
            ms = elapsed.as_millis() as u64,
            request_id = %self.request_id,
            peer = %self.peer.map_or_else(String::new, |p| p.to_string()),
        );
    }
}

/// The canonical gRPC name of a status code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A response body that counts its bytes and writes the audit line when it
/// ends (or is dropped: the client went away).
struct AuditBody {
    inner: Body,
    line: Option<Line>,
}

impl HttpBody for AuditBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // Whatever the stream logs belongs to the call's span.
        let entered = this.line.as_ref().map(|line| line.span.enter());
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        drop(entered);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(line) = this.line.as_mut() {
                    if let Some(data) = frame.data_ref() {
                        line.bytes += data.len() as u64;
                    } else if let Some(trailers) = frame.trailers_ref() {
                        line.code = status_code(trailers).or(line.code);
                    }
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(line) = this.line.as_mut() {
                    line.code = Some(status.code());
                }
            }
            Poll::Ready(None) => {
                if let Some(line) = this.line.take() {
                    line.write(true);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditBody {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            // Trailers seen means the call finished, even if the transport
            // dropped the body before polling past them.
            let ended = line.code.is_some();
            line.write(ended);
        }
    }
}
