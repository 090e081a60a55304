"""The client against a failing or hostile server: streams that contradict
their plan (ended early, too long, another schema) against an in-process fake
that misbehaves as the real server never does; cache entries swapped on disk;
indices, options and URLs the client must refuse itself. The frozen replica
(SIGSTOP) is in test_stall.py."""

from __future__ import annotations

import re
import shutil
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import sheaf
import sheaf.cache
from sheaf._cache import ticket_key
from sheaf._connection import keepalive_options
from sheaf._proto import sheaf_pb2
from sheaf.loader import Loader

import fakes
from conftest import TIMEOUT
from fakes import TOP, FakeSheaf, ids_of


class Hostile(FakeSheaf):
    """A FakeSheaf planning Sheaf tickets (so reads are cached) whose DoGet of
    the endpoint starting at ``bad_first`` misbehaves: ``short`` rows fewer
    (ending cleanly), ``extra`` rows more, or another schema
    (``schema_change`` of the table it should have sent)."""

    def __init__(self) -> None:
        super().__init__("hostile")
        self.bad_first: int | None = None
        self.short = 0
        self.extra = 0
        self.schema_change = None

    def get_flight_info(self, context, descriptor):
        info = super().get_flight_info(context, descriptor)
        endpoints = []
        for e, (first, rows, _) in zip(info.endpoints, self.endpoints, strict=True):
            ticket = sheaf_pb2.Ticket(package="x/y", top_hash=TOP, path="t", partition=len(endpoints))
            ticket.slices.add(logical_key="t", row_group_start=0, row_group_end=rows, first_row=first)
            endpoints.append(
                flight.FlightEndpoint(ticket.SerializeToString(), e.locations, app_metadata=e.app_metadata)
            )
        return flight.FlightInfo(
            info.schema, descriptor, endpoints, info.total_records, -1, app_metadata=info.app_metadata
        )

    def do_get(self, context, ticket):
        t = sheaf_pb2.Ticket()
        t.ParseFromString(ticket.ticket)
        first, rows = t.slices[0].first_row, t.slices[0].row_group_end
        with self.lock:
            self.gets.append(f"{first}:{rows}".encode())
        if first != self.bad_first:
            return flight.RecordBatchStream(pa.table({"id": pa.array(range(first, first + rows), pa.int64())}))
        table = pa.table({"id": pa.array(range(first, first + rows - self.short + self.extra), pa.int64())})
        if self.schema_change is not None:
            table = self.schema_change(table)
        # Several batches, so a reader would have yielded some before the end.
        return flight.GeneratorStream(table.schema, iter(table.to_batches(max_chunksize=100)))


@pytest.fixture
def hostile():
    server = Hostile()
    try:
        yield server
    finally:
        fakes.stop(server)


@pytest.fixture
def hostile_client(hostile):
    c = sheaf.connect(hostile.url, timeout=10, read_timeout=10)
    yield c
    c.close()


def two_endpoints(hostile: Hostile) -> None:
    hostile.endpoints = [(0, 1000, []), (1000, 1000, [])]
    hostile.bad_first = 1000


# ---------------------------------------------------------------------------
# A stream must hold the rows its plan says
# ---------------------------------------------------------------------------


def test_a_stream_ending_early_is_an_error_and_is_not_cached(hostile, tmp_path):
    two_endpoints(hostile)
    hostile.short = 600  # endpoint 1 ends cleanly after 400 of its 1000 rows
    with sheaf.connect(hostile.url, timeout=10, read_timeout=10, cache=tmp_path / "c") as client:
        ds = client.dataset(package="x/y", path="t")
        assert ds.num_rows == 2000 and [e.rows for e in ds.endpoints] == [1000, 1000]
        for read in (
            lambda: ds.to_table(),
            lambda: list(ds.to_batches(progress=False)),
            lambda: ds.to_table(max_workers=1),
            lambda: ds.to_table(),  # again: nothing short was stored
        ):
            with pytest.raises(sheaf.DataLossError) as e:
                read()
            message = str(e.value)
            assert "endpoint 1" in message and ds.pinned_uri in message, message
            assert "after 400 rows" in message and "1,000" in message, message
            assert e.value.code == "CLIENT" and e.value.reason is None
        # Only endpoint 0 (whole) is in the cache, never the short one.
        assert client.cache.get(ticket_key(ds.endpoints[1].ticket)) is None
        assert client.cache.info().entries == 1
        # An endpoint read alone is checked as well.
        with pytest.raises(sheaf.DataLossError, match="endpoint 1"):
            list(ds.read_endpoint(1))


