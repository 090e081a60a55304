"""Replicas (issue 17): three `sheaf serve` on loopback over one S3 registry
(moto), each with --advertise for itself and --peer for the two others, read
with the Python client (clients/python), one replica killed (SIGKILL) in the
middle of the read:

- a streaming read (RecordBatchReader), `to_table` (endpoints on threads) and
  a PyTorch DataLoader epoch (in-process and with worker processes) return
  exactly the table's rows (order too, where the read has one);
- every endpoint lists every healthy replica once;
- SIGTERM with --drain-delay: the running stream finishes, /readyz turns 503
  at once (/healthz stays 200), the replica keeps answering during the delay,
  the other replicas stop listing it, and it exits 0;
- with an --auth file shared by the replicas, tickets and session tokens from
  one replica are redeemed at the others, and a read survives a kill there too.

The client must be installed from this checkout (clients/python/ci/test.sh
does it; `pip install './clients/python[torch]'` too): the tests fail, naming
the difference, when the installed one is another.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import auth_lib as al
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from ops_lib import http_get
from sheaf_testlib import BUCKET, REPO, SHEAF_BIN, FlightServer, Sheaf, base_env, free_port, start_server

REGISTRY = f"s3://{BUCKET}/replicas"
PACKAGE = "r/big"
TABLE = "big.parquet"
URI = f"sheaf://{PACKAGE}/{TABLE}"
#: Rows of the table: far more than socket and HTTP/2 buffers hold (27 MB as
#: Arrow), so a replica killed after its first batch has most of it to send.
ROWS = 1_000_000
TIMEOUT = 60.0
#: How long peers may take to notice a replica joining or leaving.
PEER_WAIT = 30.0


# ---------------------------------------------------------------------------
# The client, the data, the replicas
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pysheaf():
    """The Python client, which must be the checkout's (clients/python/src)."""
    try:
        import sheaf as client
        import sheaf.dataset
        import sheaf.torch  # noqa: F401 - the torch extra
    except ImportError as e:
        pytest.fail(
            f"the Python client with its torch extra is needed ({e}): install it with "
            "`bash clients/python/ci/test.sh` or `pip install './clients/python[torch]'`"
        )
    installed = Path(client.__file__).resolve().parent
    source = REPO / "clients" / "python" / "src" / "sheaf"
    if installed != source.resolve():
        stale = [
            str(p.relative_to(source))
            for p in sorted(source.rglob("*.py"))
            if "__pycache__" not in p.parts
            and not p.name.endswith("_pb2.py")
            and (
                not (installed / p.relative_to(source)).is_file()
                or hashlib.sha256((installed / p.relative_to(source)).read_bytes()).digest()
                != hashlib.sha256(p.read_bytes()).digest()
            )
        ]
        if stale:
            pytest.fail(
                f"the installed client at {installed} differs from {source} ({', '.join(stale)}): "
                "reinstall it (`pip install ./clients/python`)"
            )
    return client


@dataclass
class Data:
    env: dict[str, str]  # how sheaf reaches moto
    expected: pa.Table  # the table's rows, in order
    root: Path


@pytest.fixture(scope="module")
def data(moto, tmp_path_factory) -> Data:
    root = tmp_path_factory.mktemp("replicas")
    ids = pa.array(np.arange(ROWS, dtype=np.int64))
    table = pa.table(
        {
            "id": ids,
            "x": pc.multiply(ids.cast(pa.float64()), 0.25),
            "s": pc.binary_join_element_wise("r", ids.cast(pa.string()), ""),
        }
    )
    src = root / "src"
    src.mkdir()
    pq.write_table(table, src / TABLE, row_group_size=100_000)
    Sheaf(REGISTRY, moto["env"]).push(PACKAGE, src, "-m", "replicas")
    return Data(moto["env"], table, root)


def has_replica_flags() -> bool:
    r = subprocess.run([str(SHEAF_BIN), "serve", "--help"], capture_output=True, text=True, env=base_env(), timeout=60)
    return all(flag in r.stdout for flag in ("--peer", "--metrics-listen", "--drain-delay"))


@dataclass
class Cluster:
    """Replicas on fixed loopback ports (gRPC and --metrics-listen)."""

    servers: list[FlightServer]
    urls: list[str]
    metrics: list[str]  # http://127.0.0.1:PORT of each

    def index(self, url: str) -> int:
        return self.urls.index(url)

    def kill(self, i: int) -> None:
        """SIGKILL replica ``i`` and wait until it is gone."""
        proc = self.servers[i].proc
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def do_gets(self, i: int) -> list[str]:
        """Replica ``i``'s audit lines of DoGets (written when one ends)."""
        return [line for line in self.servers[i].stderr().splitlines() if "rpc=DoGet" in line]

    def http(self, i: int, path: str) -> tuple[int, str]:
        status, _, body = http_get(self.metrics[i] + path)
        return status, body

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


