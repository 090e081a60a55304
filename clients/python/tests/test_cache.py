"""The local cache of pinned reads (sheaf.cache), against the real server."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time

import pyarrow as pa
import pytest

import sheaf
import sheaf.cache
from sheaf._proto import sheaf_pb2

import testdata
from conftest import TIMEOUT

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def do_gets(client) -> int:
    """The server's DoGet counter (every DoGet, cached on the server or not)."""
    return client._call("metrics", sheaf_pb2.MetricsRequest(), sheaf_pb2.MetricsResponse).do_get


def connect(data, cache_dir, **kw):
    return sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=cache_dir, **kw)


def expected(data) -> pa.Table:
    return data.parquet("numbers.parquet").replace_schema_metadata(None)


def test_second_read_touches_no_server(data, tmp_path):
    with connect(data, tmp_path / "c") as client:
        first = client.dataset(NUMBERS, partitions=4).to_table()
        assert first.equals(expected(data))
        assert client.cache.info().entries == 4
        before = do_gets(client)
        again = client.dataset(NUMBERS, partitions=4)
        assert again.to_table().equals(first)
        assert pa.Table.from_batches(list(again.to_batches(progress=False))).equals(first)
        assert do_gets(client) == before, "a cached read called DoGet"
    # Another client (another process's view: nothing opened yet) reads from disk too.
    with connect(data, tmp_path / "c") as other:
        before = do_gets(other)
        assert other.dataset(NUMBERS, partitions=4).to_table().equals(first)
        assert do_gets(other) == before
        assert other.cache.stats.hits == 4 and other.cache.stats.misses == 0


def test_cache_is_keyed_by_query(data, tmp_path):
    with connect(data, tmp_path / "c") as client:
        full = client.dataset(NUMBERS, partitions=2).to_table()
        ids = client.dataset(NUMBERS, partitions=2, columns=["id"]).to_table()
        few = client.dataset(NUMBERS, partitions=2, filter="label = 3").to_table()
        assert ids.column_names == ["id"] and ids.column("id").equals(full.column("id"))
        assert few.column("label").to_pylist() == [3] * few.num_rows
        assert client.cache.info().entries == 6
        # The latest revision is another top hash: other entries, other rows.
        latest = client.dataset("sheaf://test/tables/tables/numbers.parquet", partitions=2, columns=["y"]).to_table()
        assert set(latest.column("y").to_pylist()) == {-1.0}


def test_dataset_level_cache_setting(data, tmp_path):
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT) as client:
        assert client.cache is None
        ds = client.dataset(NUMBERS, partitions=2, cache=tmp_path / "d")
        assert ds.client.cache is not None and ds.client.cache.path == tmp_path / "d"
        ds.to_table()
        before = do_gets(client)
        assert ds.to_table().equals(expected(data))
        assert do_gets(client) == before
        plain = ds.with_cache(False)
        assert plain.client.cache is None and plain.to_table().equals(expected(data))
        assert do_gets(client) == before + 2
        # with_cache on a dataset: the same plan, through the cache.
        cached = client.dataset(NUMBERS, partitions=2).with_cache(tmp_path / "d")
        cached.to_table()
        assert do_gets(client) == before + 2


