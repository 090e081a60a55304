"""The server reads a revision's manifest through an index of blocks of
1,024 entries (README "Packages of a million files"): the manifest table's
runs and each table's entries are read from the blocks that hold them, each
block checked against the digest taken when the manifest was first read.
These tests use a package of several blocks and check that every read equals
the manifest, at any cut, and that a manifest changed in storage afterwards is
an error naming it, never other rows."""

from __future__ import annotations

import json

import flight_testlib as fl
import pyarrow as pa
import pytest
from flight_testlib import assert_same, uri
from sheaf_testlib import Sheaf, start_server, write_tree

PKG = "t/many"
FILES = 3_500  # four blocks of the index


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    registry = root / "registry"
    registry.mkdir()
    src = root / "src"
    files = {f"f/{i // 500:02d}/{i:05d}.txt": f"file {i}\n".encode() * (1 + i % 5) for i in range(FILES)}
    write_tree(src, files)
    # Tables before, among and after the plain files.
    fl.write_parquet(src / "a" / "first.parquet", pa.table({"x": list(range(10))}))
    (src / "f" / "03" / "middle.csv").write_text("k,v\n1,a\n2,b\n")
    parts = {f"z/parts/p{i}.parquet": pa.table({"x": list(range(i * 100, i * 100 + 100))}) for i in range(3)}
    for key, table in parts.items():
        fl.write_parquet(src / key, table)
    fl.write_parquet(src / "z" / "parts" / "deeper" / "p9.parquet", pa.table({"x": [9]}))
    sheaf = Sheaf(str(registry))
    sheaf.push(PKG, src, "-m", "many")
    top = sheaf.json("log", PKG)[0]["top_hash"]
    server = start_server(registry, log_dir=root / "logs")
    try:
        yield registry, src, top, server
    finally:
        server.stop()


def test_the_manifest_table_equals_the_manifest_at_any_cut(many):
    registry, _, top, server = many
    c = server.client
    entries = fl.manifest_entries(registry, top)
    assert len(entries) > 3 * 1024
    keys = [e["logical_key"] for e in entries]
    whole = fl.read(c, uri(PKG))
    assert whole.column("logical_key").to_pylist() == keys
    assert whole.column("size").to_pylist() == [e["size"] for e in entries]
    assert whole.column("hash").to_pylist() == [e["hash"]["value"] for e in entries]
    assert [json.loads(m) for m in whole.column("meta").to_pylist()] == [e.get("meta") or {} for e in entries]
    # Runs that start and end inside blocks, and more runs than blocks.
    for n in (2, 3, 7, 40):
        fi = fl.info(c, uri(PKG, partitions=n))
        assert len(fi.endpoints) == n
        assert_same(fl.concat(fl.read_endpoints(c, fi), whole.schema), whole, f"partitions={n}")
    for q in (
        {"filter": "logical_key LIKE 'f/03/%'"},
        {"sample": "0.1", "seed": "3"},
        {"rows": "1000:1100,3000:3001"},
        {"limit": "1500"},
    ):
        one = fl.read(c, uri(PKG, **q))
        split = fl.concat(fl.read_endpoints(c, fl.info(c, uri(PKG, partitions=5, **q))), one.schema)
        assert_same(split, one, str(q))
    assert fl.read(c, uri(PKG, rows="1000:1100")).column("logical_key").to_pylist() == keys[1000:1100]
    assert fl.read(c, uri(PKG, limit="1500")).column("logical_key").to_pylist() == keys[:1500]


def test_content_of_selected_entries_across_blocks(many):
    _, src, _, server = many
    c = server.client
    q = {"content": "true", "filter": "logical_key LIKE '%7.txt'", "partitions": "3"}
    got = fl.concat(fl.read_endpoints(c, fl.info(c, uri(PKG, **q))), None)
    assert got.num_rows == FILES // 10
    for key, content in zip(got.column("logical_key").to_pylist(), got.column("content").to_pylist(), strict=True):
        assert content == (src / key).read_bytes(), key


def test_tables_in_every_block_are_found_and_listed(many):
    _, src, _, server = many
    c = server.client
    listed = {t["path"]: t["format"] for t in fl.action(c, "list_tables", {"ref": PKG})["tables"]}
    assert listed == {
        "": "manifest",
        "a/first.parquet": "parquet",
        "a": "parquet",
        "f/03/middle.csv": "csv",
        "z/parts/p0.parquet": "parquet",
        "z/parts/p1.parquet": "parquet",
        "z/parts/p2.parquet": "parquet",
        "z/parts/deeper/p9.parquet": "parquet",
        "z/parts": "parquet",
        "z/parts/deeper": "parquet",
    }
    assert fl.read(c, uri(PKG, "a/first.parquet")).column("x").to_pylist() == list(range(10))
    assert fl.read(c, uri(PKG, "f/03/middle.csv")).column("v").to_pylist() == ["a", "b"]
    # A folder table holds its Parquet files at any depth; so does a folder
    # that holds them only deeper down.
    assert fl.read(c, uri(PKG, "z/parts")).column("x").to_pylist() == [9, *range(300)]
    assert fl.read(c, uri(PKG, "z/")).column("x").to_pylist() == [9, *range(300)]
    with pytest.raises(pa.ArrowException, match="f/01/00600.txt in t/many@.* is not a table"):
        fl.read(c, uri(PKG, "f/01/00600.txt"))
    with pytest.raises(pa.ArrowException, match="folder f/01 in t/many@.* holds no Parquet files"):
        fl.read(c, uri(PKG, "f/01"))
    with pytest.raises(pa.ArrowException, match="path f/99 in t/many@.* not found"):
        fl.read(c, uri(PKG, "f/99"))


def test_a_manifest_changed_after_it_was_read_is_an_error_naming_it(tmp_path, flight_server):
    registry = tmp_path / "registry"
    registry.mkdir()
    write_tree(tmp_path / "src", {f"d/{i:05d}.txt": b"x" * (i % 9) for i in range(2_500)})
    sheaf = Sheaf(str(registry))
    sheaf.push(PKG, tmp_path / "src")
    top = sheaf.json("log", PKG)[0]["top_hash"]
    server = flight_server(registry)
    c = server.client
    fi = fl.info(c, uri(PKG, partitions=3))
    first = fl.redeem(c, fi.endpoints[0].ticket)
    assert first.num_rows > 0
    path = registry / ".quilt" / "packages" / top
    text = path.read_text()
    # The same length, one entry's size changed, in the last block.
    edited = text.replace('"d/02400.txt"', '"d/02400.txX"', 1)
    assert edited != text and len(edited) == len(text)
    path.write_text(edited)
    # The first run's blocks are unchanged: still read.
    assert fl.redeem(c, fi.endpoints[0].ticket).equals(first)
    with pytest.raises(pa.ArrowException, match=f"manifest {top}.*changed in storage"):
        fl.redeem(c, fi.endpoints[2].ticket)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(pa.ArrowException, match=f"manifest {top}"):
        fl.redeem(c, fi.endpoints[2].ticket)