def test_a_stream_with_more_rows_than_planned_is_an_error(hostile, hostile_client):
    two_endpoints(hostile)
    hostile.extra = 5
    ds = hostile_client.dataset(package="x/y", path="t")
    got = []
    with pytest.raises(sheaf.DataLossError) as e:
        for batch in ds.to_batches(progress=False):
            got.append(batch)
    assert "endpoint 1" in str(e.value) and "more than the 1,000 rows planned" in str(e.value), str(e.value)
    assert ids_of(got) == list(range(2000)), "the rows past the planned count were handed over"


def test_a_short_stream_is_fine_where_the_plan_gives_no_exact_count(hostile, hostile_client):
    """Under a filter (or sample=) the endpoints' table rows are not the rows
    read: the server states no `rows`, nothing to check against."""
    two_endpoints(hostile)
    hostile.short = 600
    ds = hostile_client.dataset(package="x/y", path="t", filter="id >= 0")
    assert [e.rows for e in ds.endpoints] == [None, None]
    assert ds.to_table().num_rows == 1400


def test_without_stated_rows_a_stream_shorter_than_its_table_rows_is_not_flagged(hostile, hostile_client):
    """The count checked is the server's `EndpointMetadata.rows` alone: an
    endpoint without it (a filtered read, as the server plans it) may return
    fewer rows than its `table_rows`, whatever the request looks like."""
    two_endpoints(hostile)
    hostile.stated_rows = [None, None]
    hostile.short = 600
    ds = hostile_client.dataset(package="x/y", path="t")
    assert [(e.table_rows, e.rows) for e in ds.endpoints] == [(1000, None), (1000, None)]
    assert ds.to_table().column("id").to_pylist() == list(range(1400))
    assert ids_of(ds.to_batches(progress=False)) == list(range(1400))
    assert ds.endpoint_rows() == [1000, 400]  # counted, not taken from table_rows


@pytest.mark.parametrize(("stated", "expected"), [(900, "more than the 900 rows planned"), (1200, "holds 1,200")])
def test_a_stream_disagreeing_with_the_stated_rows_is_an_error(hostile, hostile_client, stated, expected):
    """The stream is whole by its table rows, but the server stated another
    count (`EndpointMetadata.rows`): the stated count is what is checked."""
    two_endpoints(hostile)
    hostile.stated_rows = [1000, stated]
    ds = hostile_client.dataset(package="x/y", path="t", filter="id >= 0")  # the client infers nothing from the query
    assert [e.rows for e in ds.endpoints] == [1000, stated]
    with pytest.raises(sheaf.DataLossError) as e:
        ds.to_table()
    message = str(e.value)
    assert "endpoint 1" in message and expected in message, message
    assert ds.endpoint_rows() == [1000, stated]  # the plan's word, without reading


def test_the_training_loader_checks_the_rows_of_each_piece(hostile, hostile_client):
    two_endpoints(hostile)
    hostile.short = 600
    ds = hostile_client.dataset(package="x/y", path="t")
    with pytest.raises(sheaf.DataLossError, match="endpoint 1"):
        list(ds.to_numpy_batches(batch_size=500, shuffle=False, partitions=2))


# ---------------------------------------------------------------------------
# A stream must have the dataset's schema
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (lambda t: t.rename_columns(["y"]), "columns ['y'] instead of ['id']"),
        (lambda t: t.cast(pa.schema([("id", pa.int32())])), "column 'id' is int32 instead of int64"),
        (lambda t: t.append_column("x", t.column("id")), "columns ['id', 'x'] instead of ['id']"),
    ],
)
def test_a_stream_with_another_schema_is_an_error(hostile, hostile_client, change, difference):
    two_endpoints(hostile)
    hostile.schema_change = change
    ds = hostile_client.dataset(package="x/y", path="t")
    got = []
    with pytest.raises(sheaf.DataLossError) as e:
        for batch in ds.to_batches(progress=False):
            got.append(batch)
    assert "endpoint 1" in str(e.value) and difference in str(e.value), str(e.value)
    assert all(b.schema.equals(ds.schema) for b in got) and ids_of(got) == list(range(1000))
    with pytest.raises(sheaf.DataLossError, match="endpoint 1"):  # not a bare pyarrow ArrowInvalid
        ds.to_table()


