"""DoPut: an Arrow stream uploaded with pyarrow becomes a Parquet table in a
new revision, atomically: nothing is visible until the stream has ended
successfully, and a failed, invalid or conflicting upload commits nothing."""

from __future__ import annotations

import json
import threading

import flight_testlib as fl
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS, assert_same, hydrate, uri
from sheaf_testlib import HEX64, Sheaf


def put(client, target: str, table: pa.Table, chunk: int = 10_000) -> dict:
    writer, reader = client.do_put(flight.FlightDescriptor.for_command(target), table.schema, OPTIONS)
    writer.write_table(table, max_chunksize=chunk)
    writer.done_writing()
    result = reader.read()
    writer.close()
    assert result is not None, "DoPut returned no result"
    return json.loads(result.to_pybytes())


def revisions(client, package: str) -> list[dict]:
    return fl.action(client, "list_revisions", {"package": package})


def latest(client, package: str) -> str:
    return fl.action(client, "resolve", {"ref": package})["top_hash"]


@pytest.fixture
def server(registry, flight_server):
    return flight_server(registry, "--demo")


def test_put_creates_a_package_and_reads_back(server, registry):
    c = server.client
    table = fl.types_table(20_000)
    result = put(c, "sheaf://up/new/data/types.parquet?message=first%20upload", table)
    assert result["package"] == "up/new"
    assert HEX64.match(result["top_hash"])
    assert result["previous"] is None
    assert result["rows"] == table.num_rows
    assert result["path"] == "data/types.parquet"
    assert result["uri"] == f"sheaf://up/new@{result['top_hash']}/data/types.parquet"
    got = fl.read(c, result["uri"])
    assert_same(got, hydrate(table))
    revs = revisions(c, "up/new")
    assert len(revs) == 1 and revs[0]["top_hash"] == result["top_hash"]
    assert revs[0]["message"] == "first upload"
    # The registry stays consistent: installed files match their hashes.
    sheaf = Sheaf(str(registry))
    dest = registry.parent / "installed"
    sheaf.ok("install", "up/new", "--dest", str(dest))
    sheaf.ok("verify", "up/new", "--dir", str(dest))
    assert pq.read_table(dest / "data" / "types.parquet").num_rows == table.num_rows


def test_put_onto_an_existing_package_keeps_its_other_files(server):
    c = server.client
    before = latest(c, "demo/weather")
    before_tables = {t["path"] for t in fl.action(c, "list_tables", {"ref": "demo/weather"})["tables"]}
    table = pa.table({"x": pa.array(range(1000), pa.int64())})
    result = put(c, "sheaf://demo/weather/uploads/x.parquet", table)
    assert result["previous"] == before
    assert latest(c, "demo/weather") == result["top_hash"]
    after_tables = {t["path"] for t in fl.action(c, "list_tables", {"ref": "demo/weather"})["tables"]}
    assert before_tables | {"uploads/x.parquet", "uploads"} == after_tables
    # Tables of the previous revision read the same in the new one.
    assert_same(
        fl.read(c, uri("demo/weather", "tables/readings.parquet")),
        fl.read(c, uri("demo/weather", "tables/readings.parquet", rev="@" + before)),
    )
    assert revisions(c, "demo/weather")[0]["message"] == "put uploads/x.parquet"


def test_put_replaces_a_table_and_the_old_revision_stays_readable(server):
    c = server.client
    one = pa.table({"v": pa.array([1, 2, 3], pa.int64())})
    two = pa.table({"v": pa.array([4, 5], pa.int64()), "w": pa.array(["a", "b"])})
    r1 = put(c, "sheaf://up/rep/t.parquet", one)
    r2 = put(c, "sheaf://up/rep/t.parquet", two)
    assert r2["previous"] == r1["top_hash"]
    assert_same(fl.read(c, uri("up/rep", "t.parquet")), two)
    assert_same(fl.read(c, r1["uri"]), one)


def test_put_based_on_a_pinned_revision_fails_if_latest_moved(server):
    c = server.client
    t = pa.table({"v": pa.array([1], pa.int64())})
    r1 = put(c, "sheaf://up/cas/a.parquet", t)
    # Based on the current latest: fine.
    r2 = put(c, f"sheaf://up/cas@{r1['top_hash']}/b.parquet", t)
    assert r2["previous"] == r1["top_hash"]
    # Based on r1 again, now stale: ABORTED, nothing written.
    with pytest.raises(flight.FlightError) as e:
        put(c, f"sheaf://up/cas@{r1['top_hash'][:12]}/c.parquet", t)
    assert "aborted" in str(e.value).lower(), str(e.value)
    assert "latest of up/cas" in str(e.value) and r2["top_hash"] in str(e.value)
    assert latest(c, "up/cas") == r2["top_hash"]
    assert len(revisions(c, "up/cas")) == 2


NOT_FOUND = (pa.ArrowKeyError, "not found error")
INVALID_ARGUMENT = (pa.ArrowInvalid, "invalid argument error")


