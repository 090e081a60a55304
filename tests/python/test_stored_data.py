"""Table files in a registry that are hostile or damaged, served by the Flight
server: anyone who may push can store a crafted file, and storage can change
under a revision. A crafted Arrow IPC file is refused (it aborted the server);
a whole-file table changed in storage fails with DATA_LOSS even when the read
stops early (a limit) or the damage breaks decoding before the hash is known;
a JSON-lines field first seen after schema inference is refused, not dropped;
a Parquet blob of the wrong size or with pages that cannot be decoded is
DATA_LOSS, not a storage outage or an internal error; and a few requests on
such tables (repeated column names, empty row ranges, a very long column name)
answer INVALID_ARGUMENT naming what is at fault."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS, info, read, uri
from hostile_lib import assert_running, attempt
from sheaf_testlib import Sheaf, blob_path

PKG = "stored/data"


def _arrow_stream(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _with_body_length(stream: bytes, body_length: int) -> bytes:
    """`stream` with its record batch message declaring `body_length`."""
    schema_length = struct.unpack_from("<i", stream, 4)[0]
    at = 8 + schema_length  # the batch message: continuation, length, header
    header_length = struct.unpack_from("<i", stream, at + 4)[0]
    header = bytearray(stream[at + 8 : at + 8 + header_length])
    real = ipc.read_message(pa.BufferReader(stream[at:])).body.size
    needle = struct.pack("<q", real)
    assert header.count(needle) == 1, "the body length is written once in the header"
    i = header.index(needle)
    header[i : i + 8] = struct.pack("<q", body_length)
    return stream[: at + 8] + bytes(header) + stream[at + 8 + header_length :]


def _csv(rows: int) -> bytes:
    table = pa.table({"a": list(range(rows)), "b": [2 * i for i in range(rows)]})
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A package of crafted and ordinary table files, pushed once; tests
    damage blobs of their own files and start their own servers."""
    base = tmp_path_factory.mktemp("stored")
    registry = base / "registry"
    registry.mkdir()
    tree = base / "tree"
    tree.mkdir()
    ok = _arrow_stream(pa.table({"a": pa.array([1, 2, 3], pa.int64()), "s": ["a", "bb", "ccc"]}))
    files = {
        "ipc/ok.arrows": ok,
        "ipc/huge_body.arrows": _with_body_length(ok, 1 << 46),
        "ipc/negative_body.arrows": _with_body_length(ok, -8),
        "ipc/huge_body.arrow": b"ARROW1\x00\x00" + _with_body_length(ok, 1 << 46),
        "ipc/huge_header.arrows": struct.pack("<Ii", 0xFFFFFFFF, 0x7FFFFFF0) + b"\x00" * 64,
        "csv/limit.csv": _csv(100_000),
        "csv/early.csv": _csv(100_001),  # another blob than limit.csv's
        "csv/ragged.csv": b"a,b\n" + b"1,2\n" * 10 + b"1,2,3\n" + b"1,2\n" * 10,
        "late.jsonl": b'{"a": 1}\n' * 1200 + b'{"a": null, "b": "new"}\n',
        "pq/never.parquet": b"this was never a Parquet file\n" * 40,
    }
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    big = pa.table({"x": pa.array(range(200_000), pa.int64()), "s": [f"v{i % 977}" for i in range(200_000)]})
    pq.write_table(big, tree / "pq/cut.parquet", compression="snappy", row_group_size=50_000)
    raw = bytearray((tree / "pq/cut.parquet").read_bytes())
    for i in range(100, 4000):  # the first data pages; the footer stays intact
        raw[i] = 0xFF
    (tree / "pq/corrupt.parquet").write_bytes(bytes(raw))
    pq.write_table(
        pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])], names=["dup", "dup"]), tree / "pq/dup.parquet"
    )
    sheaf = Sheaf(str(registry))
    sheaf.push(PKG, tree, "--no-profile")
    browsed = sheaf.json("browse", PKG)
    entries = {e["logical_key"]: e for e in browsed["entries"]}
    return {"registry": registry, "entries": entries, "files": files, "top_hash": browsed["top_hash"]}


def _blob(stored, key: str) -> Path:
    path = blob_path(stored["registry"], stored["entries"][key]["hash"]["value"])
    path.chmod(0o644)
    return path


@pytest.fixture
def damage(stored):
    """damage(key, bytes): replaces the blob of `key` until the test ends."""
    saved = []

    def put(key: str, data: bytes):
        path = _blob(stored, key)
        saved.append((path, path.read_bytes()))
        path.write_bytes(data)

    yield put
    for path, data in saved:
        path.write_bytes(data)


