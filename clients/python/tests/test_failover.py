"""Replicas: the client's failover between an endpoint's locations, against
real `sheaf serve` processes over one local registry, one of them killed
(SIGKILL) while a read is running (the policy is in sheaf._failover), and
its rules in the middle of a stream one at a time, against the in-process
pyarrow servers of fakes.py (the rules before a stream starts are in
test_contract.py).

Three replicas listen on fixed loopback ports. Endpoints with several
locations are built here from the server's tickets (a ticket is valid on every
replica: without --auth it is unsigned); when the binary has the replica flags
(`serve --help` lists --peer), the replicas also --advertise themselves and
--peer each other, and one test reads the endpoints they plan.

Which replica served what is read from the servers' audit lines (one
`rpc=DoGet` line per DoGet, written when it ends).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

import sheaf
import sheaf.dataset
from sheaf._failover import is_replica_failure
from sheaf._proto import sheaf_pb2
from sheaf.errors import from_flight

from conftest import TIMEOUT, Server, child_env, free_port, run_sheaf, sheaf_bin, start_server
from fakes import ids_of, status_details, unavailable

#: Rows of the table read: far more than a socket and HTTP/2 window hold, so a
#: replica killed after its first batch has most of the stream left to send.
ROWS = 2_000_000
URI = "sheaf://test/big/big.parquet"


@functools.cache
def has_peers() -> bool:
    """Whether the server binary has the replica flags (--peer)."""
    r = subprocess.run(
        [str(sheaf_bin()), "serve", "--help"], capture_output=True, text=True, env=child_env(), timeout=60
    )
    return "--peer" in r.stdout


@dataclass
class Big:
    registry: Path
    root: Path
    expected: pa.Table  # the table's rows, in order


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Big:
    root = tmp_path_factory.mktemp("failover")
    registry = root / "registry"
    registry.mkdir()
    ids = pa.array(range(ROWS), pa.int64())
    table = pa.table(
        {
            "id": ids,
            "x": pc.multiply(ids.cast(pa.float64()), 0.25),
            "s": pc.binary_join_element_wise("r", ids.cast(pa.string()), ""),
        }
    )
    src = root / "src"
    src.mkdir()
    pq.write_table(table, src / "big.parquet", row_group_size=100_000)
    run_sheaf(registry, "push", "test/big", str(src), "-m", "big")
    return Big(registry, root, table)


@dataclass
class Replicas:
    """Replicas of one registry on fixed loopback ports."""

    servers: list[Server]
    urls: list[str]

    def kill(self, i: int) -> None:
        """SIGKILL replica ``i`` and wait until it is gone."""
        proc = self.servers[i].proc
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def do_gets(self, i: int) -> list[str]:
        """Replica ``i``'s audit lines of DoGets (finished ones)."""
        return [line for line in self.servers[i].stderr().splitlines() if "rpc=DoGet" in line]


def start_replicas(big: Big, n: int = 3, *, peers: bool = False) -> Replicas:
    ports = [free_port() for _ in range(n)]
    urls = [f"grpc://127.0.0.1:{p}" for p in ports]
    servers: list[Server] = []
    try:
        for i, port in enumerate(ports):
            extra: list[str] = []
            if peers:
                extra = ["--advertise", urls[i]]
                for other in urls:
                    if other != urls[i]:
                        extra += ["--peer", other]
            log = big.root / f"replica-{port}.log"
            server = start_server(big.registry, log, *extra, listen=f"127.0.0.1:{port}")
            assert server.url == urls[i], f"replica {i} listens on {server.url}, not {urls[i]}"
            servers.append(server)
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return Replicas(servers, urls)


@pytest.fixture
def replicas(request, big):
    reps = start_replicas(big)
    yield reps
    failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
    for i, s in enumerate(reps.servers):
        s.stop()
        if failed:
            print(f"\n----- replica {i} ({reps.urls[i]}) stderr -----\n{s.stderr()[-8000:]}")


def connect(url: str, **kw) -> sheaf.Client:
    return sheaf.connect(url, timeout=TIMEOUT, read_timeout=TIMEOUT, **kw)


def with_locations(ds: sheaf.Dataset, locations: list[str]) -> sheaf.Dataset:
    """``ds`` with every endpoint's locations replaced (what a server with
    --advertise and --peer plans)."""
    twin = copy.copy(ds)
    twin._endpoints = tuple(dataclasses.replace(e, locations=tuple(locations)) for e in ds.endpoints)
    return twin