# ---------------------------------------------------------------------------
# Cache entries are bound to their key
# ---------------------------------------------------------------------------

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def test_an_entry_copied_over_another_keys_is_dropped_and_read_again(data, tmp_path):
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=tmp_path / "c") as client:
        ds = client.dataset(NUMBERS, partitions=4)
        expected = ds.to_table()
        assert client.cache.info().entries == 4
        paths = [client.cache.entry_path(ticket_key(e.ticket)) for e in ds.endpoints]
        shutil.copyfile(paths[0], paths[1])  # a botched restore of the cache folder: a valid entry, CRC and all
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=tmp_path / "c") as client:
        ds = client.dataset(NUMBERS, partitions=4)
        assert ds.to_table().equals(expected)
        assert client.cache.stats.corrupt == 1  # dropped, read from the server, stored again
        assert ds.take([ds.endpoints[1].first_row]).column("id").to_pylist() == [ds.endpoints[1].first_row]
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=tmp_path / "c") as client:
        assert client.dataset(NUMBERS, partitions=4).to_table().equals(expected)
        assert client.cache.stats.corrupt == 0 and client.cache.stats.hits == 4


def test_cache_entries_of_another_key_or_of_none_are_not_trusted(tmp_path):
    cache = sheaf.cache.Cache(tmp_path / "c")
    a, b = "a" * 64, "b" * 64
    assert cache.put(a, pa.table({"x": [1, 2, 3]})) and cache.put(b, pa.table({"x": [4, 5, 6]}))
    shutil.copyfile(cache.entry_path(a), cache.entry_path(b))
    fresh = sheaf.cache.Cache(tmp_path / "c")
    assert fresh.get(a).column("x").to_pylist() == [1, 2, 3]
    assert fresh.get(b) is None and not cache.entry_path(b).exists() and fresh.stats.corrupt == 1
    # An entry written before entries were bound to their key (valid trailer and CRC, no key): a miss.
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": [7]}))
    body = sink.getvalue().to_pybytes()
    old = cache.entry_path("c" * 64)
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(body + struct.pack("<QII8s", len(body), zlib.crc32(body), 0, b"SHEAFCv1"))
    assert fresh.get("c" * 64) is None and not old.exists() and fresh.stats.corrupt == 2
    # The binding sits in the IPC footer: the trailer is the layout the Rust `sheaf cache` checks.
    raw = cache.entry_path(a).read_bytes()
    length, crc, flags, magic = sheaf.cache.TRAILER.unpack(raw[-24:])
    assert (length + 24, crc, flags, magic) == (len(raw), zlib.crc32(raw[:-24]), 0, b"SHEAFCv1")
    assert pa.ipc.open_file(pa.py_buffer(raw[:-24])).metadata == {b"sheaf.cache.key": a.encode()}


# ---------------------------------------------------------------------------
# Indices and options refused by the client
# ---------------------------------------------------------------------------


@pytest.fixture
def five(fake, fake_client):
    fake.endpoints = [(0, 5, [])]
    return fake_client.dataset(package="x/y", path="t")


@pytest.mark.parametrize(
    "indices",
    [
        np.array([2**64 - 1], dtype=np.uint64),
        np.array([0, 2**63], dtype=np.uint64),
        np.array([5], dtype=np.uint32),
        [10**20],
        [1, -(10**20)],
        [-1, 2**63],  # numpy would make floats of these
        range(2**70, 2**70 + 3),
    ],
)
def test_take_of_indices_beyond_int64_is_an_index_error_naming_them(five, fake, indices):
    with pytest.raises(IndexError) as e:
        five.take(indices)
    bad = next(int(i) for i in indices if not -5 <= int(i) < 5)
    assert f"index {bad} is out of range" in str(e.value), str(e.value)
    assert fake.gets == [], "rows were read"


