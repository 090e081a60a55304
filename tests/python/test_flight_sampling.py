"""Sampling over Flight (`sample=F`, `sample_rows=N`, `seed=S`): the rows kept
are exactly those the documented formula picks, computed here in Python:

    row at table position p is kept iff splitmix64(seed ^ splitmix64(p)) < floor(F * 2^64)

and `sample_rows=N` keeps the N positions with the smallest hashes."""

from __future__ import annotations

import flight_testlib as fl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from flight_testlib import assert_same, sample_positions, sample_rows_positions, splitmix64, uri

READINGS = ("demo/weather", "tables/readings.parquet")
T = "t/tables"


def test_splitmix64_reference_value():
    # The reference vector of splitmix64 (also in the server's unit tests).
    assert splitmix64(0) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("fraction,seed", [(0.1, 7), (0.5, 0), (0.013, 123456789), (0.9, 2**64 - 1)])
def test_fraction_matches_the_formula(flight_data, fraction, seed):
    c = flight_data.client
    readings = flight_data.readings()
    keep = sample_positions(readings.num_rows, fraction, seed)
    got = fl.read(c, uri(*READINGS, sample=fraction, seed=seed))
    assert_same(got, readings.take(keep), f"sample={fraction} seed={seed}")


def test_same_seed_same_rows_other_seed_other_rows(flight_data):
    c = flight_data.client
    a = fl.read(c, uri(*READINGS, sample=0.2, seed=42, columns="id"))
    b = fl.read(c, uri(*READINGS, sample=0.2, seed=42, columns="id"))
    other = fl.read(c, uri(*READINGS, sample=0.2, seed=43, columns="id"))
    assert a.equals(b)
    assert a.column("id").to_pylist() != other.column("id").to_pylist()
    assert 18_000 < a.num_rows < 22_000 and 18_000 < other.num_rows < 22_000
    # No seed means seed 0.
    assert fl.read(c, uri(*READINGS, sample=0.2, columns="id")).equals(
        fl.read(c, uri(*READINGS, sample=0.2, seed=0, columns="id"))
    )


def test_partitioning_does_not_change_the_sample(flight_data):
    c = flight_data.client
    one = fl.info(c, uri(*READINGS, sample=0.25, seed=5, partitions=1))
    seven = fl.info(c, uri(*READINGS, sample=0.25, seed=5, partitions=7))
    assert len(one.endpoints) == 1 and len(seven.endpoints) == 7
    a = pa.concat_tables(fl.read_endpoints(c, one))
    b = pa.concat_tables(fl.read_endpoints(c, seven))
    assert_same(a, b, "partitions=1 vs partitions=7")
    assert a.column("id").to_pylist() == sample_positions(100_000, 0.25, 5)


@pytest.mark.parametrize("n,seed", [(1, 0), (1234, 99), (50_001, 3), (99_999, 11)])
def test_sample_rows_keeps_exactly_n(flight_data, n, seed):
    c = flight_data.client
    readings = flight_data.readings()
    u = uri(*READINGS, sample_rows=n, seed=seed)
    fi = fl.info(c, u)
    assert fi.total_records in (n, -1)
    got = fl.read(c, u)
    assert got.num_rows == n
    assert_same(got, readings.take(sample_rows_positions(readings.num_rows, n, seed)), f"sample_rows={n}")
    # The same over several endpoints.
    parts = fl.read_endpoints(c, fl.info(c, uri(*READINGS, sample_rows=n, seed=seed, partitions=5)))
    assert_same(pa.concat_tables(parts), got, f"sample_rows={n} over 5 partitions")


def test_sample_rows_at_least_the_table_keeps_everything(flight_data):
    c = flight_data.client
    readings = flight_data.readings()
    assert_same(fl.read(c, uri(*READINGS, sample_rows=100_000, columns="id")), readings.select(["id"]))
    assert_same(fl.read(c, uri(*READINGS, sample_rows=10**9, columns="id")), readings.select(["id"]))
    assert fl.read(c, uri(*READINGS, sample_rows=0)).num_rows == 0