def read_killing(ds: sheaf.Dataset, kill) -> tuple[int, pa.Table]:
    """Reads ``ds`` batch by batch, calling ``kill()`` once the first batch
    arrived; returns the rows read before the kill and the table read."""
    it = ds.to_batches(progress=False)
    first = next(it)
    kill()
    rest = list(it)
    return first.num_rows, pa.Table.from_batches([first, *rest], schema=ds.schema)


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    assert got.num_rows == expected.num_rows, f"{got.num_rows} rows, expected {expected.num_rows}"
    ids = got.column("id")
    if not ids.equals(expected.column("id")):
        values = ids.to_numpy()
        bad = next(i for i, v in enumerate(values) if v != i)
        pytest.fail(f"rows out of order, lost or repeated: row {bad} has id {values[bad]}")
    assert got.equals(expected), "same ids but other values"


# ---------------------------------------------------------------------------
# What a killed replica looks like to pyarrow
# ---------------------------------------------------------------------------


def test_a_killed_replica_is_a_replica_failure(replicas, big):
    """pyarrow reports a server SIGKILLed in the middle of a DoGet as
    FlightUnavailableError ("Stream removed (Socket closed)" or "...Connection
    reset by peer"), and a call to it afterwards as FlightUnavailableError
    ("failed to connect"): both are replica failures for the client."""
    c = flight.FlightClient(replicas.urls[0])
    try:
        info = c.get_flight_info(flight.FlightDescriptor.for_command(URI), flight.FlightCallOptions(timeout=TIMEOUT))
        reader = c.do_get(info.endpoints[0].ticket, flight.FlightCallOptions(timeout=TIMEOUT))
        rows = reader.read_chunk().data.num_rows
        replicas.kill(0)
        with pytest.raises(flight.FlightUnavailableError) as e:
            while True:
                rows += reader.read_chunk().data.num_rows
        assert rows < ROWS
        err = from_flight(e.value, "reading")
        assert isinstance(err, sheaf.UnavailableError) and is_replica_failure(err), repr(e.value)
        assert any(s in str(e.value) for s in ("Stream removed", "Socket closed", "Connection reset")), repr(e.value)
        with pytest.raises(flight.FlightUnavailableError) as e:
            c.do_get(info.endpoints[0].ticket, flight.FlightCallOptions(timeout=TIMEOUT)).read_all()
        assert is_replica_failure(from_flight(e.value, "reading")), repr(e.value)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Failover with endpoints built here (every binary)
# ---------------------------------------------------------------------------


def test_a_replica_killed_mid_stream_the_read_resumes_at_the_next(replicas, big):
    with connect(replicas.urls[2]) as client:
        ds = with_locations(client.dataset(URI, partitions=1), replicas.urls)
        assert len(ds.endpoints) == 1
        before, got = read_killing(ds, lambda: replicas.kill(0))
    assert before < ROWS
    assert_same_rows(got, big.expected)
    assert len(replicas.do_gets(1)) == 1, "the second location did not serve the rest"
    assert replicas.do_gets(2) == [], "the third location was read too"


def test_two_replicas_killed_the_third_serves(replicas, big):
    with connect(replicas.urls[2]) as client:
        ds = with_locations(client.dataset(URI, partitions=1), replicas.urls)

        def kill():
            replicas.kill(0)
            replicas.kill(1)

        before, got = read_killing(ds, kill)
    assert before < ROWS
    assert_same_rows(got, big.expected)
    assert len(replicas.do_gets(2)) == 1


def test_to_table_of_several_endpoints_with_a_replica_killed(replicas, big, monkeypatch):
    """to_table reads 4 endpoints on 4 threads; the first location of all of
    them is killed when the first batch of any arrived (and the reading is
    slowed down, so every stream is still running)."""
    killed = []

    class KillOnFirstBatch:
        def update(self, n: int = 1) -> None:
            if not killed:
                killed.append(n)
                replicas.kill(0)
            time.sleep(0.002)

        def close(self) -> None:
            pass

    monkeypatch.setattr(sheaf.dataset, "progress_bar", lambda enabled, total, desc: KillOnFirstBatch())
    with connect(replicas.urls[2]) as client:
        ds = with_locations(client.dataset(URI, partitions=4), replicas.urls)
        assert len(ds.endpoints) == 4
        got = ds.to_table(max_workers=4)
    assert killed
    assert_same_rows(got, big.expected)
    # The endpoints whose stream A had not finished were resumed at B (all four, unless one was
    # already in the client's buffers when A died), none at C.
    assert 1 <= len(replicas.do_gets(1)) <= 4 and replicas.do_gets(2) == []