def _entries(cache: sheaf.cache.Cache) -> list[sheaf.cache.CacheEntry]:
    return sorted(cache.entries(), key=lambda e: e.key)


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_damaged_entry_is_detected_and_fetched_again(data, tmp_path, damage):
    with connect(data, tmp_path / "c") as client:
        want = client.dataset(NUMBERS, partitions=4).to_table()
    victim = _entries(sheaf.cache.Cache(tmp_path / "c"))[1]
    size = victim.path.stat().st_size
    with open(victim.path, "r+b") as f:
        if damage == "corrupt":
            f.seek(size // 2)
            chunk = f.read(64)
            f.seek(size // 2)
            f.write(bytes(b ^ 0x5A for b in chunk))
        else:
            f.truncate(size // 2)
    with connect(data, tmp_path / "c") as client:
        before = do_gets(client)
        assert client.dataset(NUMBERS, partitions=4).to_table().equals(want)
        assert do_gets(client) == before + 1, "exactly the damaged endpoint is read again"
        assert client.cache.stats.corrupt == 1
    # Stored again, whole.
    assert victim.path.stat().st_size == size
    with connect(data, tmp_path / "c") as client:
        before = do_gets(client)
        assert client.dataset(NUMBERS, partitions=4).to_table().equals(want)
        assert do_gets(client) == before and client.cache.stats.corrupt == 0


def _fill(url: str, cache_dir: str, partitions: int) -> tuple[int, bool]:
    """In another process: read NUMBERS through the shared cache; (rows, ids in order)."""
    with sheaf.connect(url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=cache_dir) as client:
        table = client.dataset(NUMBERS, partitions=partitions).to_table()
    return table.num_rows, table.column("id").to_pylist() == list(range(testdata.NUMBERS))


def test_two_processes_fill_the_cache_at_once(data, tmp_path):
    cache_dir = str(tmp_path / "c")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_fill, [(data.url, cache_dir, 8)] * 2)
    assert results == [(testdata.NUMBERS, True)] * 2
    cache = sheaf.cache.Cache(cache_dir)
    assert cache.info().entries == 8
    assert list((cache.root / "tmp").iterdir()) == [], "temporary files left behind"
    for e in cache.entries():  # every entry whole (CRC checked: a fresh Cache object)
        assert cache.get(e.key) is not None
    assert cache.stats.corrupt == 0
    with connect(data, cache_dir) as client:
        before = do_gets(client)
        assert client.dataset(NUMBERS, partitions=8).to_table().equals(expected(data))
        assert do_gets(client) == before


def test_eviction_keeps_the_bound_least_recently_used_first(data, tmp_path):
    with connect(data, tmp_path / "probe") as client:
        client.dataset(NUMBERS, partitions=4).to_table()
        sizes = [e.bytes for e in client.cache.entries()]
    bound = max(sizes) * 2 + min(sizes) // 2  # room for two entries
    with connect(data, tmp_path / "c", max_cache_bytes=bound) as client:
        ds = client.dataset(NUMBERS, partitions=4)
        keys = [sheaf.cache.ticket_key(e.ticket) for e in ds.endpoints]
        cache = client.cache
        assert cache.max_bytes == bound
        for i in (0, 1):
            list(ds.read_endpoint(i))
            time.sleep(0.05)
        assert keys[0] in cache and keys[1] in cache
        list(ds.read_endpoint(0))  # a hit: now 1 is the least recently used
        time.sleep(0.05)
        list(ds.read_endpoint(2))  # stored: 1 goes
        assert keys[0] in cache and keys[2] in cache and keys[1] not in cache
        assert cache.info().bytes <= bound
        assert cache.stats.evicted == 1
        list(ds.read_endpoint(3))  # stored: 0 goes (2 was used after it)
        assert {e.key for e in cache.entries()} == {keys[2], keys[3]}
        assert cache.info().bytes <= bound


def test_entry_larger_than_the_bound_is_not_stored(data, tmp_path):
    with connect(data, tmp_path / "c", max_cache_bytes=1000) as client:
        assert client.dataset(NUMBERS, partitions=2).to_table().equals(expected(data))
        assert client.cache.info().entries == 0
        assert list((client.cache.root / "tmp").iterdir()) == []


def test_info_prune_clear_and_command_line(data, tmp_path):
    cache_dir = tmp_path / "c"
    with connect(data, cache_dir) as client:
        client.dataset(NUMBERS, partitions=4).to_table()
    info = sheaf.cache.info(cache_dir)
    assert info.entries == 4 and info.bytes == sum(p.stat().st_size for p in cache_dir.rglob("*.arrow"))
    cli = [sys.executable, "-m", "sheaf.cache", "--dir", str(cache_dir), "--json"]
    shown = json.loads(subprocess.run([*cli, "info"], capture_output=True, text=True, check=True).stdout)
    assert shown == {"path": str(cache_dir), "entries": 4, "bytes": info.bytes}
    listed = json.loads(subprocess.run([*cli, "list"], capture_output=True, text=True, check=True).stdout)
    assert len(listed) == 4 and all(len(e["key"]) == 64 for e in listed)
    oldest = listed[0]["key"]
    removed = sheaf.cache.prune(info.bytes - 1, cache_dir)
    assert removed > 0 and sheaf.cache.info(cache_dir).entries == 3
    assert oldest not in {e.key for e in sheaf.cache.Cache(cache_dir).entries()}
    out = json.loads(subprocess.run([*cli, "clear"], capture_output=True, text=True, check=True).stdout)
    assert out["removed_bytes"] == info.bytes - removed
    assert sheaf.cache.info(cache_dir).entries == 0


def test_default_folder_is_not_the_build_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SHEAF_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert sheaf.cache.default_dir() == tmp_path / "xdg" / "sheaf-client"
    monkeypatch.setenv("SHEAF_CACHE_DIR", str(tmp_path / "mine"))
    assert sheaf.cache.default_dir() == tmp_path / "mine"
    assert sheaf.cache.Cache().path == tmp_path / "mine"


def test_entry_layout(tmp_path):
    """The layout the Rust `sheaf cache` command shares: v1/entries/kk/KEY.arrow,
    an Arrow IPC file, then a 24-byte trailer (length, CRC-32, flags, magic)."""
    import zlib

    cache = sheaf.cache.Cache(tmp_path)
    key = "ab" + "0" * 62
    table = pa.table({"a": [1, 2, 3]})
    assert cache.put(key, table)
    path = tmp_path / "v1" / "entries" / "ab" / f"{key}.arrow"
    raw = path.read_bytes()
    length, crc, flags, magic = sheaf.cache.TRAILER.unpack(raw[-24:])
    assert magic == b"SHEAFCv1" and flags == 0 and length == len(raw) - 24
    assert zlib.crc32(raw[:length]) == crc
    assert pa.ipc.open_file(pa.py_buffer(raw[:length])).read_all().equals(table)
    assert cache.get(key).equals(table)
    assert os.path.exists(tmp_path / "v1" / "tmp")


def test_torch_epochs_after_the_first_touch_no_server(data, tmp_path):
    """The PyTorch IterableDataset reads through read_endpoint / read_rows: a second epoch is all cache."""
    import torch.utils.data

    with connect(data, tmp_path / "c") as client:
        ds = client.dataset(NUMBERS, columns=["id", "x"])
        train = ds.to_torch(batch_size=1000, seed=3)
        loader = torch.utils.data.DataLoader(train, batch_size=None)
        first = sorted(i for batch in loader for i in batch["id"].tolist())
        assert first == list(range(testdata.NUMBERS))
        before = do_gets(client)
        if hasattr(train, "set_epoch"):
            train.set_epoch(1)
        second = sorted(i for batch in loader for i in batch["id"].tolist())
        assert second == first
        assert do_gets(client) == before, "a cached epoch called DoGet"


def test_keys_name_what_the_rows_depend_on():
    top = "ab" * 32
    t = sheaf_pb2.Ticket(package="o/n", top_hash=top, path="t.parquet", partition=3, signature=b"sig")
    t.query.columns.extend(["a"])
    t.query.compression = "zstd"
    key = sheaf.cache.ticket_key(t.SerializeToString())
    same = sheaf_pb2.Ticket(package="o/n", top_hash=top, path="t.parquet", partition=0)
    same.query.columns.extend(["a"])
    assert sheaf.cache.ticket_key(same.SerializeToString()) == key  # endpoint index, signature, wire compression
    other = sheaf_pb2.Ticket(package="o/n", top_hash=top, path="t.parquet")
    other.query.columns.extend(["b"])
    assert sheaf.cache.ticket_key(other.SerializeToString()) != key
    assert sheaf.cache.ticket_key(b"\xff not a ticket") is None
    assert sheaf.cache.ticket_key(sheaf_pb2.Ticket(package="o/n", top_hash="abc").SerializeToString()) is None
    uri = f"sheaf://o/n@{top}/t.parquet?columns=a"
    k = sheaf.cache.rows_key(uri, [(0, 5), (5, 10), (20, 20)])
    assert k == sheaf.cache.rows_key(uri + "&partitions=8&compression=zstd", [(0, 10)])
    assert k != sheaf.cache.rows_key(uri, [(0, 11)])
    assert k != sheaf.cache.rows_key(f"sheaf://o/n@{top}/t.parquet?columns=b", [(0, 10)])


# Run in a child process: a write to a read-only memory map kills the process (SIGSEGV).
IN_PLACE = r"""
import sys

import sheaf
import sheaf.torch

url, cache_dir, uri, rows = sys.argv[1:5]
with sheaf.connect(url, cache=cache_dir, timeout=60, read_timeout=60) as client:
    train = client.dataset(uri, columns=["id", "y"]).to_torch(batch_size=1000, shuffle=False)
    for epoch in range(3):  # epoch 0 stores the entries, 1 and 2 read them
        train.set_epoch(epoch)
        ids, ys = [], []
        for batch in sheaf.torch.DataLoader(train, num_workers=0):
            ids += batch["id"].tolist()
            ys += batch["y"].tolist()
            batch["y"] -= 1.0  # in place, on the (cached: memory-mapped) rows
            batch["id"].mul_(2)
        assert ids == list(range(int(rows))), f"epoch {epoch}: ids changed"
        assert ys == [i * 0.5 for i in range(int(rows))], f"epoch {epoch}: y changed"
    assert client.cache.stats.hits > 0
print("ok")
"""


def test_in_place_edits_of_cached_tensors_stay_private(data, tmp_path):
    cache_dir = tmp_path / "c"
    args = [data.url, str(cache_dir), NUMBERS, str(testdata.NUMBERS)]
    r = subprocess.run([sys.executable, "-c", IN_PLACE, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", f"exit {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    # The entries on disk are intact (their CRC-32s check).
    cache = sheaf.cache.Cache(cache_dir, verify="full")
    entries = cache.entries()
    assert entries and all(cache.get(e.key) is not None for e in entries)
    assert cache.stats.corrupt == 0


@pytest.mark.parametrize("value", ["abc", "10GB", "-5", "1.5e9"])
def test_a_bad_max_bytes_variable_is_named(data, tmp_path, monkeypatch, value):
    monkeypatch.setenv("SHEAF_CACHE_MAX_BYTES", value)
    want = rf"\$SHEAF_CACHE_MAX_BYTES='{re.escape(value)}': the cache's bound must be a whole number of bytes"
    with pytest.raises(ValueError, match=want):
        sheaf.cache.Cache(tmp_path / "c")
    with pytest.raises(ValueError, match=want):
        connect(data, True)
    assert sheaf.cache.Cache(tmp_path / "c", max_bytes=5).max_bytes == 5  # an explicit bound needs no variable
    monkeypatch.setenv("SHEAF_CACHE_MAX_BYTES", "12345")
    assert sheaf.cache.Cache(tmp_path / "c").max_bytes == 12_345
