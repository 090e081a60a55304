"""A frozen replica: real `sheaf serve` processes stopped with SIGSTOP (the
process keeps its sockets open and answers nothing, as a hung or swapped-out
server does). HTTP/2 keepalive (`sheaf.connect(keepalive=)`, on by default)
finds it: its connection's pings go unanswered, gRPC fails the read as
UNAVAILABLE and the read moves to the next location; a live server that sends
nothing for long (computing, or held back by a slow consumer) answers the pings
and is waited for. The stall timeout (`sheaf.connect(stall_timeout=)`, off by
default) gives up on a location that sent nothing for that long while the read
waited for it, and fails over to the next one; a caller slow to ask for
batches is never a stall. Replicas are started as in test_failover.py."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import sheaf
from sheaf import _fork
from sheaf._failover import is_replica_failure

from conftest import TIMEOUT, Server, free_port, run_sheaf, start_server

#: Rows of the table read: far more than a socket and HTTP/2 window hold, so
#: a replica frozen after the first batch has most of the stream left to send.
ROWS = 2_000_000
URI = "sheaf://test/big/big.parquet"
STALL = 3.0
#: Keepalive of the keepalive tests: a ping after 1 s of silence, 2 s to answer it.
KEEPALIVE = 1.0


@dataclasses.dataclass
class Big:
    registry: Path
    root: Path
    expected: pa.Table


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Big:
    root = tmp_path_factory.mktemp("stall")
    registry = root / "registry"
    registry.mkdir()
    ids = pa.array(range(ROWS), pa.int64())
    table = pa.table({"id": ids, "x": pc.multiply(ids.cast(pa.float64()), 0.25)})
    src = root / "src"
    src.mkdir()
    pq.write_table(table, src / "big.parquet", row_group_size=100_000)
    run_sheaf(registry, "push", "test/big", str(src), "-m", "big")
    return Big(registry, root, table)


@dataclasses.dataclass
class Pair:
    """Two replicas of one registry."""

    servers: list[Server]
    urls: list[str]

    def do_gets(self, i: int) -> list[str]:
        """Replica ``i``'s audit lines of DoGets (finished ones)."""
        return [line for line in self.servers[i].stderr().splitlines() if "rpc=DoGet" in line]


