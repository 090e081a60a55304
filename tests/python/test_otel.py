"""OpenTelemetry trace export (`sheaf serve --otlp-endpoint`) into a real
OTLP/gRPC receiver: the OpenTelemetry project's trace service protos served
by grpcio, as a collector would serve them.

One server span per RPC, named after it, a child of the caller's W3C
`traceparent`, carrying the request id, the gRPC status and the audit
line's package and table; the last spans are sent at SIGTERM; a collector
that is down costs spans, never a request; a bad endpoint is refused at
start-up, naming the flag."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from concurrent import futures

import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from ops_lib import run_serve, stop
from sheaf_testlib import SHEAF_BIN, free_port

TABLE = ("demo/weather", "tables/readings.parquet")


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it, with its resource's attributes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans: list[tuple[dict, trace_pb2.Span]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request, context):  # noqa: N802 (the gRPC method's name)
        with self.lock:
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    self.spans.extend((resource, span) for span in ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, predicate, timeout=30.0) -> list[tuple[dict, trace_pb2.Span]]:
        """The spans once `predicate(spans)` holds (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = [s.name for _, s in spans]
                pytest.fail(f"the collector did not get the expected spans in {timeout}s; it got {names}")
            time.sleep(0.1)


def attributes(kvs) -> dict:
    out = {}
    for kv in kvs:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.server.stop(grace=None)


def serve(tmp_path, endpoint: str, *args, env=None):
    port = free_port()
    proc, line, log = run_serve(
        tmp_path,
        "--demo",
        "--listen",
        f"127.0.0.1:{port}",
        "--otlp-endpoint",
        endpoint,
        *args,
        registry=tmp_path / "registry",
        env=env,
    )
    if "serving" not in line:
        stop(proc)
        pytest.fail(f"sheaf serve did not start: {line!r}\n{log.read_text()}")
    return proc, f"grpc://127.0.0.1:{port}", log


def otlp_supported() -> bool:
    import subprocess

    out = subprocess.run([str(SHEAF_BIN), "serve", "--help"], capture_output=True, text=True)
    return "--otlp-endpoint" in out.stdout


pytestmark = pytest.mark.skipif(not otlp_supported(), reason="this sheaf binary has no --otlp-endpoint")


def read(client: flight.FlightClient, options: flight.FlightCallOptions) -> pa.Table:
    fi = client.get_flight_info(flight.FlightDescriptor.for_path(*TABLE), options)
    return pa.concat_tables(client.do_get(ep.ticket, options).read_all() for ep in fi.endpoints)


def test_a_span_per_rpc_in_the_callers_trace(tmp_path, collector):
    proc, url, log = serve(tmp_path, f"http://127.0.0.1:{collector.port}", env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
        traceparent = f"00-{trace_id.hex()}-{parent_id.hex()}-01"
        headers = [(b"traceparent", traceparent.encode()), (b"x-request-id", b"otel-1")]
        options = flight.FlightCallOptions(headers=headers)
        client = flight.FlightClient(url)
        table = read(client, options)
        assert table.num_rows > 0
        with pytest.raises(pa.ArrowKeyError):  # NOT_FOUND, outside any caller's trace
            client.get_flight_info(flight.FlightDescriptor.for_path("no/such", "x.parquet"))
        client.close()

        def ours(spans):
            return [s for _, s in spans if s.trace_id == trace_id]

        spans = collector.wait_for(
            lambda spans: (
                {"GetFlightInfo", "DoGet"} <= {s.name for s in ours(spans)}
                and any(s.name == "GetFlightInfo" and s.trace_id != trace_id for _, s in spans)
            )
        )
        resource = spans[0][0]
        assert resource["service.name"] == "sheaf"
        assert resource["service.instance.id"] == url.removeprefix("grpc://")
        for span in ours(spans):
            assert span.parent_span_id == parent_id, span.name
            assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
            attrs = attributes(span.attributes)
            assert attrs["request_id"] == "otel-1"
            assert attrs["rpc.grpc.status_code"] == 0
            assert attrs["sheaf.package"] == TABLE[0]
            assert attrs["sheaf.principal"]
            assert span.status.code != trace_pb2.Status.STATUS_CODE_ERROR
            assert span.end_time_unix_nano >= span.start_time_unix_nano
        doget = next(s for s in ours(spans) if s.name == "DoGet")
        assert attributes(doget.attributes)["sheaf.table"] == TABLE[1]

        (missing,) = [s for _, s in spans if s.name == "GetFlightInfo" and s.trace_id != trace_id]
        assert missing.parent_span_id == b"" and any(missing.trace_id)
        assert attributes(missing.attributes)["rpc.grpc.status_code"] == 5  # NOT_FOUND
        assert missing.status.code == trace_pb2.Status.STATUS_CODE_ERROR
        assert missing.status.message == "NOT_FOUND"
        assert attributes(missing.attributes)["request_id"]  # a fresh one
    finally:
        stop(proc)


def test_sigterm_sends_the_last_spans(tmp_path, collector):
    # Batches every minute: only the flush at shutdown can deliver the span in time.
    proc, url, log = serve(tmp_path, f"http://127.0.0.1:{collector.port}", env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
    try:
        client = flight.FlightClient(url)
        client.get_flight_info(flight.FlightDescriptor.for_path(*TABLE))
        client.close()
        time.sleep(0.5)
        assert not collector.spans
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        collector.wait_for(lambda spans: any(s.name == "GetFlightInfo" for _, s in spans), timeout=5)
    finally:
        stop(proc)


def test_a_collector_that_is_down_costs_no_request(tmp_path):
    nobody = free_port()
    proc, url, log = serve(tmp_path, f"http://127.0.0.1:{nobody}", env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        client = flight.FlightClient(url)
        for _ in range(3):
            assert read(client, flight.FlightCallOptions()).num_rows > 0
            time.sleep(0.3)  # exports fail in between
        client.close()
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
        # The flush at shutdown gives up instead of holding the exit.
        assert time.monotonic() - started < 20
        # The failed exports are logged, not silent.
        assert "ExportError" in log.read_text(), log.read_text()[-3000:]
    finally:
        stop(proc)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4317", "ftp://collector:4317", "http://", "not a url"])
def test_a_bad_endpoint_is_refused_at_start(tmp_path, endpoint):
    proc, line, log = run_serve(tmp_path, "--demo", "--otlp-endpoint", endpoint, registry=tmp_path / "registry")
    code = proc.wait(timeout=30)
    err = log.read_text()
    assert code == 2 and line == "", (code, line, err)
    assert "--otlp-endpoint" in err and endpoint in err, err


def test_the_endpoint_from_the_environment_and_config(tmp_path, collector):
    """SHEAF_OTLP_ENDPOINT and the config file's otlp-endpoint key turn export on too."""
    endpoint = f"http://127.0.0.1:{collector.port}"
    for how in ("env", "config"):
        port = free_port()
        extra = {"env": {"SHEAF_OTLP_ENDPOINT": endpoint}, "config": {}}[how]
        config = f'otlp-endpoint = "{endpoint}"\n' if how == "config" else None
        proc, line, log = run_serve(
            tmp_path,
            "--demo",
            "--listen",
            f"127.0.0.1:{port}",
            registry=tmp_path / "registry",
            env={"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": f"sheaf-{how}", **extra},
            config=config,
        )
        try:
            assert "serving" in line, log.read_text()
            client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
            client.get_flight_info(flight.FlightDescriptor.for_path(*TABLE))
            client.close()
            collector.wait_for(lambda spans, how=how: any(r.get("service.name") == f"sheaf-{how}" for r, _ in spans))
        finally:
            stop(proc)
