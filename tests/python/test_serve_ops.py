"""`sheaf serve` as operators run it: settings from a file, the environment
and flags (flag > environment > file), the HTTP endpoint of --metrics-listen
(/metrics parsed by the Prometheus project's OpenMetrics parser, /healthz,
/readyz), draining on SIGTERM, and request ids in the audit log."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from ops_lib import http_get, run_serve, scrape, stop, value, wait_ready
from sheaf_testlib import free_port


def run_fails(tmp_path, *args, env=None, config=None) -> tuple[int, str]:
    proc, _, log = run_serve(tmp_path, *args, env=env, config=config)
    code = proc.wait(timeout=30)
    return code, log.read_text()


# ---------------------------------------------------------------------------
# --config, SHEAF_*, flags
# ---------------------------------------------------------------------------


def test_flag_beats_environment_beats_file(tmp_path):
    registry = tmp_path / "registry"
    p_file, p_env, p_flag = free_port(), free_port(), free_port()
    config = f'listen = "127.0.0.1:{p_file}"\nregistry = "{registry}"\ncache-mib = 8\nlog-json = true\n'
    cases = [
        ({}, [], p_file),
        ({"SHEAF_LISTEN": f"127.0.0.1:{p_env}"}, [], p_env),
        ({"SHEAF_LISTEN": f"127.0.0.1:{p_env}"}, ["--listen", f"127.0.0.1:{p_flag}"], p_flag),
    ]
    for env, args, port in cases:
        proc, line, log = run_serve(tmp_path, *args, env=env, config=config)
        try:
            assert line.strip().endswith(f"grpc://127.0.0.1:{port}"), (env, args, line, log.read_text())
            assert str(registry) in line, line  # `registry` from the file
            deadline = time.monotonic() + 10
            while not log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            # log-json = true from the file: stderr is JSON lines.
            first = log.read_text().splitlines()[0]
            assert first.startswith("{"), first
        finally:
            stop(proc)
    # A flag in the environment only (SHEAF_CONFIG names the file itself).
    path = tmp_path / "via-env.toml"
    path.write_text(config)
    proc, line, _ = run_serve(tmp_path, env={"SHEAF_CONFIG": str(path)})
    try:
        assert line.strip().endswith(f"grpc://127.0.0.1:{p_file}"), line
    finally:
        stop(proc)


def test_bad_keys_and_values_are_named(tmp_path):
    for config, expected in [
        ("cache-mb = 1\n", "key `cache-mb`: unknown key"),
        ("cache_mib = 1\n", "key `cache_mib`: keys are spelled as the flags are: `cache-mib`"),
        ('cache-mib = "lots"\n', "key `cache-mib`: invalid value 'lots'"),
        ('demo = "yes"\n', "key `demo`: expected true or false"),
        ("listen = [1, 2]\n", "key `listen`: takes one value, not a list"),
        ("[section]\nx = 1\n", "key `section`: unknown key"),
        ("listen = \n", "TOML parse error"),
    ]:
        code, err = run_fails(tmp_path, config=config)
        assert code == 2, (config, err)
        assert "sheaf: error: " in err and ".toml" in err and expected in err, (config, err)
    code, err = run_fails(tmp_path, "--config", tmp_path / "missing.toml")
    assert code == 2 and "cannot read --config" in err and "missing.toml" in err, err
    code, err = run_fails(tmp_path, env={"SHEAF_CACHE_MIB": "lots"})
    assert code == 2 and "'lots'" in err and "--cache-mib" in err, err
    code, err = run_fails(tmp_path, "--peer", "http://elsewhere:1", "--listen", "127.0.0.1:0")
    assert code == 2 and '"http://elsewhere:1" is not a replica address' in err, err
    for bad in ("grpc://elsewhere:1/path", "grpc://elsewhere:1?x=1", "grpc://user@elsewhere:1", "grpc://elsewhere"):
        code, err = run_fails(tmp_path, "--advertise", bad, "--listen", "127.0.0.1:0")
        assert code == 2 and f"{bad!r}".replace("'", '"') + " is not a replica address" in err, err


def test_lists_come_from_the_file_or_the_environment(tmp_path):
    """`peer` as a TOML list, SHEAF_PEER comma-separated; endpoints name
    them all (plus this server's advertised address)."""
    registry = tmp_path / "registry"
    port = free_port()
    me = f"grpc://127.0.0.1:{port}"
    config = f'advertise = "{me}"\npeer = ["grpc://127.0.0.1:1", "grpc://127.0.0.1:2"]\nlisten = "127.0.0.1:{port}"\n'
    for env, peers in [
        ({}, {"grpc://127.0.0.1:1", "grpc://127.0.0.1:2"}),
        ({"SHEAF_PEER": "grpc://127.0.0.1:3,grpc://127.0.0.1:4"}, {"grpc://127.0.0.1:3", "grpc://127.0.0.1:4"}),
    ]:
        proc, line, log = run_serve(tmp_path, "--demo", env=env, config=config, registry=registry)
        try:
            client = flight.FlightClient(me)
            fi = client.get_flight_info(flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet"))
            # Before the first health round every configured peer is listed;
            # after it the dead ones are gone. Either way: this server first
            # or among them, no duplicates, nothing else.
            locs = [loc.uri.decode() for loc in fi.endpoints[0].locations]
            assert me in locs and len(set(locs)) == len(locs) and set(locs) <= peers | {me}, locs
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                fi = client.get_flight_info(flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet"))
                if [loc.uri.decode() for loc in fi.endpoints[0].locations] == [me]:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"dead peers still listed: {fi.endpoints[0].locations}\n{log.read_text()}")
            client.close()
        finally:
            stop(proc)


def test_a_peer_serving_another_registry_is_left_out(tmp_path):
    """A peer started on another registry answers its health checks, but
    every read placed on it would find nothing: it is left out of endpoints
    (and the log says why), while a peer on the same registry stays."""
    shared, other = tmp_path / "shared", tmp_path / "other"
    me, same, elsewhere = (free_port() for _ in range(3))
    url = "grpc://127.0.0.1:{}".format
    procs = []
    try:
        for port, registry in [(same, shared), (elsewhere, other)]:
            proc, line, _ = run_serve(tmp_path, "--demo", "--listen", f"127.0.0.1:{port}", registry=registry)
            assert line, "a peer did not start"
            procs.append(proc)
        proc, line, log = run_serve(
            tmp_path,
            "--demo",
            "--listen",
            f"127.0.0.1:{me}",
            "--advertise",
            url(me),
            "--peer",
            url(same),
            "--peer",
            url(elsewhere),
            registry=shared,
        )
        procs.append(proc)
        client = flight.FlightClient(url(me))
        locations = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            fi = client.get_flight_info(flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet"))
            locations = {loc.uri.decode() for loc in fi.endpoints[0].locations}
            if locations == {url(me), url(same)}:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"locations {locations}\n{log.read_text()}")
        client.close()
        text = log.read_text()
        assert "does not serve this server's registry" in text and url(elsewhere) in text, text
        assert str(other) not in text, "the log names the other server's registry"
    finally:
        for proc in procs:
            stop(proc)


# ---------------------------------------------------------------------------
# --metrics-listen
# ---------------------------------------------------------------------------


def serve_demo_with_metrics(tmp_path, *args):
    """`sheaf serve --demo` on a free port with --metrics-listen on another;
    returns (process, Flight URL, metrics base URL, stderr path)."""
    port, mport = free_port(), free_port()
    proc, _, log = run_serve(
        tmp_path,
        "--demo",
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics-listen",
        f"127.0.0.1:{mport}",
        *args,
        registry=tmp_path / "registry",
    )
    return proc, f"grpc://127.0.0.1:{port}", f"http://127.0.0.1:{mport}", log


def test_metrics_move_with_the_traffic(tmp_path):
    proc, url, base, _ = serve_demo_with_metrics(tmp_path)
    try:
        assert http_get(f"{base}/healthz")[0] == 200
        wait_ready(base)
        assert http_get(f"{base}/nothing")[0] == 404
        before = scrape(base)
        client = flight.FlightClient(url)
        descriptor = flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet")
        tables = []
        # Kept from its second read on, the table is answered from the stream
        # cache at the third.
        for _ in range(3):
            fi = client.get_flight_info(descriptor)
            tables.append(pa.concat_tables(client.do_get(ep.ticket).read_all() for ep in fi.endpoints))
        with pytest.raises(pa.ArrowKeyError):  # NOT_FOUND
            client.get_flight_info(flight.FlightDescriptor.for_path("no/such", "x.parquet"))
        after = scrape(base)
        rows = tables[0].num_rows
        assert rows > 0 and all(t.equals(tables[0]) for t in tables)

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("sheaf_requests_total", rpc="GetFlightInfo", code="OK") == 3
        assert moved("sheaf_requests_total", rpc="GetFlightInfo", code="NOT_FOUND") == 1
        assert moved("sheaf_requests_total", rpc="DoGet", code="OK") == 3 * len(fi.endpoints)
        assert moved("sheaf_request_duration_seconds_count", rpc="DoGet", code="OK") == 3 * len(fi.endpoints)
        assert moved("sheaf_rows_sent_total") == 3 * rows
        assert moved("sheaf_cache_hits_total") == len(fi.endpoints)
        assert moved("sheaf_storage_read_bytes_total") > 0
        assert value(after, "sheaf_cache_bytes") > 0
        assert moved("sheaf_response_bytes_total", rpc="DoGet", code="OK") > 0
        for gauge in ("sheaf_scans_open", "sheaf_scans_waiting"):
            assert (gauge, ()) in after, gauge
        client.close()
    finally:
        stop(proc)


def test_sigterm_drains(tmp_path):
    """SIGTERM: /readyz turns 503 at once while the server still answers for
    --drain-delay, then it stops accepting and exits 0."""
    proc, url, base, log = serve_demo_with_metrics(tmp_path, "--drain-delay", "3s")
    try:
        wait_ready(base)
        client = flight.FlightClient(url)
        descriptor = flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet")
        fi = client.get_flight_info(descriptor)
        reader = client.do_get(fi.endpoints[0].ticket)  # a stream running across the signal
        signalled = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.5)
        status, _, body = http_get(f"{base}/readyz")
        assert status == 503 and "draining" in body, (status, body)
        assert http_get(f"{base}/healthz")[0] == 200
        # Still accepting during the drain delay: new calls are answered.
        assert client.get_flight_info(descriptor).total_records == fi.total_records
        assert reader.read_all().num_rows > 0
        client.close()
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - signalled >= 2.5, "stopped before the drain delay ended"
        assert "draining" in log.read_text()
    finally:
        stop(proc)


def test_a_registry_folder_gone_is_unavailable_and_not_ready(tmp_path):
    """A local registry's folder deleted (or a volume unmounted) under a running server: its packages answer
    UNAVAILABLE (a storage failure clients retry elsewhere), not NOT_FOUND (which they take as final), /readyz turns
    503 within the watch period, and both come back once the folder does."""
    import shutil

    proc, url, base, log = serve_demo_with_metrics(tmp_path)
    try:
        wait_ready(base)
        client = flight.FlightClient(url)
        descriptor = flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet")
        rows = client.get_flight_info(descriptor).total_records
        registry = tmp_path / "registry"
        kept = tmp_path / "registry-moved"
        shutil.move(registry, kept)
        with pytest.raises(flight.FlightUnavailableError, match="storage failed; retry later") as e:
            client.get_flight_info(descriptor)
        assert str(registry) not in str(e.value), e.value
        deadline = time.monotonic() + 20
        while http_get(f"{base}/readyz")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.5)
        status, _, body = http_get(f"{base}/readyz")
        assert status == 503 and "does not answer" in body, (status, body)
        shutil.move(kept, registry)
        wait_ready(base)
        assert client.get_flight_info(descriptor).total_records == rows
        client.close()
        assert "stopped answering" in log.read_text() and "answers again" in log.read_text()
    finally:
        stop(proc)