def start_cluster(data: Data, log_dir: Path, *args: str, n: int = 3) -> Cluster:
    if not has_replica_flags():
        pytest.fail(f"{SHEAF_BIN} has no --peer/--metrics-listen/--drain-delay: build the current source")
    ports = [free_port() for _ in range(n)]
    metrics_ports = [free_port() for _ in range(n)]
    urls = [f"grpc://127.0.0.1:{p}" for p in ports]
    servers: list[FlightServer] = []
    try:
        for i, port in enumerate(ports):
            peers = [a for u in urls if u != urls[i] for a in ("--peer", u)]
            server = start_server(
                REGISTRY,
                "--advertise",
                urls[i],
                *peers,
                "--metrics-listen",
                f"127.0.0.1:{metrics_ports[i]}",
                *args,
                env=data.env,
                log_dir=log_dir,
                listen=f"127.0.0.1:{port}",
            )
            assert server.url == urls[i], f"replica {i} listens on {server.url}, not {urls[i]}"
            servers.append(server)
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return Cluster(servers, urls, [f"http://127.0.0.1:{p}" for p in metrics_ports])


@pytest.fixture
def cluster(data, tmp_path):
    c = start_cluster(data, tmp_path / "logs")
    yield c
    c.stop()


def planned(client, urls: list[str], **params):
    """The dataset planned once the replica ``client`` asks lists every one
    of ``urls`` in every endpoint (peers join when their health check answers)."""
    deadline = time.monotonic() + PEER_WAIT
    while True:
        ds = client.dataset(URI, **params)
        if all(sorted(e.locations) == sorted(urls) for e in ds.endpoints):
            return ds
        if time.monotonic() > deadline:
            pytest.fail(
                f"endpoints do not list the replicas {urls} after {PEER_WAIT}s: {[e.locations for e in ds.endpoints]}"
            )
        time.sleep(0.5)


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds}s for {what}")
        time.sleep(0.1)


def connect(pysheaf, url: str, **kw):
    return pysheaf.connect(url, timeout=TIMEOUT, read_timeout=TIMEOUT, **kw)


def assert_same_rows(got: pa.Table, expected: pa.Table, what: str) -> None:
    assert got.num_rows == expected.num_rows, f"{what}: {got.num_rows} rows, expected {expected.num_rows}"
    ids = got.column("id")
    if not ids.equals(expected.column("id")):
        values = ids.to_numpy()
        bad = int(np.flatnonzero(values != np.arange(len(values)))[0])
        pytest.fail(f"{what}: rows out of order, lost or repeated: row {bad} has id {values[bad]}")
    assert got.equals(expected), f"{what}: the same ids with other values"


# ---------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------


def test_every_endpoint_lists_every_replica_once(pysheaf, cluster):
    for url in cluster.urls:
        with connect(pysheaf, url) as client:
            ds = planned(client, cluster.urls, partitions=4)
            assert len(ds.endpoints) == 4
            for e in ds.endpoints:
                assert len(set(e.locations)) == len(e.locations) == 3, e.locations
    # The same ticket is placed first on the same replica whoever plans it.
    firsts = set()
    for url in cluster.urls:
        with connect(pysheaf, url) as client:
            firsts.add(tuple(e.locations[0] for e in planned(client, cluster.urls, partitions=4).endpoints))
    assert len(firsts) == 1, f"replicas disagree about the first location of each endpoint: {firsts}"


# ---------------------------------------------------------------------------
# A replica killed in the middle of a read
# ---------------------------------------------------------------------------


def test_streaming_read_survives_the_serving_replica_killed(pysheaf, cluster, data):
    with connect(pysheaf, cluster.urls[0]) as client:
        ds = planned(client, cluster.urls, partitions=1)
        serving = cluster.index(ds.endpoints[0].locations[0])
        then = cluster.index(ds.endpoints[0].locations[1])
        reader = ds.to_reader(progress=False)
        assert isinstance(reader, pa.RecordBatchReader)
        first = reader.read_next_batch()
        cluster.kill(serving)
        rest = list(reader)
    assert first.num_rows < ROWS
    assert_same_rows(pa.Table.from_batches([first, *rest], schema=ds.schema), data.expected, "the streaming read")
    assert len(cluster.do_gets(then)) == 1, "the endpoint's second location did not serve the rest"