@pytest.mark.parametrize(
    "target, code, words",
    [
        ("sheaf://up/bad/x.csv", INVALID_ARGUMENT, ".parquet"),
        ("sheaf://up/bad/x.parquet?limit=3", INVALID_ARGUMENT, "unknown parameter"),
        ("sheaf://up/bad", INVALID_ARGUMENT, ".parquet"),
        ("sheaf://up/bad/../x.parquet", INVALID_ARGUMENT, "x.parquet"),
        ("sheaf://demo/weather:nosuchtag/x.parquet", NOT_FOUND, "nosuchtag"),
        (f"sheaf://demo/weather@{'0' * 64}/x.parquet", NOT_FOUND, "0" * 64),
        (f"sheaf://up/bad/{'n' * 256}.parquet", INVALID_ARGUMENT, "longer than 255 bytes"),
    ],
)
def test_bad_targets_commit_nothing(server, target, code, words):
    c = server.client
    before = fl.action(c, "list_packages")
    exc_type, phrase = code
    with pytest.raises(exc_type) as e:
        put(c, target, pa.table({"v": [1]}))
    assert phrase in str(e.value).lower() and words in str(e.value), str(e.value)
    assert fl.action(c, "list_packages") == before


def test_a_cancelled_upload_commits_nothing(server):
    """The client sends part of a stream and goes away: no revision."""
    c = server.client
    table = pa.table({"v": pa.array(range(100_000), pa.int64())})
    writer, reader = c.do_put(flight.FlightDescriptor.for_command("sheaf://up/cancel/t.parquet"), table.schema, OPTIONS)
    writer.write_table(table.slice(0, 50_000), max_chunksize=10_000)
    c.close()  # no done_writing: the call is cancelled
    c2 = server.connect()
    assert all(p["name"] != "up/cancel" for p in fl.action(c2, "list_packages"))


def test_an_empty_stream_with_a_schema_is_an_empty_table(server):
    c = server.client
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    result = put(c, "sheaf://up/empty/t.parquet", schema.empty_table())
    assert result["rows"] == 0
    got = fl.read(c, result["uri"])
    assert got.num_rows == 0 and got.schema.names == ["a", "b"]


def test_large_upload_in_many_batches(server, tmp_path):
    """Several hundred MB of row data would be slow here; 3M rows over many
    batches and messages larger than gRPC's default 4 MiB are enough."""
    c = server.client
    n = 3_000_000
    table = pa.table({"id": pa.array(range(n), pa.int64()), "f": pa.array([float(i) / 3 for i in range(n)])})
    result = put(c, "sheaf://up/big/t.parquet", table, chunk=700_000)  # ~11 MB messages
    assert result["rows"] == n
    got = fl.read(c, result["uri"])
    assert got.num_rows == n
    assert_same(got, table)


def test_concurrent_puts_to_one_package_all_land(server):
    """Eight clients put different tables at once: each lands in a revision
    of its own and the final latest holds all eight."""
    errors = []

    def one(i):
        try:
            c = server.connect()
            put(c, f"sheaf://up/many/t{i}.parquet", pa.table({"i": pa.array([i] * 100, pa.int64())}))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    c = server.client
    paths = {t["path"] for t in fl.action(c, "list_tables", {"ref": "up/many"})["tables"]}
    assert {f"t{i}.parquet" for i in range(8)} <= paths
    assert len(revisions(c, "up/many")) == 8
    for i in range(8):
        assert fl.read(c, uri("up/many", f"t{i}.parquet")).column("i").to_pylist() == [i] * 100


def test_put_file_is_quilt3_readable(server, registry, quilt3, tmp_path):
    """The revision DoPut writes is an ordinary quilt3 package revision."""
    c = server.client
    table = pa.table({"v": pa.array(range(10), pa.int64())})
    result = put(c, "sheaf://up/q3/t.parquet", table)
    pkg = quilt3.Package.browse("up/q3", registry=registry.as_uri(), top_hash=result["top_hash"])
    assert pkg.top_hash == result["top_hash"]
    dest = tmp_path / "q3.parquet"
    pkg["t.parquet"].fetch(str(dest))
    assert pq.read_table(dest).equals(table)


# ---------------------------------------------------------------------------
# Uploads that cannot be stored or decoded safely
# ---------------------------------------------------------------------------