def test_sample_zero_and_one(flight_data):
    c = flight_data.client
    assert fl.read(c, uri(*READINGS, sample=0)).num_rows == 0
    assert_same(fl.read(c, uri(*READINGS, sample=1, seed=3)), flight_data.readings())


def test_sampling_composes_with_filter(flight_data):
    """Sample first by position (in the whole table), then filter."""
    c = flight_data.client
    readings = flight_data.readings()
    sampled = readings.take(sample_positions(readings.num_rows, 0.3, 17))
    expected = sampled.filter((pc.field("station") == "lima") & (pc.field("temp_c") > 5))
    got = fl.read(c, uri(*READINGS, sample=0.3, seed=17, filter="station = 'lima' AND temp_c > 5"))
    assert_same(got, expected)
    exact = readings.take(sample_rows_positions(readings.num_rows, 5000, 17))
    got = fl.read(c, uri(*READINGS, sample_rows=5000, seed=17, filter="station = 'oslo'", columns="id,station"))
    assert_same(got, exact.filter(pc.field("station") == "oslo").select(["id", "station"]))


def test_sampling_then_limit(flight_data):
    c = flight_data.client
    readings = flight_data.readings()
    keep = sample_positions(readings.num_rows, 0.5, 8)[:777]
    assert_same(fl.read(c, uri(*READINGS, sample=0.5, seed=8, limit=777)), readings.take(keep))


def test_sampling_counts_positions_across_parquet_parts(flight_data):
    c = flight_data.client
    parts = fl.read(c, uri(T, "parts"))
    assert parts.num_rows == 3200
    got = fl.read(c, uri(T, "parts", sample=0.4, seed=21))
    assert_same(got, parts.take(sample_positions(3200, 0.4, 21)))
    got = fl.read(c, uri(T, "parts", sample_rows=333, seed=21, partitions=9))
    assert_same(got, parts.take(sample_rows_positions(3200, 333, 21)))


@pytest.mark.parametrize(
    "path,reader",
    [
        ("csv/data.csv", lambda p: fl.read_csv(p)),
        ("json/data.jsonl", fl.read_jsonl),
        ("ipc/data.arrow", lambda p: fl.hydrate(fl.read_ipc_file(p))),
        ("ipc/data.arrows", lambda p: fl.hydrate(fl.read_ipc_stream(p))),
    ],
)
def test_sampling_of_file_tables(flight_data, path, reader):
    c = flight_data.client
    table = reader(flight_data.src / path)
    got = fl.read(c, uri(T, path, sample=0.15, seed=4))
    assert_same(got, table.take(sample_positions(table.num_rows, 0.15, 4)), path)
    got = fl.read(c, uri(T, path, sample=0.15, seed=4, filter="id % 2 = 1"))
    sampled = table.take(sample_positions(table.num_rows, 0.15, 4))
    assert_same(got, sampled.filter(pa.array([i % 2 == 1 for i in sampled.column("id").to_pylist()])), path)


def test_sampling_of_the_manifest_table(flight_data):
    c = flight_data.client
    full = fl.read(c, uri(T))
    n = full.num_rows
    got = fl.read(c, uri(T, sample=0.5, seed=1))
    assert_same(got, full.take(sample_positions(n, 0.5, 1)))
    got = fl.read(c, uri(T, sample_rows=4, seed=1))
    assert_same(got, full.take(sample_rows_positions(n, 4, 1)))


@pytest.mark.parametrize(
    "path,reader",
    [
        ("csv/data.csv", lambda p: fl.read_csv(p)),
        ("ipc/data.arrow", lambda p: fl.hydrate(fl.read_ipc_file(p))),
    ],
)
def test_sample_rows_of_file_tables(flight_data, path, reader):
    """sample_rows=N keeps exactly N rows whatever the table kind."""
    c = flight_data.client
    table = reader(flight_data.src / path)
    got = fl.read(c, uri(T, path, sample_rows=100, seed=6))
    assert got.num_rows == 100
    assert_same(got, table.take(sample_rows_positions(table.num_rows, 100, 6)), path)