@pytest.fixture
def pair(request, big):
    servers: list[Server] = []
    try:
        for _ in range(2):
            port = free_port()
            servers.append(start_server(big.registry, big.root / f"replica-{port}.log", listen=f"127.0.0.1:{port}"))
        yield Pair(servers, [s.url for s in servers])
    finally:
        failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
        for i, s in enumerate(servers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(s.proc.pid, signal.SIGCONT)
            s.stop()
            if failed:
                print(f"\n----- replica {i} ({s.url}) stderr -----\n{s.stderr()[-8000:]}")


def with_locations(ds: sheaf.Dataset, locations: list[str]) -> sheaf.Dataset:
    """``ds`` with every endpoint's locations replaced (what replicas with --advertise and --peer plan)."""
    twin = copy.copy(ds)
    twin._endpoints = tuple(dataclasses.replace(e, locations=tuple(locations)) for e in ds.endpoints)
    return twin


def assert_same_rows(got: pa.Table, expected: pa.Table) -> None:
    assert got.num_rows == expected.num_rows, f"{got.num_rows} rows, expected {expected.num_rows}"
    assert got.column("id").equals(expected.column("id")), "rows out of order, lost or repeated"
    assert got.equals(expected)


@contextlib.contextmanager
def frozen(server):
    """``server`` stopped (SIGSTOP) inside the block, continued after."""
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def connect(url: str, **kw) -> sheaf.Client:
    return sheaf.connect(url, timeout=TIMEOUT, read_timeout=TIMEOUT, **kw)


def bounded(fn, seconds: float):
    """``fn()`` on a thread, failing the test if it does not return within ``seconds`` (a hang)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"still blocked after {seconds} s: the frozen replica hung the read")
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_replica_frozen_mid_stream_fails_over_to_the_next(pair, big):
    with connect(pair.urls[1], stall_timeout=STALL) as client:
        ds = with_locations(client.dataset(URI, partitions=1), pair.urls)
        it = ds.to_batches(progress=False)
        first = next(it)
        with frozen(pair.servers[0]):
            start = time.monotonic()
            rest = bounded(lambda: list(it), STALL + 30)
            waited = time.monotonic() - start
    assert_same_rows(pa.Table.from_batches([first, *rest], schema=ds.schema), big.expected)
    assert STALL - 0.5 <= waited < STALL + 20, waited
    assert len(pair.do_gets(1)) == 1, "the second location did not serve the rest"


def test_a_frozen_replica_is_given_up_on_when_the_stream_opens(pair, big):
    """The connection to the frozen replica is already open (an earlier read):
    a new DoGet there waits for an answer that never comes."""
    with connect(pair.urls[1], stall_timeout=STALL) as client:
        ds = with_locations(client.dataset(URI, partitions=1, columns=["id"], limit=1000), pair.urls)
        assert ds.to_table().num_rows == 1000  # at the first location: its connection is open
        with frozen(pair.servers[0]):
            got = bounded(ds.to_table, STALL + 30)
        assert got.column("id").to_pylist() == list(range(1000))


def test_every_location_frozen_raises_a_stall_error_naming_them(pair, big):
    with connect(pair.urls[1], stall_timeout=STALL) as client:
        ds = with_locations(client.dataset(URI, partitions=1), pair.urls)
        it = ds.to_batches(progress=False)
        next(it)
        with frozen(pair.servers[0]), frozen(pair.servers[1]):
            with pytest.raises(sheaf.StalledError) as e:
                bounded(lambda: [None for _ in it], 2 * STALL + 30)
    err = e.value
    assert isinstance(err, sheaf.DeadlineExceededError) and isinstance(err, TimeoutError)
    message = str(err)
    assert "endpoint 0" in message and "every location failed" in message, message
    assert f"stall_timeout={STALL:g}" in message, message
    for url in pair.urls:
        assert message.count(url) == 1, message
    assert " rows)" in message, message  # the rows delivered before the first location stalled


def test_one_frozen_location_raises_its_stall_error(pair, big):
    with connect(pair.urls[0], stall_timeout=STALL) as client:
        ds = client.dataset(URI, partitions=1, columns=["id"])
        it = ds.to_batches(progress=False)
        next(it)
        with frozen(pair.servers[0]):
            with pytest.raises(sheaf.StalledError) as e:
                bounded(lambda: [None for _ in it], STALL + 30)
    message = str(e.value)
    assert is_replica_failure(e.value)
    assert f"endpoint 0 at {pair.urls[0]}" in message and f"nothing for {STALL:g} s" in message, message


def test_a_slow_consumer_is_not_a_stall(pair, big):
    """Time the caller holds a batch never counts: only waiting for the server does."""
    with connect(pair.urls[0], stall_timeout=1.0) as client:
        ds = with_locations(client.dataset(URI, partitions=1, columns=["id"]), pair.urls)
        rows = 0
        for i, batch in enumerate(ds.to_batches(progress=False)):
            rows += batch.num_rows
            if i < 3:
                time.sleep(1.5)  # longer than the stall timeout, between batches
        assert rows == ROWS
    assert pair.do_gets(1) == [], "a slow consumer made the read move to another location"


def test_no_stall_timeout_and_no_keepalive_waits(pair, big):
    """``stall_timeout=None, keepalive=None``: a frozen replica is waited for (until it comes back)."""
    with connect(pair.urls[1], stall_timeout=None, keepalive=None) as client:
        ds = with_locations(client.dataset(URI, partitions=1, columns=["id"]), pair.urls)
        it = ds.to_batches(progress=False)
        rows = next(it).num_rows
        os.kill(pair.servers[0].proc.pid, signal.SIGSTOP)
        threading.Timer(STALL + 1, lambda: os.kill(pair.servers[0].proc.pid, signal.SIGCONT)).start()
        rows += sum(b.num_rows for b in bounded(lambda: list(it), STALL + 30))
    assert rows == ROWS
    assert pair.do_gets(1) == [], "moved on without a stall timeout"


def test_a_cancelled_stall_keeps_nothing_of_grpc_alive_for_a_fork(pair, big):
    """Nothing keeps the stream the watchdog cancelled (its gRPC call): once
    the clients close for a fork, gRPC stops, as the fork guard
    (sheaf._fork) waits for; else a forked DataLoader worker would inherit
    gRPC mid-call and abort."""
    with connect(pair.urls[1], stall_timeout=STALL) as client:
        ds = with_locations(client.dataset(URI, partitions=1, columns=["id"]), pair.urls)
        it = ds.to_batches(progress=False)
        rows = next(it).num_rows
        with frozen(pair.servers[0]):
            rows += bounded(lambda: sum(b.num_rows for b in it), STALL + 30)
        assert rows == ROWS
        before = set(_fork._threads())
        assert any([c._close_for_fork() for c in list(_fork._LIVE)])
        assert _fork._settle(before), "gRPC still running after every client closed"
        assert _fork.grpc_threads() == 0


# ---------------------------------------------------------------------------
# Keepalive: a frozen replica is found without a stall timeout
# ---------------------------------------------------------------------------


def test_keepalive_leaves_a_replica_frozen_mid_stream(pair, big):
    with connect(pair.urls[1], stall_timeout=None, keepalive=KEEPALIVE) as client:
        ds = with_locations(client.dataset(URI, partitions=1), pair.urls)
        it = ds.to_batches(progress=False)
        first = next(it)
        with frozen(pair.servers[0]):
            start = time.monotonic()
            rest = bounded(lambda: list(it), 120)
            print(f"keepalive left the frozen replica after {time.monotonic() - start:.1f} s")
    assert_same_rows(pa.Table.from_batches([first, *rest], schema=ds.schema), big.expected)
    assert len(pair.do_gets(1)) == 1, "the second location did not serve the rest"


def test_keepalive_leaves_a_frozen_replica_when_the_stream_opens(pair, big):
    """The connection to the frozen replica is open (an earlier read); the
    new DoGet's pings go unanswered."""
    with connect(pair.urls[1], stall_timeout=None, keepalive=KEEPALIVE) as client:
        ds = with_locations(client.dataset(URI, partitions=1, columns=["id"], limit=1000), pair.urls)
        assert ds.to_table().num_rows == 1000  # at the first location: its connection is open
        with frozen(pair.servers[0]):
            got = bounded(ds.to_table, 120)
        assert got.column("id").to_pylist() == list(range(1000))
    assert len(pair.do_gets(1)) == 1


def test_keepalive_with_every_location_frozen_raises_unavailable_naming_them(pair, big):
    with connect(pair.urls[1], stall_timeout=None, keepalive=KEEPALIVE) as client:
        ds = with_locations(client.dataset(URI, partitions=1), pair.urls)
        it = ds.to_batches(progress=False)
        next(it)
        with frozen(pair.servers[0]), frozen(pair.servers[1]):
            with pytest.raises(sheaf.UnavailableError) as e:
                bounded(lambda: [None for _ in it], 120)
    message = str(e.value)
    assert "endpoint 0" in message and "every location failed" in message, message
    for url in pair.urls:
        assert message.count(url) == 1, message
    assert "ping timeout" in message, message


def test_keepalive_spares_a_slow_consumer(pair, big):
    """A consumer holding batches for longer than a ping's interval and
    timeout: the server, its flow-control window full, sends nothing
    meanwhile, and answers the pings (Sheaf's server has no limit on pings)."""
    with connect(pair.urls[0], stall_timeout=None, keepalive=KEEPALIVE) as client:
        ds = with_locations(client.dataset(URI, partitions=1, columns=["id"]), pair.urls)
        rows = 0
        for i, batch in enumerate(ds.to_batches(progress=False)):
            rows += batch.num_rows
            if i < 2:
                time.sleep(4 * KEEPALIVE)  # longer than a ping's interval and timeout together
        assert rows == ROWS
    assert pair.do_gets(1) == [], "keepalive took a live server for a dead one"


@pytest.fixture
def silent():
    """A live server (silent_server.py) sending nothing for 4 keepalive
    intervals before the stream opens, and as long again before its batch."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("silent_server.py")), str(4 * KEEPALIVE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("port "), f"silent_server.py did not start: {line!r}"
        yield f"grpc://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_keepalive_waits_for_a_live_server_that_computes_long(silent):
    with connect(silent, stall_timeout=None, keepalive=KEEPALIVE) as client:
        ds = client.dataset(package="x/y", path="t")
        assert ds.endpoints[0].rows == 10
        got = bounded(ds.to_table, 120)
    assert got.column("id").to_pylist() == list(range(10))