def test_to_table_survives_a_replica_killed(pysheaf, cluster, data, monkeypatch):
    """Four endpoints read on four threads; the first location of endpoint 0
    is killed when the first batch of any endpoint arrived (the reading is
    slowed down, so the streams are still running)."""
    killed: list[int] = []
    victim: list[int] = []

    class KillOnFirstBatch:
        def update(self, n: int = 1) -> None:
            if not killed:
                killed.append(n)
                cluster.kill(victim[0])
            time.sleep(0.005)

        def close(self) -> None:
            pass

    monkeypatch.setattr(pysheaf.dataset, "progress_bar", lambda enabled, total, desc: KillOnFirstBatch())
    with connect(pysheaf, cluster.urls[1]) as client:
        ds = planned(client, cluster.urls, partitions=4)
        victim.append(cluster.index(ds.endpoints[0].locations[0]))
        got = ds.to_table(max_workers=4)
    assert killed
    assert_same_rows(got, data.expected, "to_table")


def torch_loader(pysheaf, client, workers: int, **kw):
    """A DataLoader of the table's id and x, 4,096 rows a batch."""
    ds = client.dataset(URI, columns=["id", "x"]).to_torch(batch_size=4096, **kw)
    options = {"multiprocessing_context": "forkserver", "timeout": 120} if workers else {}
    return pysheaf.torch.DataLoader(ds, num_workers=workers, **options)


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_epoch_survives_a_replica_killed(pysheaf, cluster, data, workers, caplog):
    """An epoch of a DataLoader (in-process, and two worker processes) with a
    replica killed after the first batch: every row exactly once (in table
    order without a shuffle). The client plans blocks at the replica it is
    connected to (replica 0); replica 1 is killed: the blocks placed first on
    it are read at their next location."""
    caplog.set_level(logging.INFO, logger="sheaf")
    shuffle = workers > 0
    with connect(pysheaf, cluster.urls[0]) as client:
        planned(client, cluster.urls)
        loader = torch_loader(pysheaf, client, workers, shuffle=shuffle, seed=7)
        ids, xs = [], []
        for i, batch in enumerate(loader):
            ids.append(batch["id"].numpy())
            xs.append(batch["x"].numpy())
            if i == 0:
                cluster.kill(1)
            time.sleep(0.002)
    ids_all, xs_all = np.concatenate(ids), np.concatenate(xs)
    assert len(ids_all) == ROWS, f"{len(ids_all)} rows in the epoch, expected {ROWS}"
    if shuffle:
        counts = np.bincount(ids_all, minlength=ROWS)
        assert counts.max() == 1 and counts.min() == 1, "rows lost or repeated"
        assert not np.array_equal(ids_all, np.arange(ROWS))
    else:
        assert np.array_equal(ids_all, np.arange(ROWS)), "rows out of order, lost or repeated"
    assert np.array_equal(xs_all, ids_all * 0.25)
    if not workers:  # in this process: the failovers were logged
        moved = [r.getMessage() for r in caplog.records if cluster.urls[1] in r.getMessage()]
        assert moved, "no read moved away from the killed replica"


# ---------------------------------------------------------------------------
# SIGTERM: drain
# ---------------------------------------------------------------------------