@pytest.fixture
def serve(stored, flight_server):
    return lambda: flight_server(stored["registry"])


def _get(client, u: str):
    return attempt(lambda: read(client, u))


def test_crafted_arrow_ipc_files_are_refused_and_the_server_lives(serve):
    server = serve()
    c = server.client
    for name, why in (
        ("ipc/huge_body.arrows", "a message body of 70368744177664 bytes"),
        ("ipc/huge_body.arrow", "a message body of 70368744177664 bytes"),
        ("ipc/negative_body.arrows", "a body of -8 bytes"),
        ("ipc/huge_header.arrows", "a message header of 2147483632 bytes"),
    ):
        out = _get(c, uri(PKG, name))
        assert out.code == "INVALID_ARGUMENT", f"{name}: {out.describe()}"
        assert name.split("/")[1] in out.message and why in out.message, out.message
        assert_running(server, name)
    assert read(c, uri(PKG, "ipc/ok.arrows")).column("a").to_pylist() == [1, 2, 3]
    assert "panicked" not in server.log_path.read_text()


def test_a_table_changed_in_storage_fails_even_when_the_read_stops_early(stored, damage, serve):
    """The first row changed, same size: a read that stops after it (a limit, a row range) used to pass it as
    the stored data; the rest of the file is now read to check the hash before the stream ends."""
    data = stored["files"]["csv/limit.csv"]
    assert data.startswith(b'"a","b"\n0,0\n')
    damage("csv/limit.csv", data.replace(b"\n0,0\n", b"\n9,9\n", 1))
    c = serve().client
    for params in ({"limit": 3}, {"rows": "0:3"}, {}):
        out = _get(c, uri(PKG, "csv/limit.csv", **params))
        assert out.code == "DATA_LOSS", f"{params}: {out.describe()}"
        assert "limit.csv" in out.message, out.message


def test_damage_that_breaks_decoding_is_data_loss(stored, damage, serve):
    """A field added on line 12 (same size) makes the CSV reader fail long before the end, where the hash is
    known: the answer is the data's damage (DATA_LOSS), not "not a CSV file"; an undamaged ragged file is."""
    data = stored["files"]["csv/early.csv"]
    line = b"\n10,20\n"
    assert line in data
    damage("csv/early.csv", data.replace(line, b"\n1,0,0\n", 1))
    c = serve().client
    out = _get(c, uri(PKG, "csv/early.csv"))
    assert out.code == "DATA_LOSS" and "early.csv" in out.message, out.describe()
    out = _get(c, uri(PKG, "csv/ragged.csv"))
    assert out.code == "INVALID_ARGUMENT" and "cannot read csv/ragged.csv as csv" in out.message, out.describe()


def test_a_json_lines_field_first_seen_after_inference_is_refused(serve):
    out = _get(serve().client, uri(PKG, "late.jsonl"))
    assert out.code == "INVALID_ARGUMENT", out.describe()
    for part in ("late.jsonl", "column 'b'", "first 1000 records"):
        assert part in out.message, out.message


def test_parquet_blobs_cut_short_or_undecodable_are_data_loss(stored, damage, serve):
    damage("pq/cut.parquet", _blob(stored, "pq/cut.parquet").read_bytes()[:3000])
    c = serve().client
    size = stored["entries"]["pq/cut.parquet"]["size"]
    out = _get(c, uri(PKG, "pq/cut.parquet"))
    assert out.code == "DATA_LOSS", out.describe()
    assert "cut.parquet at <registry>/.sheaf/blobs/" in out.message, out.message
    assert f"3000 bytes, where its manifest records {size}" in out.message, out.message
    out = _get(c, uri(PKG, "pq/corrupt.parquet"))
    assert out.code == "DATA_LOSS", out.describe()
    assert "corrupt.parquet" in out.message and "cannot be decoded" in out.message, out.message


def test_a_damaged_parquet_footer_is_data_loss_and_a_file_never_parquet_is_invalid(stored, damage, serve):
    """The footer's end overwritten (same size): the file was Parquet when pushed, so its bytes are checked
    against the manifest's hash before the answer is "not a readable Parquet file"."""
    raw = bytearray(_blob(stored, "pq/cut.parquet").read_bytes())
    raw[-40:] = b"\x00" * 40
    damage("pq/cut.parquet", bytes(raw))
    c = serve().client
    out = _get(c, uri(PKG, "pq/cut.parquet"))
    assert out.code == "DATA_LOSS" and "cut.parquet" in out.message, out.describe()
    out = _get(c, uri(PKG, "pq/never.parquet"))
    assert out.code == "INVALID_ARGUMENT", out.describe()
    assert "pq/never.parquet is not a readable Parquet file" in out.message, out.message