# HTTP/2 frames, as a client's transport writes them (RFC 9113 section 4.1).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(kind: int, payload: bytes = b"", flags: int = 0, stream: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def test_sigterm_lingers_until_the_client_closes(tmp_path):
    """After a graceful stop the server shuts its sockets down for writing and
    reads until each client closes: frames a client sends after the end (a slow
    reader's WINDOW_UPDATEs as it reads a stream's tail) meet an open socket,
    not a reset that would discard what it had not read yet, and the process
    exits once the client closed."""
    port = free_port()
    proc, _, log = run_serve(tmp_path, "--demo", "--listen", f"127.0.0.1:{port}", registry=tmp_path / "registry")
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(H2_PREFACE + h2_frame(0x4))  # SETTINGS
        kinds, buffered, signalled = [], b"", False
        # Answer as a client's transport does (SETTINGS and PING acknowledged:
        # the server's graceful stop waits for its PING's answer) until the
        # server's end (FIN).
        while True:
            while len(buffered) >= 9 and len(buffered) >= 9 + int.from_bytes(buffered[:3], "big"):
                size = int.from_bytes(buffered[:3], "big")
                kind, flags, payload = buffered[3], buffered[4], buffered[9 : 9 + size]
                buffered = buffered[9 + size :]
                kinds.append(kind)
                if kind == 0x4 and not flags & 0x1:
                    sock.sendall(h2_frame(0x4, flags=0x1))
                elif kind == 0x6 and not flags & 0x1:
                    sock.sendall(h2_frame(0x6, payload, flags=0x1))
            if not signalled and 0x4 in kinds:  # the connection is served
                proc.send_signal(signal.SIGTERM)
                signalled = True
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffered += chunk
        assert 0x7 in kinds, f"no GOAWAY before the end: frame types {kinds}"
        time.sleep(1)
        assert proc.poll() is None, "the server exited while a client still had its connection open"
        window_update = h2_frame(0x8, (1 << 20).to_bytes(4, "big"))
        for _ in range(3):
            sock.sendall(window_update)
            time.sleep(0.2)
        assert sock.recv(1) == b"", "the server reset the connection"  # ConnectionResetError otherwise
        sock.close()
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        stop(proc)


