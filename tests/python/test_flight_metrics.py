"""What the server reports about its own work (the `metrics` action and the
DoGet log line), and the cache of encoded streams that answers repeated reads
of a ticket from memory. Figures are asserted as counts, never as timings."""

from __future__ import annotations

import re

import flight_testlib as fl
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS, assert_same, uri

T = "m/sorted"
ROWS = 400_000


@pytest.fixture(scope="module")
def sorted_table(tmp_path_factory):
    """A 400k-row table sorted by `id`, in 8 row groups with a page index and
    small pages, plus 10 value columns."""
    root = tmp_path_factory.mktemp("metrics")
    rng = np.random.default_rng(7)
    columns = {"id": pa.array(np.arange(ROWS, dtype=np.int64))}
    for i in range(10):
        columns[f"v{i}"] = pa.array(rng.random(ROWS))
    table = pa.table(columns)
    src = root / "src"
    src.mkdir()
    path = src / "data.parquet"
    pq.write_table(table, path, row_group_size=50_000, data_page_size=64 * 1024, write_page_index=True)
    return root, path, table


@pytest.fixture
def server(sorted_table, flight_server, tmp_path):
    def start(*args):
        root, path, _ = sorted_table
        registry = tmp_path / "registry"
        from sheaf_testlib import Sheaf

        Sheaf(str(registry)).push(T, path.parent)
        return flight_server(registry, *args)

    return start


def metrics(client) -> dict:
    return fl.action(client, "metrics")


def delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def test_metrics_action_lists_every_counter(server):
    s = server()
    m = metrics(s.client)
    assert set(m) == {
        "bytes_read",
        "rows_scanned",
        "do_get",
        "do_get_cached",
        "rows_sent",
        "batches_sent",
        "bytes_sent",
        "do_put",
    }
    assert all(isinstance(v, int) and v >= 0 for v in m.values())
    names = [a.type for a in s.client.list_actions(OPTIONS)]
    assert "metrics" in names


def test_full_read_counts_rows_and_bytes(server, sorted_table):
    _, path, table = sorted_table
    s = server()
    before = metrics(s.client)
    got = fl.read(s.client, uri(T, "data.parquet"))
    d = delta(before, metrics(s.client))
    assert_same(got, table)
    fi = fl.info(s.client, uri(T, "data.parquet"))
    assert d["do_get"] == len(fi.endpoints)
    assert d["rows_sent"] == ROWS
    assert d["rows_scanned"] == ROWS
    assert d["batches_sent"] >= 1
    assert d["bytes_sent"] >= table.nbytes
    size = path.stat().st_size
    # Every data page once, plus the footer (planning reads it once).
    assert size * 0.5 < d["bytes_read"] <= size + 64 * 1024, (d, size)


def test_selective_read_touches_a_small_part_of_the_file(server, sorted_table):
    """A filter matching 0.1% of the rows on the sorted column, two of eleven
    columns: row-group statistics and the page index skip nearly everything."""
    _, path, table = sorted_table
    s = server("--cache-mib", "0")
    lo, hi = 200_000, 200_400
    before = metrics(s.client)
    got = fl.read(s.client, uri(T, "data.parquet", columns="id,v3", filter=f"id >= {lo} AND id < {hi}"))
    d = delta(before, metrics(s.client))
    expected = table.select(["id", "v3"]).slice(lo, hi - lo)
    assert_same(got, expected)
    assert d["rows_sent"] == hi - lo
    assert d["rows_scanned"] < ROWS // 8, d
    assert d["bytes_read"] < path.stat().st_size // 10, (d, path.stat().st_size)


def test_repeated_read_is_answered_from_the_cache(server, sorted_table):
    _, _, table = sorted_table
    s = server()
    u = uri(T, "data.parquet", columns="id,v1", partitions=3)
    first = fl.read(s.client, u)
    # A ticket is kept from its second read on (--cache-min-reads 2): that
    # read decodes the table again and records it.
    before = metrics(s.client)
    second = fl.read(s.client, u)
    d = delta(before, metrics(s.client))
    assert_same(second, first)
    assert d["do_get"] == 3 and d["do_get_cached"] == 0 and d["rows_scanned"] == ROWS, d
    before = metrics(s.client)
    again = fl.read(s.client, u)
    d = delta(before, metrics(s.client))
    assert_same(again, first)
    assert_same(again, table.select(["id", "v1"]))
    assert d["do_get"] == 3 and d["do_get_cached"] == 3, d
    # Planning still resolves `latest` (a 64-byte pointer); no table data is read.
    assert d["bytes_read"] <= 64 and d["rows_scanned"] == 0, d
    assert d["rows_sent"] == ROWS
    log = s.stderr()
    assert re.search(r"DoGet finished .*cached=true .*rows_sent=\d+", log), log[-3000:]
    assert re.search(r"DoGet finished .*cached=false .*rows_scanned=\d+ .*bytes_scanned=\d+", log), log[-3000:]