def test_every_location_failing_raises_one_error_naming_them(replicas, big):
    with connect(replicas.urls[2]) as client:
        ds = with_locations(client.dataset(URI, partitions=1), replicas.urls[:2])
        it = ds.to_batches(progress=False)
        got = [next(it)]
        replicas.kill(0)
        replicas.kill(1)
        with pytest.raises(sheaf.UnavailableError) as e:
            for batch in it:
                got.append(batch)
    message = str(e.value)
    assert "endpoint 0" in message and "every location failed" in message, message
    for url in replicas.urls[:2]:
        assert message.count(url) == 1, f"{url} not named once: {message}"
    assert replicas.urls[2] not in message
    delivered = sum(b.num_rows for b in got)
    assert f"after {delivered:,} rows" in message, message
    # What was delivered before the error is the table's first rows, once each.
    assert_same_rows(pa.Table.from_batches(got, schema=ds.schema), big.expected.slice(0, delivered))


def sheaf_errors(ds: sheaf.Dataset) -> list[tuple[bytes, type[sheaf.SheafError]]]:
    """Tickets every replica refuses with a Sheaf error: not a ticket at all,
    and a ticket of a revision that does not exist."""
    ticket = sheaf_pb2.Ticket()
    ticket.ParseFromString(ds.endpoints[0].ticket)
    ticket.top_hash = "0" * 64
    return [(b"not a ticket", sheaf.InvalidArgumentError), (ticket.SerializeToString(), sheaf.NotFoundError)]


def test_sheaf_errors_are_raised_not_retried(replicas, big):
    with connect(replicas.urls[2]) as client:
        ds = client.dataset(URI, partitions=1)
        for ticket, cls in sheaf_errors(ds):
            bad = copy.copy(ds)
            bad._endpoints = (sheaf.Endpoint(0, ticket, tuple(replicas.urls)),)
            with pytest.raises(cls) as e:
                bad.to_table()
            assert "every location" not in str(e.value)
    assert len(replicas.do_gets(0)) == 2 and all('outcome="OK"' not in line for line in replicas.do_gets(0))
    assert replicas.do_gets(1) == [] and replicas.do_gets(2) == [], "a Sheaf error was retried elsewhere"


def test_a_resumed_read_fills_the_cache_with_the_whole_endpoint(replicas, big, tmp_path):
    with connect(replicas.urls[2], cache=tmp_path / "cache") as client:
        ds = with_locations(client.dataset(URI, partitions=1), replicas.urls[:2])
        _, got = read_killing(ds, lambda: replicas.kill(0))
        assert_same_rows(got, big.expected)
        assert client.cache.info().entries == 1
        replicas.kill(1)  # no replica of the endpoint is left: only the cache can answer
        assert_same_rows(ds.to_table(), big.expected)
        assert client.cache.stats.hits == 1


def test_a_read_failing_everywhere_stores_nothing(replicas, big, tmp_path):
    with connect(replicas.urls[2], cache=tmp_path / "cache") as client:
        ds = with_locations(client.dataset(URI, partitions=1), replicas.urls[:2])
        with pytest.raises(sheaf.UnavailableError):
            read_killing(ds, lambda: (replicas.kill(0), replicas.kill(1)))
        assert client.cache.info().entries == 0


# ---------------------------------------------------------------------------
# The endpoints the replicas plan (binaries with --advertise/--peer)
# ---------------------------------------------------------------------------


def planned_with_every_replica(client: sheaf.Client, urls: list[str], **params) -> sheaf.Dataset:
    """The dataset planned once every replica is a healthy peer of the
    planning one (each endpoint lists each replica once)."""
    deadline = time.monotonic() + 30
    while True:
        ds = client.dataset(URI, **params)
        if all(sorted(e.locations) == sorted(urls) for e in ds.endpoints):
            return ds
        if time.monotonic() > deadline:
            pytest.fail(
                f"endpoints did not list every replica {urls} within 30 s: {[e.locations for e in ds.endpoints]}"
            )
        time.sleep(0.5)


@pytest.fixture
def peers(request, big):
    if not has_peers():
        pytest.skip(f"{sheaf_bin()} has no --peer (a server without the replica flags)")
    reps = start_replicas(big, peers=True)
    yield reps
    failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
    for i, s in enumerate(reps.servers):
        s.stop()
        if failed:
            print(f"\n----- replica {i} ({reps.urls[i]}) stderr -----\n{s.stderr()[-8000:]}")


def test_the_replicas_endpoints_fail_over(peers, big):
    with connect(peers.urls[0]) as client:
        ds = planned_with_every_replica(client, peers.urls, partitions=1)
        first = ds.endpoints[0].locations[0]
        serving = peers.urls.index(first)
        before, got = read_killing(ds, lambda: peers.kill(serving))
    assert before < ROWS
    assert_same_rows(got, big.expected)
    second = peers.urls.index(ds.endpoints[0].locations[1])
    assert len(peers.do_gets(second)) == 1, "the endpoint's second location did not serve the rest"