def _raw_put(url: str, messages: list[bytes]) -> tuple[str, str]:
    """DoPut of hand-made FlightData messages over grpcio (pyarrow only sends well-formed ones): (code, details)."""
    import grpc

    channel = grpc.insecure_channel(url.removeprefix("grpc://"))
    call = channel.stream_stream(
        "/arrow.flight.protocol.FlightService/DoPut", request_serializer=lambda x: x, response_deserializer=lambda x: x
    )
    try:
        list(call(iter(messages), timeout=30))
        return "OK", ""
    except grpc.RpcError as e:
        return e.code().name, e.details()
    finally:
        channel.close()


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (numbers below 2048)."""
    key = number << 3 | 2
    head = bytes([key]) if key < 128 else bytes([key & 0x7F | 0x80, key >> 7])
    size, n = b"", len(payload)
    while True:
        size += bytes([n & 0x7F | (0x80 if n >> 7 else 0)])
        n >>= 7
        if not n:
            return head + size + payload


def test_batch_body_shorter_than_its_header_is_invalid_argument(server):
    """A record batch whose body is cut short (its header says more bytes): INVALID_ARGUMENT naming the cut, no
    panic in the log, nothing committed, and the server goes on."""
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64())})
    schema = pa.ipc.read_message(table.schema.serialize())
    batch = pa.ipc.read_message(table.to_batches()[0].serialize())
    header, body = batch.metadata.to_pybytes(), batch.body.to_pybytes()
    descriptor = b"\x08\x02" + _field(2, b"sheaf://up/cut/t.parquet")  # FlightDescriptor{type = CMD, cmd}
    first = _field(1, descriptor) + _field(2, schema.metadata.to_pybytes())
    for cut in (body[:-1], body[: len(body) // 2], b""):
        code, details = _raw_put(server.url, [first, _field(2, header) + (_field(1000, cut) if cut else b"")])
        assert code == "INVALID_ARGUMENT" and "cut short" in details, (code, details)
    assert "panicked" not in server.log_path.read_text()
    put(server.client, "sheaf://up/cut/t.parquet", table)
    assert len(revisions(server.client, "up/cut")) == 1, "the refused uploads committed something"


def test_uploads_no_reader_could_open_are_refused(server):
    """Two columns of one name, or more nested fields than the column limit (each is a Parquet column): refused
    before anything is written, naming the column or the count."""
    twice = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(pa.ArrowInvalid, match='two columns are named "a"'):
        put(server.client, "sheaf://up/dup/t.parquet", twice)
    wide = pa.StructArray.from_arrays([pa.array([1], pa.int8())] * 5000, names=[f"f{i}" for i in range(5000)])
    with pytest.raises(pa.ArrowInvalid, match="5000 counting the fields of nested ones"):
        put(server.client, "sheaf://up/wide/t.parquet", pa.table({"s": wide}))


def test_idle_uploads_hold_no_threads_and_others_are_served(server):
    """300 uploads that send a batch and then nothing: each held two of the
    server's blocking threads for its whole life, and at about 256 of them the
    pool that storage reads share ran out, so every other request hung. An
    upload now holds no thread while it waits for its client."""
    held = []
    try:
        for i in range(300):
            client = flight.FlightClient(server.url)
            writer, reader = client.do_put(
                flight.FlightDescriptor.for_command(f"sheaf://o/idle/t{i}.parquet"), pa.schema([("x", pa.int64())])
            )
            writer.write_table(pa.table({"x": [i]}))
            held.append((client, writer))
        options = flight.FlightCallOptions(timeout=60)
        info = server.client.get_flight_info(
            flight.FlightDescriptor.for_command(uri("demo/weather", "tables/readings.parquet")), options
        )
        assert server.client.do_get(info.endpoints[0].ticket, options).read_all().num_rows > 0
        done = put(flight.FlightClient(server.url), "sheaf://o/busy/t.parquet", pa.table({"x": [9]}))
        assert done["rows"] == 1
    finally:
        for client, writer in held:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - an upload ended by the server
                pass
            client.close()


def test_a_compressed_upload_may_not_inflate_past_a_message(server):
    """A zstd-compressed batch of 40M zeros is a few kilobytes on the wire and 320 MB once decompressed: a
    few such batches drove the server to 1.7 GB. Compressed or not, a message may carry what gRPC lets one
    carry (256 MiB): beyond, the upload is refused naming the target, nothing is written, and smaller
    compressed batches still work."""
    options = flight.FlightCallOptions(write_options=pa.ipc.IpcWriteOptions(compression="zstd"))
    zeros = pa.table({"x": pa.array(np.zeros(40_000_000, dtype=np.int64))})
    writer, reader = server.client.do_put(
        flight.FlightDescriptor.for_command("sheaf://o/zip/t.parquet"), zeros.schema, options
    )
    # The refusal may surface at any step (pyarrow reports a DoPut's status when the writer closes).
    with pytest.raises(pa.ArrowException) as failed:
        try:
            writer.write_table(zeros, max_chunksize=len(zeros))
            writer.done_writing()
            reader.read()
        finally:
            writer.close()
    assert "o/zip/t.parquet" in str(failed.value) and "bytes" in str(failed.value), failed.value
    assert "o/zip" not in [p["name"] for p in fl.action(server.client, "list_packages", {})]
    small = zeros.slice(0, 1_000_000)
    writer, reader = server.client.do_put(
        flight.FlightDescriptor.for_command("sheaf://o/zip/t.parquet"), small.schema, options
    )
    writer.write_table(small, max_chunksize=100_000)
    writer.done_writing()
    assert json.loads(reader.read().to_pybytes())["rows"] == 1_000_000
    writer.close()