def test_cache_min_reads_1_keeps_a_ticket_from_its_first_read(server):
    s = server("--cache-min-reads", "1")
    u = uri(T, "data.parquet", columns="id,v1", partitions=3)
    first = fl.read(s.client, u)
    before = metrics(s.client)
    again = fl.read(s.client, u)
    d = delta(before, metrics(s.client))
    assert_same(again, first)
    assert d["do_get_cached"] == 3 and d["rows_scanned"] == 0, d


def test_cache_off_reads_storage_every_time(server, sorted_table):
    _, _, table = sorted_table
    s = server("--cache-mib", "0")
    u = uri(T, "data.parquet", columns="v2")
    fl.read(s.client, u)
    before = metrics(s.client)
    got = fl.read(s.client, u)
    d = delta(before, metrics(s.client))
    assert_same(got, table.select(["v2"]))
    assert d["do_get_cached"] == 0 and d["bytes_read"] > 0 and d["rows_scanned"] == ROWS, d


def test_an_abandoned_stream_is_not_cached(server, sorted_table):
    """A client that stops after one batch leaves nothing in the cache: the
    next read runs again and returns every row."""
    _, _, table = sorted_table
    s = server()
    u = uri(T, "data.parquet")
    fi = fl.info(s.client, u)
    reader = s.client.do_get(fi.endpoints[0].ticket, OPTIONS)
    reader.read_chunk()
    del reader
    c2 = s.connect()
    before = metrics(c2)
    got = fl.read(c2, u)
    d = delta(before, metrics(c2))
    assert_same(got, table)
    assert d["do_get_cached"] == 0, d


def test_cached_and_uncached_reads_agree_for_every_query(server, sorted_table):
    """Same rows, same order, with and without the cache, for filters, samples
    and limits (tickets differ per query, so each has its own entry)."""
    s = server()
    cold = server("--cache-mib", "0")
    queries = [
        {"filter": "v0 > 0.5", "columns": "id,v0"},
        {"sample": "0.1", "seed": "3"},
        {"limit": "1234", "columns": "v9"},
        {"sample_rows": "777", "seed": "9", "partitions": "4"},
    ]
    for q in queries:
        u = uri(T, "data.parquet", **q)
        expected = fl.read(cold.client, u)
        fl.read(s.client, u)
        assert_same(fl.read(s.client, u), expected, str(q))


def test_whole_file_tables_stream_and_stop_early(flight_server, tmp_path):
    """CSV, JSON lines and Arrow IPC files are decoded as they are read, not
    loaded whole: a limit stops the read after a few batches."""
    from sheaf_testlib import Sheaf

    n = 300_000
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.csv").write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(n)))
    (src / "big.jsonl").write_text("".join(f'{{"id": {i}, "name": "n{i}"}}\n' for i in range(n)))
    table = pa.table({"id": pa.array(range(n), pa.int64())})
    fl.write_ipc_file(src / "big.arrow", table, max_chunksize=8192)
    fl.write_ipc_stream(src / "big.arrows", table, max_chunksize=8192)
    registry = tmp_path / "registry"
    Sheaf(str(registry)).push("m/files", src)
    s = flight_server(registry, "--cache-mib", "0")
    for path in ("big.csv", "big.jsonl", "big.arrow", "big.arrows"):
        fl.info(s.client, uri("m/files", path))  # plans (infers the schema) first
        before = metrics(s.client)
        got = fl.read(s.client, uri("m/files", path, limit=5, columns="id"))
        d = delta(before, metrics(s.client))
        assert got.column("id").to_pylist() == [0, 1, 2, 3, 4], path
        assert 0 < d["rows_scanned"] <= 8 * 8192, (path, d)
        # And a full read still returns every row, in order.
        full = fl.read(s.client, uri("m/files", path, columns="id"))
        assert full.column("id").to_pylist() == list(range(n)), path
