"""Large data over Flight: tables bigger than any one gRPC message, values
bigger than tonic's 4 MiB default message size, and concurrent clients."""

from __future__ import annotations

import threading

import flight_testlib as fl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from flight_testlib import CELL_SIZE, assert_same, uri
from sheaf_testlib import MIB

B = "t/big"
READINGS = ("demo/weather", "tables/readings.parquet")


def test_table_over_64_mib_spreads_over_endpoints(flight_data):
    c = flight_data.client
    path = flight_data.big / "big" / "numbers.parquet"
    meta = pq.ParquetFile(path).metadata
    uncompressed = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    assert uncompressed > 64 * MIB
    fi = fl.info(c, uri(B, "big/numbers.parquet"))
    assert fi.total_records == 4_000_000
    assert 2 <= len(fi.endpoints) <= meta.num_row_groups, "~64 MiB per endpoint by default"
    tables = fl.read_endpoints(c, fi)
    assert all(t.num_rows > 0 for t in tables)
    got = pa.concat_tables(tables)
    expected = pq.read_table(path)
    assert got.nbytes > 20 * MIB
    assert_same(got, expected, "numbers.parquet")


def test_single_stream_of_a_large_table(flight_data):
    c = flight_data.client
    got = fl.read(c, uri(B, "big/numbers.parquet", partitions=1, columns="g,id"))
    assert got.num_rows == 4_000_000
    assert_same(got, pq.read_table(flight_data.big / "big" / "numbers.parquet", columns=["g", "id"]))


def test_one_huge_ipc_batch(flight_data):
    c = flight_data.client
    expected = fl.read_ipc_file(flight_data.big / "big" / "one_batch.arrow")
    assert expected.nbytes >= 24_000_000
    got = fl.read(c, uri(B, "big/one_batch.arrow"))
    assert_same(got, expected, "one_batch.arrow")


def test_binary_cell_over_4_mib(flight_data):
    c = flight_data.client
    expected = pq.read_table(flight_data.big / "big" / "cell.parquet")
    got = fl.read(c, uri(B, "big/cell.parquet"))
    assert got.schema.field("payload").type == pa.binary()
    assert len(got.column("payload")[1].as_py()) == CELL_SIZE > 4 * MIB
    assert_same(got, expected, "cell.parquet")
    for codec in ("zstd", "lz4"):
        assert_same(fl.read(c, uri(B, "big/cell.parquet", compression=codec)), expected, codec)
    only = fl.read(c, uri(B, "big/cell.parquet", filter="id = 1", columns="payload"))
    assert only.column("payload").to_pylist() == [expected.column("payload")[1].as_py()]


def test_manifest_content_of_a_5_mib_file(flight_data):
    c = flight_data.client
    got = fl.read(c, uri("t/blob", content="true"))
    contents = dict(zip(got.column("logical_key").to_pylist(), got.column("content").to_pylist(), strict=False))
    blob = (flight_data.blob_src / "blob.bin").read_bytes()
    assert len(blob) > 5 * MIB
    assert contents == {"blob.bin": blob, "small.txt": b"small\n"}
    got = fl.read(c, uri("t/blob", content="true", compression="zstd", filter="size > 1000000"))
    assert got.column("content").to_pylist() == [blob]


def test_eight_concurrent_clients(flight_data):
    readings = flight_data.readings()
    numbers = pq.read_table(flight_data.big / "big" / "numbers.parquet", columns=["id"]).slice(0, 1_200_000)
    jobs = [
        (uri(*READINGS, partitions=3), readings),
        (uri(*READINGS, filter="station = 'oslo'"), readings.filter(pc.field("station") == "oslo")),
        (uri(*READINGS, columns="temp_c,id", compression="zstd"), readings.select(["temp_c", "id"])),
        (uri(*READINGS, sample=0.5, seed=1), readings.take(fl.sample_positions(100_000, 0.5, 1))),
        (uri(B, "big/numbers.parquet", columns="id", limit=1_200_000), numbers),
        (uri("t/tables", "csv/data.csv"), fl.read_csv(flight_data.src / "csv" / "data.csv")),
        (uri(B, "big/cell.parquet"), pq.read_table(flight_data.big / "big" / "cell.parquet")),
        (uri(*READINGS, limit=50_000, compression="lz4"), readings.slice(0, 50_000)),
    ]
    errors: list[str] = []
    barrier = threading.Barrier(len(jobs))

    def run(i, u, expected):
        try:
            client = flight_data.server.connect()
            barrier.wait(timeout=60)
            for _ in range(2):
                assert_same(fl.read(client, u), expected, f"client {i}: {u}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"client {i} ({u}): {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i, u, e)) for i, (u, e) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, "\n".join(errors)