# ---------------------------------------------------------------------------
# The endpoint policy in the middle of a stream, rule by rule, against the
# in-process fake servers of fakes.py (no sheaf serve)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail_after", "a_rows", "b_rows"),
    [
        (8, 4, 5),  # the cut inside B's second batch: sliced
        (10, 5, 5),  # on a batch boundary of both
        (0, 4, 5),  # before the first batch
        (23, 4, 5),  # after the last row, before the end of the stream
    ],
)
def test_a_replica_failing_mid_stream_resumes_at_the_next_location(
    fake, other, fake_client, fail_after, a_rows, b_rows
):
    fake.endpoints = [(0, 23, [other.url, fake.url]), (23, 4, [other.url, fake.url])]
    other.batch_rows, other.fail_after, other.stream_error = a_rows, fail_after, unavailable
    fake.batch_rows = b_rows
    ds = fake_client.dataset(package="x/y", path="t")
    assert ids_of(ds.to_batches(progress=False)) == list(range(27))
    assert other.gets == [b"0:23", b"23:4"] and fake.gets == [b"0:23", b"23:4"]
    assert ds.to_table(max_workers=2).column("id").to_pylist() == list(range(27))


def test_transport_failures_reported_as_internal_fail_over(fake, other, fake_client):
    fake.endpoints = [(0, 20, [other.url, fake.url])]
    other.batch_rows, other.fail_after = 3, 6
    other.stream_error = lambda: flight.FlightInternalError("Received RST_STREAM with error code 2")
    assert fake_client.dataset(package="x/y", path="t").to_table().column("id").to_pylist() == list(range(20))
    assert fake.gets == [b"0:20"]


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (lambda: flight.FlightServerError("x", extra_info=status_details("INTEGRITY", 15, "hash mismatch")), None),
        (lambda: flight.FlightServerError("x", extra_info=status_details("INTERNAL", 13, "a bug")), None),
        (lambda: flight.FlightTimedOutError("query timeout"), sheaf.DeadlineExceededError),
        (lambda: flight.FlightInternalError("a bug without details"), sheaf.SheafError),
        (lambda: pa.ArrowInvalid("bad request"), sheaf.InvalidArgumentError),
    ],
)
def test_sheaf_errors_in_the_middle_of_a_stream_are_raised_not_retried(fake, other, fake_client, error, cls):
    fake.endpoints = [(0, 20, [other.url, fake.url])]
    other.batch_rows, other.fail_after, other.stream_error = 4, 8, error
    got = []
    with pytest.raises(sheaf.SheafError) as e:
        for batch in fake_client.dataset(package="x/y", path="t").to_batches(progress=False):
            got.append(batch)
    assert not isinstance(e.value, sheaf.UnavailableError)
    if cls is not None:
        assert isinstance(e.value, cls)
    else:
        assert e.value.reason in ("INTEGRITY", "INTERNAL")
    assert ids_of(got) == list(range(8))
    assert fake.gets == [], "a Sheaf error was retried at the next location"


def test_each_location_once_then_one_error_naming_them(fake, other, third, fake_client):
    dead = f"grpc://127.0.0.1:{free_port()}"
    locations = [other.url, third.url, dead, other.url]  # other listed twice: tried once
    fake.endpoints = [(0, 30, locations)]
    other.batch_rows, other.fail_after, other.stream_error = 4, 8, unavailable
    third.batch_rows, third.fail_after, third.stream_error = 5, 15, unavailable
    got = []
    with pytest.raises(sheaf.UnavailableError) as e:
        for batch in fake_client.dataset(package="x/y", path="t").to_batches(progress=False):
            got.append(batch)
    assert ids_of(got) == list(range(15)), "rows lost or repeated before the failure"
    message = str(e.value)
    assert "endpoint 0" in message and "every location failed" in message
    for where in (other.url, third.url, dead):
        assert message.count(where) == 1, f"{where} not named once in {message}"
    assert "after 8 rows" in message and "after 15 rows" in message
    assert other.gets == [b"0:30"] and third.gets == [b"0:30"] and fake.gets == []


def test_one_location_failing_mid_stream_raises_its_own_error(fake, fake_client):
    fake.endpoints = [(0, 10, [])]
    fake.batch_rows, fake.fail_after, fake.stream_error = 3, 6, unavailable
    with pytest.raises(sheaf.UnavailableError, match="Socket closed") as e:
        fake_client.dataset(package="x/y", path="t").to_table()
    assert "every location" not in str(e.value)
    assert fake.gets == [b"0:10"], "the one location was tried again"