def test_request_ids_reach_the_audit_log(tmp_path):
    port = free_port()
    proc, line, log = run_serve(tmp_path, "--demo", "--listen", f"127.0.0.1:{port}", registry=tmp_path / "registry")
    try:
        client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        options = flight.FlightCallOptions(headers=[(b"x-request-id", b"trace-abc-123")])
        client.get_flight_info(flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet"), options)
        client.close()
        deadline = time.monotonic() + 10
        while "trace-abc-123" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = [ln for ln in log.read_text().splitlines() if "trace-abc-123" in ln]
        assert any("GetFlightInfo" in ln and "audit" in ln for ln in lines), log.read_text()[-3000:]
        # Calls without one get a fresh id each.
        assert "request_id=" in log.read_text()
        # Quotes, equals signs and spaces cannot forge fields of the audit line: only [A-Za-z0-9-_.:/+@] are kept.
        client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        forged = flight.FlightCallOptions(headers=[(b"x-request-id", b'id7"outcome="OK" principal="admin')])
        client.get_flight_info(flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet"), forged)
        client.close()
        while "id7outcomeOKprincipaladmin" not in log.read_text() and time.monotonic() < deadline + 10:
            time.sleep(0.2)
        assert "request_id=id7outcomeOKprincipaladmin" in log.read_text(), log.read_text()[-3000:]
        assert 'outcome="OK" principal="admin' not in log.read_text()
        # A long id keeps its first 64 characters, nothing appended.
        client = flight.FlightClient(f"grpc://127.0.0.1:{port}")
        long_id = "L" + "0123456789" * 50
        options = flight.FlightCallOptions(headers=[(b"x-request-id", long_id.encode())])
        client.get_flight_info(flight.FlightDescriptor.for_path("demo/weather", "tables/readings.parquet"), options)
        client.close()
        while f"request_id={long_id[:64]}" not in log.read_text() and time.monotonic() < deadline + 20:
            time.sleep(0.2)
        ids = {m.group(1) for m in re.finditer(r"request_id=(L\w+)", log.read_text())}
        assert ids == {long_id[:64]}, (ids, log.read_text()[-3000:])
    finally:
        stop(proc)
