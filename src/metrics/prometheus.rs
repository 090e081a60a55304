//! The process's figures in the Prometheus (OpenMetrics) text format, as
//! `GET /metrics` serves them (`sheaf serve --metrics-listen`).
//!
//! Requests are counted and timed per RPC and gRPC status code by the audit
//! layer ([`observe_request`]); every other figure is one of the process-wide
//! counters and gauges of [`crate::metrics`], read at each scrape.

use super::{Counter, Gauge};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter as PromCounter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels of a request: its RPC and its gRPC status code.
type RequestLabels = [(&'static str, &'static str); 2];

/// Counts and latencies of requests.
struct Requests {
    count: Family<RequestLabels, PromCounter>,
    seconds: Family<RequestLabels, Histogram>,
    bytes: Family<RequestLabels, PromCounter>,
}

/// The RPCs a label may name; anything else a client sends is `other`, so
/// that no caller can grow the set of series.
const RPCS: &[&str] = &[
    "Handshake",
    "ListFlights",
    "GetFlightInfo",
    "PollFlightInfo",
    "GetSchema",
    "DoGet",
    "DoPut",
    "DoExchange",
    "DoAction",
    "ListActions",
];

static REQUESTS: LazyLock<Requests> = LazyLock::new(|| Requests {
    count: Family::default(),
    // 1 ms to about 2 min, doubling.
    seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 18))),
    bytes: Family::default(),
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let requests = &*REQUESTS;
    registry.register("sheaf_requests", "gRPC requests ended, by RPC and status code", requests.count.clone());
    registry.register(
        "sheaf_request_duration_seconds",
        "Time from a request's arrival to the end of its response, by RPC and status code",
        requests.seconds.clone(),
    );
    registry.register(
        "sheaf_response_bytes",
        "Bytes of gRPC response bodies, by RPC and status code",
        requests.bytes.clone(),
    );
    registry.register_collector(Box::new(Figures));
    registry
});

/// Records one ended request: its RPC (the method name), status code name,
/// duration and response bytes.
pub fn observe_request(rpc: &str, code: &'static str, seconds: f64, bytes: u64) {
    let rpc = RPCS.iter().find(|r| **r == rpc).copied().unwrap_or("other");
    let labels = [("rpc", rpc), ("code", code)];
    let requests = &*REQUESTS;
    requests.count.get_or_create(&labels).inc();
    requests.seconds.get_or_create(&labels).observe(seconds);
    requests.bytes.get_or_create(&labels).inc_by(bytes);
}

/// Every figure, as OpenMetrics text ([`CONTENT_TYPE`]).
pub fn encode() -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &REGISTRY).expect("writing to a String does not fail");
    text
}

/// The counters and gauges of [`crate::metrics`], read at each scrape.
#[derive(Debug)]
struct Figures;

static COUNTERS: &[(&str, &str, &Counter)] = &[
    ("sheaf_storage_read_bytes", "Bytes fetched from storage (GETs and ranged GETs)", &super::BYTES_READ),
    ("sheaf_storage_errors", "Storage requests that failed (not counting 'not found')", &super::STORAGE_ERRORS),
    ("sheaf_rows_scanned", "Rows decoded from storage before filters", &super::ROWS_SCANNED),
    ("sheaf_doget_streams", "DoGet streams started", &super::DO_GET),
    ("sheaf_cache_hits", "DoGet streams answered from the stream cache", &super::DO_GET_CACHED),
    ("sheaf_cache_evictions", "Streams evicted from the stream cache to make room", &super::CACHE_EVICTIONS),
    ("sheaf_rows_sent", "Rows sent by DoGet", &super::ROWS_SENT),
    ("sheaf_batches_sent", "Record batches sent by DoGet", &super::BATCHES_SENT),
    ("sheaf_sent_bytes", "Bytes of Flight messages sent by DoGet", &super::BYTES_SENT),
    ("sheaf_commits", "Revisions committed through the server", &super::DO_PUT),
    ("sheaf_logins_failed", "Password logins refused", &super::LOGINS_FAILED),
];

static GAUGES: &[(&str, &str, &Gauge)] = &[
    ("sheaf_cache_bytes", "Bytes held by the stream cache", &super::CACHE_BYTES),
    ("sheaf_scans_open", "DoGet streams reading storage", &super::SCANS_OPEN),
    ("sheaf_scans_waiting", "DoGet streams waiting for a turn to read storage", &super::SCANS_WAITING),
];

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for (name, help, counter) in COUNTERS {
            let value = ConstCounter::new(counter.get());
            value.encode(encoder.encode_descriptor(name, help, None, value.metric_type())?)?;
        }
        for (name, help, gauge) in GAUGES {
            let value = ConstGauge::new(gauge.get());
            value.encode(encoder.encode_descriptor(name, help, None, value.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_figures_are_in_the_text() {
        observe_request("DoGet", "OK", 0.01, 100);
        observe_request("NotAnRpc", "UNIMPLEMENTED", 0.5, 0);
        super::super::ROWS_SENT.add(3);
        let text = encode();
        assert!(text.contains("sheaf_requests_total{rpc=\"DoGet\",code=\"OK\"}"), "{text}");
        assert!(text.contains("sheaf_requests_total{rpc=\"other\",code=\"UNIMPLEMENTED\"} 1"), "{text}");
        assert!(text.contains("sheaf_request_duration_seconds_count{rpc=\"DoGet\",code=\"OK\"}"), "{text}");
        assert!(text.contains("# TYPE sheaf_rows_sent counter"), "{text}");
        assert!(text.contains("# TYPE sheaf_cache_bytes gauge"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