def test_sql_over_undecodable_parquet_names_the_table_and_revision(stored, serve):
    import adbc_driver_flightsql.dbapi as fsql

    server = serve()
    top = stored["top_hash"]
    with fsql.connect(server.url, autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(Exception) as caught:
            cur.execute(f'SELECT sum(x), count(DISTINCT s) FROM "{PKG}"."pq/corrupt.parquet"')
            cur.fetch_arrow_table()
    message = str(caught.value)
    for part in ("(DataLoss;", "cannot be decoded", f'"{PKG}"."pq/corrupt.parquet" of {PKG}@{top}'):
        assert part in message, message


def test_requests_on_odd_tables_name_what_is_at_fault(serve):
    c = serve().client
    out = attempt(lambda: info(c, uri(PKG, "pq/dup.parquet")))
    assert out.code == "INVALID_ARGUMENT", out.describe()
    assert 'more than one column named "dup"' in out.message and "dup.parquet" in out.message, out.message
    for rows in ("0:0", "5:5,7:7"):
        out = attempt(lambda rows=rows: info(c, uri(PKG, "pq/cut.parquet", rows=rows)))
        assert out.code == "INVALID_ARGUMENT" and "every range" in out.message, f"rows={rows}: {out.describe()}"
    # A column name of 20,000 characters: named briefly, not a trailer too big for the client.
    out = attempt(lambda: info(c, uri(PKG, "pq/cut.parquet", columns="c" * 20_000)))
    assert out.code == "INVALID_ARGUMENT", out.describe()


def test_list_flights_leaves_out_a_package_whose_manifest_is_missing(stored, serve):
    """A `latest` naming a manifest that does not exist: that package is left out (and logged), the others are
    listed."""
    broken = stored["registry"] / ".quilt/named_packages/broken/pkg"
    broken.mkdir(parents=True)
    try:
        (broken / "latest").write_text("a" * 64)
        server = serve()
        paths = {fi.descriptor.command.decode() for fi in server.client.list_flights(b"", OPTIONS)}
        assert any(p.startswith(f"sheaf://{PKG}@") for p in paths), paths
        assert not any("broken/pkg" in p for p in paths), paths
        assert "package left out of ListFlights" in server.log_path.read_text()
    finally:
        (broken / "latest").unlink()
        broken.rmdir()
        broken.parent.rmdir()


def test_manifest_contents_come_in_bounded_batches_and_big_files_are_refused(tmp_path, flight_server):
    """`content=true` puts files in rows (the server cuts them into batches of about 64 MiB of contents, not a
    whole block of entries); a file over 256 MiB is refused naming it (a file over 2 GiB used to panic the 32-bit
    offsets), and asking only other columns reads none of them."""
    registry = tmp_path / "registry"
    registry.mkdir()
    tree = tmp_path / "tree"
    (tree / "small").mkdir(parents=True)
    for i in range(3):
        (tree / "small" / f"f{i}.bin").write_bytes(bytes([i]) * (40 << 20))
    with open(tree / "big.bin", "wb") as f:  # sparse: cheap to write and hash
        f.truncate((256 << 20) + 1)
    Sheaf(str(registry)).push("c/files", tree, "--no-profile")
    c = flight_server(registry).client
    fi = info(c, "sheaf://c/files?content=true&partitions=1&filter=starts_with(logical_key, 'small/')")
    (endpoint,) = fi.endpoints
    got = c.do_get(endpoint.ticket, OPTIONS).read_all()
    assert got.column("logical_key").to_pylist() == [f"small/f{i}.bin" for i in range(3)]
    assert [v.as_py() == bytes([i]) * (40 << 20) for i, v in enumerate(got.column("content"))] == [True] * 3
    out = attempt(lambda: read(c, "sheaf://c/files?content=true"))
    assert out.code == "RESOURCE_EXHAUSTED", out.describe()
    assert "big.bin" in out.message and "268435457 bytes" in out.message, out.message
    keys = read(c, "sheaf://c/files?content=true&columns=logical_key,size")
    assert sorted(keys.column("logical_key").to_pylist()) == ["big.bin"] + [f"small/f{i}.bin" for i in range(3)]