@pytest.mark.parametrize("index", [10**20, -(10**20), 2**64 - 1, np.uint64(2**64 - 1), 5, -6])
def test_getitem_out_of_range_is_an_index_error(five, index):
    with pytest.raises(IndexError, match=f"index {int(index)} is out of range"):
        five[index]


def test_indices_in_range_still_work(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    n = ds.num_rows
    assert ds.take(np.array([4, 0], dtype=np.uint64)).column("id").to_pylist() == [4, 0]
    assert ds.take([-1, 2, 2**63 - 2**63]).column("id").to_pylist() == [n - 1, 2, 0]
    assert ds[-n] == {"id": 0} and ds[np.uint64(3)] == {"id": 3}


@pytest.mark.parametrize("workers", [-1, 0, 1.5, True])
def test_max_workers_must_be_positive(five, fake, workers):
    for call in (
        lambda: five.take([0], max_workers=workers),
        lambda: five.read_rows([(0, 2)], max_workers=workers),
        lambda: five.to_table(max_workers=workers),
    ):
        expected = re.escape(f"max_workers={workers!r}): give a positive number")
        with pytest.raises(sheaf.InvalidArgumentError, match=expected):
            call()
    assert fake.gets == []


@pytest.mark.parametrize("seed", [2**70, 2**64, -1, 1.5])
def test_loader_seeds_are_refused_as_the_datasets_are(five, fake, seed):
    with pytest.raises(sheaf.InvalidArgumentError):
        fake_dataset_with_seed(five, seed)
    planned = len(fake.commands)
    for make in (lambda: Loader(five, seed=seed), lambda: five.to_numpy_batches(seed=seed)):
        with pytest.raises(sheaf.InvalidArgumentError, match=f"seed={seed!r}: expected an integer from 0 to 2"):
            make()
    assert len(fake.commands) == planned, "planned before refusing the seed"


def fake_dataset_with_seed(ds: sheaf.Dataset, seed) -> sheaf.Dataset:
    return ds.client.dataset(package="x/y", path="t", sample_rows=2, seed=seed)


def test_loader_seeds_of_64_bits_are_taken(five):
    assert Loader(five, seed=2**64 - 1, batch_size=5).seed == 2**64 - 1


def test_torch_loader_refuses_the_seed_too(five):
    pytest.importorskip("torch")
    with pytest.raises(sheaf.InvalidArgumentError, match="seed=-1"):
        five.to_torch(batch_size=2, seed=-1)


# ---------------------------------------------------------------------------
# connect()
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["grpc://alice:S3cretPass!@127.0.0.1:47310", "grpc+tls://sheaf_T0kenV4lue@host:443", "grpc://alice@127.0.0.1:1"],
)
def test_a_url_with_credentials_is_refused_without_repeating_them(url):
    with pytest.raises(sheaf.InvalidArgumentError) as e:
        sheaf.connect(url)
    message = str(e.value)
    for secret in ("S3cretPass", "sheaf_T0kenV4lue", "alice"):
        assert secret not in message, message
    assert "username=" in message and "password=" in message and "token=" in message, message
    assert "...@" in message, message


@pytest.mark.parametrize("stall", [0, -1.0])
def test_stall_timeout_must_be_positive(stall):
    with pytest.raises(sheaf.InvalidArgumentError, match="stall_timeout"):
        sheaf.connect("grpc://127.0.0.1:1", stall_timeout=stall)


def test_stall_timeout_and_keepalive_defaults():
    spec = sheaf.connect("grpc://127.0.0.1:1").spec
    assert spec.stall_timeout is None and spec.keepalive == 10.0
    assert sheaf.connect("grpc://127.0.0.1:1", stall_timeout=60).spec.stall_timeout == 60.0
    assert sheaf.connect("grpc://127.0.0.1:1", keepalive=None).spec.keepalive is None
    assert keepalive_options(10.0) == [
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.ping_timeout_ms", 20_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 0),
    ]
    assert keepalive_options(None) == []


@pytest.mark.parametrize("keepalive", [0, -1.0, True, "10", 1e12])
def test_keepalive_must_be_a_positive_number_of_seconds(keepalive):
    with pytest.raises(sheaf.InvalidArgumentError, match="keepalive"):
        sheaf.connect("grpc://127.0.0.1:1", keepalive=keepalive)
