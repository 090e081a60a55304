//! The operators' HTTP endpoint (`sheaf serve --metrics-listen ADDR`), plain
//! HTTP/1.1 with no authentication, on its own port so that Prometheus and
//! orchestrators need neither the Flight port's credentials nor its TLS:
//!
//! - `GET /metrics`: every figure in the OpenMetrics text format
//!   ([`crate::metrics::prometheus`]);
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 when the server should be sent new work, 503 before
//!   the registry's storage first answered, while it does not answer (a
//!   local registry's folder gone), and from the moment it drains (SIGTERM),
//!   with the reason in the body.
//!
//! The same readiness drives the gRPC health service, which Kubernetes
//! probes and the other replicas check.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the server should be sent new work.
#[derive(Debug, Default)]
pub struct Readiness {
    registry: AtomicBool,
    /// The registry answered once and then stopped answering.
    lost: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Records that the registry's storage answered.
    pub fn registry_reachable(&self) {
        self.registry.store(true, Ordering::Relaxed);
        self.lost.store(false, Ordering::Relaxed);
    }

    /// Records that the registry's storage, which answered before, does not.
    pub fn registry_lost(&self) {
        self.lost.store(true, Ordering::Relaxed);
    }

    /// Records that the server drains (no new work from now on).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the server drains.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.draining() {
            Err("draining: shutting down, running requests are finishing")
        } else if !self.registry.load(Ordering::Relaxed) {
            Err("the registry's storage has not answered yet")
        } else if self.lost.load(Ordering::Relaxed) {
            Err("the registry's storage does not answer")
        } else {
            Ok(())
        }
    }
}

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, readiness: Arc<Readiness>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(request.method(), request.uri().path(), &readiness);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

/// The answer to `method path`.
fn respond(method: &Method, path: &str, readiness: &Readiness) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, content_type: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
        response
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n".into(), PLAIN);
    }
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into(), PLAIN);
    }
    match path {
        "/metrics" => {
            text(StatusCode::OK, crate::metrics::prometheus::encode(), crate::metrics::prometheus::CONTENT_TYPE)
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into(), PLAIN),
        _ => match readiness.check() {
            Ok(()) => text(StatusCode::OK, "ready\n".into(), PLAIN),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"), PLAIN),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_registry_and_draining() {
        let r = Readiness::default();
        let status = |r: &Readiness, path| respond(&Method::GET, path, r).status();
        assert_eq!(status(&r, "/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&r, "/healthz"), StatusCode::OK);
        r.registry_reachable();
        assert_eq!(status(&r, "/readyz"), StatusCode::OK);
        r.drain();
        assert_eq!(status(&r, "/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&r, "/healthz"), StatusCode::OK);
        assert_eq!(status(&r, "/nope"), StatusCode::NOT_FOUND);
        assert_eq!(respond(&Method::POST, "/metrics", &r).status(), StatusCode::METHOD_NOT_ALLOWED);
        let metrics = respond(&Method::GET, "/metrics", &r);
        assert_eq!(metrics.headers()[header::CONTENT_TYPE], crate::metrics::prometheus::CONTENT_TYPE);
    }
}
