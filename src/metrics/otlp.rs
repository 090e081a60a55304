//! OpenTelemetry trace export (`sheaf serve --otlp-endpoint URL`), off by
//! default.
//!
//! Every RPC is one server span (the audit layer's `rpc` span, named after
//! the RPC: `DoGet`, `GetFlightInfo`, ...) that lasts until its response
//! ends, so a DoGet's span covers the whole stream. It carries the request
//! id, the gRPC status, and the principal, package, revision and table the
//! audit line names; the server's log lines inside the call become its
//! events. A caller's W3C `traceparent` header makes the span a child of the
//! caller's trace. Spans go in batches over OTLP/gRPC to a collector on the
//! Tokio runtime the server already runs; a collector that is down costs
//! dropped spans, never a failed request.
//!
//! The standard `OTEL_*` variables tune what the flag leaves open:
//! `OTEL_SERVICE_NAME` (default `sheaf`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//! `OTEL_TRACES_SAMPLER`(`_ARG`) and `OTEL_BSP_*` (batching).

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported (set once, when [`Exporter::start`] succeeds).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: callers skip the work of naming and
/// parenting spans when they are not.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The running export: a tracer provider whose batches go to the collector.
pub struct Exporter {
    provider: SdkTracerProvider,
}

/// Why the export could not start (a bad endpoint), naming the flag.
#[derive(Debug)]
pub struct ExportError(String);

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExportError {}

impl Exporter {
    /// Checks `endpoint` (`http://host:port` or `https://host:port`, the
    /// collector's OTLP/gRPC port, usually 4317) and starts the batching
    /// task. Must run inside the Tokio runtime. `instance` names this
    /// replica in the spans' resource (`service.instance.id`). Nothing
    /// connects yet: a collector that is down is noticed at the first
    /// export.
    pub fn start(endpoint: &str, instance: &str) -> Result<Exporter, ExportError> {
        let bad = |why: &str| ExportError(format!("--otlp-endpoint {endpoint:?}: {why}"));
        let uri: http::Uri = endpoint.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("give http://host:port or https://host:port (the collector's OTLP/gRPC port)")),
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint);
        if https {
            builder = builder.with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
        }
        let exporter = builder.build().map_err(|e| bad(&e.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
            resource = resource.with_service_name("sheaf");
        }
        let resource = resource
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_attribute(opentelemetry::KeyValue::new("service.instance.id", instance.to_owned()))
            .build();
        let processor = BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Exporter { provider })
    }

    /// The tracing layer that turns spans into OpenTelemetry spans (give it
    /// a filter: only Sheaf's own spans are worth exporting).
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("sheaf"))
    }

    /// Sends the spans still batched and stops, waiting up to `timeout`
    /// (on a blocking thread: the provider blocks while the batch task,
    /// on the runtime, exports).
    pub async fn shutdown(self, timeout: Duration) {
        ENABLED.store(false, Ordering::Relaxed);
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(timeout));
        match tokio::time::timeout(timeout + Duration::from_secs(1), done).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "OpenTelemetry export: the last spans may be lost"),
            Ok(Err(_)) | Err(_) => tracing::warn!("OpenTelemetry export: the last spans may be lost (timed out)"),
        }
    }
}

/// Makes `span` (not yet entered) a child of the caller's trace when the
/// request carries a W3C `traceparent` header and spans are exported.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Attributes and status of an RPC's span at its end: what the audit line
/// says, in OpenTelemetry's gRPC terms (`rpc.grpc.status_code`, an error
/// status unless the call was OK).
pub fn finish_span(span: &tracing::Span, code: Option<tonic::Code>, outcome: &str, fields: &[(&'static str, &str)]) {
    if !enabled() {
        return;
    }
    if let Some(code) = code {
        span.set_attribute("rpc.grpc.status_code", code as i64);
    }
    for (key, value) in fields {
        if !value.is_empty() {
            span.set_attribute(*key, value.to_string());
        }
    }
    if outcome != "OK" {
        span.set_status(opentelemetry::trace::Status::error(outcome.to_owned()));
    }
}

/// Request headers as the propagator reads them.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