def test_sigterm_drains(pysheaf, data, tmp_path):
    """SIGTERM during a stream, with --drain-delay 4s: /readyz answers 503 at
    once (/healthz 200), the replica still answers during the delay, the other
    replicas stop listing it within a few seconds, it refuses new connections
    after the delay, the stream (read slowly, past the delay) finishes with
    every row, and the replica exits 0."""
    c = start_cluster(data, tmp_path / "logs", "--drain-delay", "4s")
    try:
        draining = 2
        others = [0, 1]
        for i in range(3):  # ready once the registry answered
            wait_for(lambda i=i: c.http(i, "/readyz")[0] == 200, 15, f"replica {i}'s /readyz to answer 200")
            assert c.http(i, "/healthz")[0] == 200
        with connect(pysheaf, c.urls[0]) as client:
            ds = planned(client, c.urls, partitions=1)
        ticket = ds.endpoints[0].ticket
        fc = flight.FlightClient(c.urls[draining])
        try:
            reader = fc.do_get(flight.Ticket(ticket), flight.FlightCallOptions(timeout=TIMEOUT))
            batches = [reader.read_chunk().data]
            sent = time.monotonic()
            c.servers[draining].proc.send_signal(signal.SIGTERM)

            # Readiness turns false at once; liveness stays.
            deadline = time.monotonic() + 2
            while c.http(draining, "/readyz")[0] != 503:
                assert time.monotonic() < deadline, "/readyz still answers 200 2 s after SIGTERM"
                time.sleep(0.05)
            assert c.http(draining, "/healthz")[0] == 200
            # Still accepting during the drain delay.
            assert time.monotonic() - sent < 3, "too slow to check the drain delay"
            info = fc.get_flight_info(
                flight.FlightDescriptor.for_command(URI), flight.FlightCallOptions(timeout=TIMEOUT)
            )
            assert info.total_records == ROWS

            # The running stream, read slowly (about 8 s) past the drain delay.
            failed: list[BaseException] = []

            def read_rest() -> None:
                try:
                    for chunk in reader:
                        batches.append(chunk.data)
                        time.sleep(0.4)
                except BaseException as e:  # noqa: BLE001 - reported below
                    failed.append(e)

            rest = threading.Thread(target=read_rest)
            rest.start()

            # The others stop listing it.
            gone = c.urls[draining]
            deadline = time.monotonic() + PEER_WAIT
            for i in others:
                with connect(pysheaf, c.urls[i]) as client:
                    while True:
                        locs = [e.locations for e in client.dataset(URI, partitions=2).endpoints]
                        if all(gone not in ls and len(ls) == 2 for ls in locs):
                            break
                        assert time.monotonic() < deadline, f"replica {i} still lists {gone}: {locs}"
                        time.sleep(0.25)
            # Past the delay it stops accepting (a new connection is refused); the stream goes on.
            wait_for(lambda: time.monotonic() - sent > 5, 10, "the drain delay to pass")
            assert rest.is_alive(), "the stream ended before the drain delay passed: read it more slowly"
            late = flight.FlightClient(gone)
            try:
                with pytest.raises(flight.FlightUnavailableError):
                    late.get_flight_info(flight.FlightDescriptor.for_command(URI), flight.FlightCallOptions(timeout=10))
            finally:
                late.close()
            rest.join(timeout=120)
            assert not rest.is_alive(), "the running stream did not finish"
            assert not failed, f"the running stream failed: {failed}"
        finally:
            fc.close()
        assert_same_rows(pa.Table.from_batches(batches), data.expected, "the stream running at SIGTERM")
        assert c.servers[draining].proc.wait(timeout=60) == 0, c.servers[draining].stderr()[-4000:]
    finally:
        c.stop()


# ---------------------------------------------------------------------------
# Tickets and sessions across replicas (--auth)
# ---------------------------------------------------------------------------


@pytest.fixture
def secured(data, tmp_path):
    token = al.new_token("trainer")
    user = al.User("ana", "ana-pw-" + os.urandom(8).hex(), ["readers"])
    config = al.Config(
        key=al.remember("replicas-key-" + os.urandom(24).hex()),
        users=[user],
        tokens=[(token, ["readers"])],
        grants=[al.grant("group:readers", "r/*", "read")],
    )
    cfg = config.write(tmp_path / "auth.toml")
    c = start_cluster(data, tmp_path / "logs", "--auth", str(cfg))
    yield c, token, user
    c.stop()


def only_at(ds, url: str):
    """``ds`` with every endpoint read at ``url`` alone."""
    twin = copy.copy(ds)
    twin._endpoints = tuple(dataclasses.replace(e, locations=(url,)) for e in ds.endpoints)
    return twin


def test_tickets_and_sessions_are_redeemed_at_every_replica(pysheaf, secured, data):
    c, token, user = secured
    # A session token from replica 0's login, tickets planned by replica 0.
    with connect(pysheaf, c.urls[0], username=user.name, password=user.password) as client:
        ds = planned(client, c.urls, partitions=2)
        for url in c.urls[1:]:
            assert_same_rows(only_at(ds, url).to_table(), data.expected, f"replica 0's tickets at {url}")
    # An API token; tickets planned by replica 2, redeemed at replica 1.
    with connect(pysheaf, c.urls[2], token=token.token) as client:
        ds = planned(client, c.urls, partitions=2)
        assert_same_rows(only_at(ds, c.urls[1]).to_table(), data.expected, "replica 2's tickets at replica 1")
    # Without credentials a replica refuses the same tickets (and no other location is tried).
    with connect(pysheaf, c.urls[1]) as anonymous:
        twin = copy.copy(ds)
        twin._client = anonymous
        with pytest.raises(pysheaf.UnauthenticatedError):
            twin.to_table()


def test_a_kill_under_auth_resumes_at_another_replica(pysheaf, secured, data):
    c, token, _ = secured
    with connect(pysheaf, c.urls[0], token=token.token) as client:
        ds = planned(client, c.urls, partitions=1)
        serving = c.index(ds.endpoints[0].locations[0])
        then = c.index(ds.endpoints[0].locations[1])
        it = ds.to_batches(progress=False)
        first = next(it)
        c.kill(serving)
        got = pa.Table.from_batches([first, *it], schema=ds.schema)
    assert_same_rows(got, data.expected, "a signed ticket resumed at another replica")
    assert any('outcome="OK"' in line for line in c.do_gets(then)), "the second location did not serve the rest"
