"""The Rust `sheaf cache` command and the Python client share one cache folder
(layout v1, sheaf._cache): what one writes, evicts or deletes, the other sees."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import sheaf
import sheaf.cache
from sheaf._proto import sheaf_pb2

from conftest import TIMEOUT, child_env, sheaf_bin

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
INTEGRITY_EXIT = 4


def cli(cache_dir, *args: str, expect: int = 0) -> dict:
    """`sheaf --json cache --dir DIR ARGS`: its JSON answer; asserts the exit code."""
    cmd = [str(sheaf_bin()), "--json", "cache", "--dir", str(cache_dir), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=120)
    assert r.returncode == expect, f"{' '.join(cmd)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def has_cache_command():
    r = subprocess.run(
        [str(sheaf_bin()), "cache", "--help"], capture_output=True, text=True, env=child_env(), timeout=60
    )
    if r.returncode != 0:
        pytest.skip(f"{sheaf_bin()} has no `cache` command yet")


def fill(data, cache_dir, partitions: int = 4) -> list[sheaf.cache.CacheEntry]:
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=cache_dir) as client:
        client.dataset(NUMBERS, partitions=partitions).to_table()
    return sheaf.cache.Cache(cache_dir).entries()


def do_gets(client) -> int:
    return client._call("metrics", sheaf_pb2.MetricsRequest(), sheaf_pb2.MetricsResponse).do_get


def test_cli_lists_what_python_stored(data, tmp_path, has_cache_command):
    entries = fill(data, tmp_path / "c")
    assert len(entries) == 4
    listed = cli(tmp_path / "c", "list")
    assert listed["action"] == "list"
    assert {(e["key"], e["bytes"]) for e in listed["entries"]} == {(e.key, e.bytes) for e in entries}
    for e in listed["entries"]:
        assert abs(e["last_used"] - next(x.last_used for x in entries if x.key == e["key"])) < 2
    info = cli(tmp_path / "c", "info")
    assert (info["entries"], info["bytes"]) == (4, sum(e.bytes for e in entries))


@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_cli_verify_finds_what_python_would_refuse(data, tmp_path, has_cache_command, damage):
    entries = fill(data, tmp_path / "c")
    victim = entries[2]
    size = victim.path.stat().st_size
    with open(victim.path, "r+b") as f:
        if damage == "corrupt":
            f.seek(size // 3)
            chunk = f.read(16)
            f.seek(size // 3)
            f.write(bytes(b ^ 0xFF for b in chunk))
        else:
            f.truncate(size - 10)
    report = cli(tmp_path / "c", "verify", expect=INTEGRITY_EXIT)
    assert report["checked"] == 4 and [d["key"] for d in report["damaged"]] == [victim.key]
    assert sheaf.cache.Cache(tmp_path / "c").get(victim.key) is None  # Python refuses it too (and drops it)
    # Damage it again (Python deleted it) and let the CLI delete it.
    fill(data, tmp_path / "c")
    with open(victim.path, "r+b") as f:
        f.truncate(size // 2)
    report = cli(tmp_path / "c", "verify", "--delete")
    assert [d["key"] for d in report["damaged"]] == [victim.key] and not victim.path.exists()
    assert cli(tmp_path / "c", "verify")["damaged"] == []
    assert {e.key for e in sheaf.cache.Cache(tmp_path / "c").entries()} == {e.key for e in entries} - {victim.key}


def test_cli_prune_keeps_what_python_used_last(data, tmp_path, has_cache_command):
    entries = fill(data, tmp_path / "c")
    cache = sheaf.cache.Cache(tmp_path / "c")
    order = [entries[3].key, entries[0].key, entries[2].key, entries[1].key]  # least recently used first
    for key in order:
        time.sleep(0.05)
        assert cache.get(key) is not None  # a read marks the entry used
    sizes = {e.key: e.bytes for e in entries}
    keep = sizes[order[2]] + sizes[order[3]]
    report = cli(tmp_path / "c", "prune", "--max-bytes", str(keep))
    assert report["bytes_left"] <= keep and report["entries_left"] == 2
    assert {e.key for e in sheaf.cache.Cache(tmp_path / "c").entries()} == {order[2], order[3]}
    # Python reads what is left from disk, and what the CLI pruned from the server again.
    with sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT, cache=tmp_path / "c") as client:
        before = do_gets(client)
        client.dataset(NUMBERS, partitions=4).to_table()
        assert do_gets(client) - before == 2
    cli(tmp_path / "c", "clear")
    assert sheaf.cache.info(tmp_path / "c").entries == 0
