"""Writes against the real server: `client.write`, `client.writer` sessions,
write modes, lineage (`derived_from=`, `track_lineage`, `client.lineage`),
commit retries, quilt3 reading what was written, and the profile each table
gets in its manifest entry.

Every test writes packages of its own (`w/<test>...`) into the shared test
server's registry."""

from __future__ import annotations

import math
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import sheaf
from sheaf._proto import sheaf_pb2

import testdata
from conftest import TIMEOUT

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def plain(table: pa.Table) -> pa.Table:
    """A table without schema metadata (the server does not serve it back)."""
    return table.replace_schema_metadata(None)


def read(client, uri: str) -> pa.Table:
    return client.dataset(uri).to_table()


def features(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "x": rng.standard_normal(n),
            "k": rng.integers(0, 50, n).astype(np.int32),
            "name": pa.array([f"n{i % 97}" for i in ids], pa.string()),
        }
    )


def hashes(client, package: str) -> list[str]:
    try:
        return [r.top_hash for r in client.list_revisions(package)]
    except sheaf.NotFoundError:
        return []


@pytest.fixture(scope="module")
def quilt3(tmp_path_factory):
    """quilt3, imported with its config, cache and data in a temporary home
    (it reads their locations when imported), without usage metrics."""
    home = tmp_path_factory.mktemp("quilt3-home")
    env = {
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "QUILT_DISABLE_USAGE_METRICS": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import quilt3 as q
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return q


def assert_quilt3_reads(quilt3, data, client, package: str) -> None:
    """quilt3 browses every revision of `package` with the same top hash,
    the same entries and the same user metadata as the server."""
    registry = data.registry.resolve().as_uri()
    revisions = client.list_revisions(package)
    assert revisions
    for rev in revisions:
        pkg = quilt3.Package.browse(package, registry=registry, top_hash=rev.top_hash)
        assert pkg.top_hash == rev.top_hash
        mine = client.browse(f"{package}@{rev.top_hash}")
        assert sorted(lk for lk, _ in pkg.walk()) == sorted(e.logical_key for e in mine.entries)
        assert (pkg.meta or None) == (mine.user_meta or None)
        for lk, entry in pkg.walk():
            (same,) = [e for e in mine.entries if e.logical_key == lk]
            assert entry.size == same.size and entry.hash["value"] == same.hash


# ---------------------------------------------------------------------------
# client.write: every kind of data round-trips
# ---------------------------------------------------------------------------


def test_write_a_table_returns_the_new_revision(client, data):
    table = testdata.types_table()
    result = client.write("sheaf://w/table/tables/types.parquet", table, message="types", metadata={"team": "ml"})
    assert isinstance(result, str) and isinstance(result, sheaf.WriteResult)
    assert result == result.top_hash == client.resolve("w/table")
    assert result.package == "w/table" and result.previous is None
    assert result.uri.startswith(f"sheaf://w/table@{result.top_hash}/tables/types.parquet")
    assert result.uris == (result.uri,) and result.rows == table.num_rows and result.bytes > 0
    assert result.ref == f"w/table@{result.top_hash}" and result.top_hash in repr(result)
    got = read(client, result.uri)
    assert got.schema == plain(table).schema
    assert got.equals(plain(table))
    rev = client.browse(result.ref)
    assert rev.message == "types" and rev.user_meta["team"] == "ml"
    assert [e.logical_key for e in rev.entries] == ["tables/types.parquet"]
    (latest,) = client.list_revisions("w/table")
    assert latest.top_hash == result and latest.message == "types"


def test_write_without_scheme_and_of_a_record_batch(client, data):
    batch = features(1_000).to_batches()[0]
    result = client.write("w/batch/one.parquet", batch)
    assert read(client, "sheaf://w/batch/one.parquet").equals(pa.Table.from_batches([batch]))
    assert result.previous is None


def test_write_pandas_round_trips(client, data):
    import pandas

    df = pandas.DataFrame(
        {
            "id": np.arange(500, dtype=np.int64),
            "score": [None if i % 7 == 0 else i * 0.5 for i in range(500)],
            "name": [None if i % 5 == 0 else f"row {i} é" for i in range(500)],
            "flag": [i % 3 == 0 for i in range(500)],
            "day": pandas.date_range("2026-01-01", periods=500, freq="h"),
            "cat": pandas.Categorical([["a", "b", "c"][i % 3] for i in range(500)]),
        }
    )
    result = client.write("sheaf://w/pandas/frame.parquet", df)
    got = client.dataset(result.uri).to_pandas()
    # The server serves dictionary columns decoded: a categorical comes back as its values.
    assert got["cat"].tolist() == df["cat"].tolist()
    got["cat"] = got["cat"].astype(df["cat"].dtype)
    pandas.testing.assert_frame_equal(got, df)


def test_write_polars_round_trips(client, data):
    import polars
    from polars.testing import assert_frame_equal

    df = polars.DataFrame(
        {
            "id": list(range(400)),
            "x": [None if i % 9 == 0 else i / 3 for i in range(400)],
            "s": [f"s{i}" if i % 4 else None for i in range(400)],
            "tags": [[i, i + 1][: i % 3] for i in range(400)],
        }
    )
    result = client.write("sheaf://w/polars/frame.parquet", df)
    assert_frame_equal(client.dataset(result.uri).to_polars(), df)


def test_write_an_iterable_of_batches_into_a_folder(client, data):
    tables = [features(700, start=700 * i, seed=i) for i in range(5)]
    result = client.write("sheaf://w/iterable/events", (t.to_batches()[0] for t in tables))
    got = read(client, "sheaf://w/iterable/events")
    assert got.equals(pa.concat_tables(tables))
    (key,) = result.keys
    assert key.startswith("events/part-") and key.endswith(".parquet")
    assert [e.logical_key for e in client.browse("w/iterable").entries] == [key]


def test_a_reader_of_many_batches_is_streamed_not_gathered(client, data):
    """A RecordBatchReader of 40 batches of 4 MB: the batches go to the
    server as they are made, so Arrow memory never holds more than a few."""
    rows, batches = 125_000, 40
    base = pa.array(np.arange(rows, dtype=np.int64))
    batch_bytes = 4 * rows * 8
    start = pa.total_allocated_bytes()
    peak = [0]
    made = [0]

    def generate():
        for i in range(batches):
            # Allocated in Arrow's pool (pa.total_allocated_bytes counts it).
            cols = [pc.add(base, i * rows), pc.multiply(base, 2), pc.add(base, 7), pc.subtract(base, i)]
            batch = pa.RecordBatch.from_arrays(cols, names=["id", "a", "b", "c"])
            del cols
            peak[0] = max(peak[0], pa.total_allocated_bytes() - start)
            made[0] += 1
            yield batch

    schema = pa.schema([("id", pa.int64()), ("a", pa.int64()), ("b", pa.int64()), ("c", pa.int64())])
    result = client.write("sheaf://w/stream/big", pa.RecordBatchReader.from_batches(schema, generate()))
    assert made[0] == batches and result.rows == rows * batches
    assert peak[0] < 6 * batch_bytes, f"Arrow memory grew by {peak[0]:,} B writing {batches * batch_bytes:,} B"
    got = client.dataset("sheaf://w/stream/big", columns=["id"]).to_table().column("id")
    assert got.to_numpy().tolist() == list(range(rows * batches))


def test_a_failing_data_source_leaves_no_revision(client, data):
    client.write("w/fails/t.parquet", features(10))
    before = hashes(client, "w/fails")

    def broken():
        yield features(10).to_batches()[0]
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        client.write("w/fails/t.parquet", broken())
    with pytest.raises(RuntimeError, match="source broke"):
        client.write("w/fails/new", broken())
    assert hashes(client, "w/fails") == before


@pytest.mark.parametrize(
    "target,data_,match",
    [
        ("w/bad", features(3), "names no table"),
        ("sheaf://w/bad/", features(3), "names no table"),
        ("s3://w/bad/t.parquet", features(3), "no other scheme"),
        ("sheaf://w/bad/t.parquet?columns=a", features(3), "no query"),
        ("w//t.parquet", features(3), "owner/name"),
        ("bad/t.parquet", features(3), "names no table"),
        ("w/bad/t.parquet", "not data", "cannot write a builtins.str"),
        ("w/bad/t.parquet", {"a": [1]}, "cannot write a builtins.dict"),
        ("w/bad/t.parquet", iter([]), "no record batch"),
        ("w/bad/t.parquet", [features(3).to_batches()[0], features(3).select(["id", "k"]).to_batches()[0]], "'x'"),
        ("w/bad/t.parquet", [1, 2], "not a pyarrow.RecordBatch"),
    ],
)
def test_bad_writes_are_refused_by_the_client(client, data, target, data_, match):
    with pytest.raises(sheaf.InvalidArgumentError, match=match) as e:
        client.write(target, data_)
    assert e.value.code == "CLIENT"
    assert hashes(client, "w/bad") == []


def test_a_dataframe_arrow_cannot_hold_is_refused_naming_the_column(client, data):
    import pandas

    df = pandas.DataFrame({"id": [1, 2], "mixed": [1, "two"]})
    with pytest.raises(sheaf.InvalidArgumentError, match="mixed") as e:
        client.write("w/bad/t.parquet", df)
    assert e.value.code == "CLIENT" and hashes(client, "w/bad") == []


def test_bad_options_are_refused(client, data):
    with pytest.raises(sheaf.InvalidArgumentError, match="mode='upsert'"):
        client.write("w/bad/t.parquet", features(3), mode="upsert")
    with pytest.raises(sheaf.InvalidArgumentError, match="metadata= must be a dict"):
        client.write("w/bad/t.parquet", features(3), metadata=["x"])
    with pytest.raises(sheaf.InvalidArgumentError, match="not JSON"):
        client.write("w/bad/t.parquet", features(3), metadata={"x": float("nan")})
    with pytest.raises(sheaf.InvalidArgumentError, match="derived_from"):
        client.write("w/bad/t.parquet", features(3), derived_from=[42])
    assert hashes(client, "w/bad") == []


def test_a_column_parquet_cannot_store_is_refused_by_the_server(client, data):
    interval = pa.array([(1, 2, 3), None], pa.month_day_nano_interval())
    table = pa.table({"id": [1, 2], "span": interval})
    with pytest.raises(sheaf.InvalidArgumentError) as e:
        client.write("w/badcol/t.parquet", table)
    assert e.value.code == "INVALID_ARGUMENT" and e.value.reason == "INVALID_REQUEST"
    assert e.value.column == "span" and "span" in e.value.server_message
    assert hashes(client, "w/badcol") == []


# ---------------------------------------------------------------------------
# Writer sessions
# ---------------------------------------------------------------------------


def test_writer_commits_several_tables_as_one_revision(client, data):
    train, test_ = features(1_000, seed=1), features(300, start=1_000, seed=2)
    with client.writer("w/multi", message="split", metadata={"split": 0.77}) as w:
        assert w.state == "new" and w.top_hash is None
        a = w.write("train.parquet", train)
        b = w.write("test.parquet", test_.to_pandas())
        c = w.write("events", iter(features(200, seed=3).to_batches()))
        assert w.state == "open" and w.session
        assert (a.rows, b.rows, c.rows) == (1_000, 300, 200) and a.part_id != b.part_id != c.part_id
    assert w.state == "committed" and w.top_hash == client.resolve("w/multi")
    assert len(client.list_revisions("w/multi")) == 1
    assert w.parts == (a, b, c) and w.result.rows == 1_500
    assert read(client, "sheaf://w/multi/train.parquet").equals(train)
    # Through pandas (3: str columns are Arrow large_string).
    assert read(client, "sheaf://w/multi/test.parquet").cast(test_.schema).equals(test_)
    assert read(client, "sheaf://w/multi/events").num_rows == 200
    assert sorted(u.split("?")[0] for u in w.result.uris) == sorted(
        f"sheaf://w/multi@{w.top_hash}/{p}" for p in ("events", "test.parquet", "train.parquet")
    )
    assert client.browse("w/multi").user_meta["split"] == 0.77
    assert w.commit() is w.result  # committing again answers the same


def test_parts_of_a_folder_from_threads_are_ordered_by_position(client, data):
    chunks = [features(250, start=250 * i, seed=i) for i in range(6)]
    with client.writer("w/threads", message="parallel") as w:
        with ThreadPoolExecutor(3) as pool:
            parts = list(pool.map(lambda i: w.write("features", chunks[i], part=i), reversed(range(6))))
    assert sorted(p.part for p in parts) == list(range(6))
    assert read(client, "sheaf://w/threads/features").equals(pa.concat_tables(chunks))
    assert len(client.browse("w/threads", prefix="features/").entries) == 6


def test_an_exception_in_the_block_leaves_no_revision(client, data):
    client.write("w/aborted/keep.parquet", features(5))
    before = client.list_revisions("w/aborted")
    with pytest.raises(KeyError, match="inside the block"):
        with client.writer("w/aborted", message="never") as w:
            w.write("keep.parquet", features(50))
            w.write("more", features(50))
            raise KeyError("inside the block")
    assert w.state == "aborted" and w.top_hash is None
    assert client.list_revisions("w/aborted") == before
    assert read(client, "sheaf://w/aborted/keep.parquet").num_rows == 5
    # The server dropped the session: it cannot be committed any more.
    with pytest.raises(sheaf.SessionNotFoundError) as e:
        client._call("commit_write", sheaf_pb2.CommitWriteRequest(session=w.session), sheaf_pb2.CommitWriteResponse)
    assert e.value.reason == "SESSION_NOT_FOUND" and isinstance(e.value, sheaf.NotFoundError)
    with pytest.raises(sheaf.SheafError, match="aborted"):
        w.write("x.parquet", features(1))


def test_a_session_gone_or_of_another_package_is_refused(client, data):
    w = client.writer("w/gone")
    w.write("a.parquet", features(10))
    client._call("abort_write", sheaf_pb2.AbortWriteRequest(session=w.session), sheaf_pb2.AbortWriteResponse)
    with pytest.raises(sheaf.SessionNotFoundError) as e:
        w.write("b.parquet", features(10))  # the DoPut names an aborted session
    assert e.value.reason == "SESSION_NOT_FOUND" and e.value.code == "NOT_FOUND"
    with pytest.raises(sheaf.SessionNotFoundError):
        w.commit()
    w.abort()  # already gone on the server: nothing to do
    assert hashes(client, "w/gone") == []
    mine = client.writer("w/gone-a")
    mine.write("a.parquet", features(1))
    other = client.writer("w/gone-b")
    other._session = mine.session  # a session of another package
    with pytest.raises(sheaf.SessionNotFoundError):
        other.write("a.parquet", features(1))
    mine.commit()
    assert hashes(client, "w/gone-b") == [] and len(hashes(client, "w/gone-a")) == 1


def test_explicit_commit_and_abort(client, data):
    w = client.writer("w/explicit", message="explicit")
    w.write("a.parquet", features(10))
    top = w.commit()
    assert top == w.top_hash == client.resolve("w/explicit")
    with pytest.raises(sheaf.SheafError, match="committed already"):
        w.abort()
    with pytest.raises(sheaf.SheafError, match="committed already"):
        w.write("b.parquet", features(1))
    v = client.writer("w/explicit")
    v.write("b.parquet", features(10))
    v.abort()
    v.abort()  # nothing more to do
    assert hashes(client, "w/explicit") == [top]
    nothing = client.writer("w/explicit")
    nothing.abort()  # never opened: no call at all
    assert nothing.state == "aborted" and nothing.session is None


def test_a_retried_commit_answers_the_same_revision(client, data):
    with client.writer("w/retry") as w:
        w.write("t.parquet", features(20))
        # A retried begin_write (same idempotency key) answers the same session.
        again = client._call(
            "begin_write",
            sheaf_pb2.BeginWriteRequest(package="w/retry", idempotency_key=w.idempotency_key),
            sheaf_pb2.BeginWriteResponse,
        )
        assert again.session == w.session
    again = client._call(
        "commit_write",
        sheaf_pb2.CommitWriteRequest(session=w.session, parts=[p.part_id for p in w.parts]),
        sheaf_pb2.CommitWriteResponse,
    )
    assert again.top_hash == w.top_hash
    assert hashes(client, "w/retry") == [w.top_hash]


class DroppingProxy:
    """A TCP proxy in front of the server that, once armed, cuts the
    connection as the server answers the next call: the call's request
    reaches the server and is carried out, its response is lost (the HTTP/2
    frames from the server are read one by one; the first DATA frame of a
    call is never passed on)."""

    def __init__(self, upstream: str):
        host, port = upstream.rsplit("//", 1)[1].rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"grpc://127.0.0.1:{self.listener.getsockname()[1]}"
        self.armed = threading.Event()
        self.dropped = 0
        self.connections = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            self.connections += 1
            self.sockets += [down, up]
            threading.Thread(target=self._requests, args=(down, up), daemon=True).start()
            threading.Thread(target=self._responses, args=(up, down), daemon=True).start()

    @staticmethod
    def _cut(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self, down: socket.socket, up: socket.socket) -> None:
        try:
            while chunk := down.recv(65536):
                up.sendall(chunk)
        except OSError:
            pass
        self._cut(down, up)

    def _responses(self, up: socket.socket, down: socket.socket) -> None:
        buf = b""
        try:
            while chunk := up.recv(65536):
                buf += chunk
                out = b""
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    kind, stream = buf[3], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                    frame, buf = buf[: 9 + length], buf[9 + length :]
                    if kind == 0 and stream != 0 and length > 0 and self.armed.is_set():
                        self.armed.clear()
                        self.dropped += 1
                        if out:
                            down.sendall(out)
                        self._cut(up, down)
                        return
                    out += frame
                if out:
                    down.sendall(out)
        except OSError:
            pass
        self._cut(up, down)

    def close(self) -> None:
        self._cut(self.listener, *self.sockets)


def test_answers_lost_on_the_way_are_retried_without_duplicates(data):
    proxy = DroppingProxy(data.url)
    client = sheaf.connect(proxy.url, timeout=TIMEOUT, read_timeout=TIMEOUT)
    try:
        client.write("w/lost/first.parquet", features(5))
        before = hashes(client, "w/lost")
        w = client.writer("w/lost", message="answer lost once")
        w.write("t.parquet", features(30))
        proxy.armed.set()
        top = w.commit()
        assert proxy.dropped == 1 and proxy.connections >= 2  # the first answer was lost, a retry reconnected
        revisions = hashes(client, "w/lost")
        assert revisions == [top, *before]  # exactly one new revision, the one answered
        assert read(client, "sheaf://w/lost/t.parquet").num_rows == 30
        # A part whose PutResult is lost (the server staged it) is uploaded again; only the
        # part answered is committed, so the folder holds the rows once.
        w = client.writer("w/lost", message="part answer lost once")
        proxy.armed.set()
        part = w.write("f", features(40))
        assert proxy.dropped == 2
        w.commit()
        assert read(client, "sheaf://w/lost/f").equals(features(40))
        assert [e.logical_key for e in client.browse("w/lost", prefix="f/").entries] == [part.key]
    finally:
        client.close()
        proxy.close()


# ---------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------


def test_mode_error_refuses_an_existing_table(client, data):
    first = client.write("w/modes-error/t.parquet", features(10), mode="error")
    client.write("w/modes-error/f", features(10), mode="error")
    for target in ("w/modes-error/t.parquet", "w/modes-error/f"):
        with pytest.raises(sheaf.AlreadyExistsError) as e:
            client.write(target, features(3), mode="error")
        assert e.value.reason == "ALREADY_EXISTS" and isinstance(e.value, FileExistsError)
        assert e.value.path == target.split("/", 2)[2] and e.value.package == "w/modes-error"
    assert len(hashes(client, "w/modes-error")) == 2 and first in hashes(client, "w/modes-error")
    client.write("w/modes-error/other.parquet", features(3), mode="error")  # a new table is fine


def test_mode_append_and_overwrite(client, data):
    a, b, c = features(100, seed=1), features(50, start=100, seed=2), features(7, start=500, seed=3)
    client.write("w/modes/f", a)
    client.write("w/modes/f", b)  # append is the default
    assert read(client, "sheaf://w/modes/f").equals(pa.concat_tables([a, b]))
    assert len(client.browse("w/modes", prefix="f/").entries) == 2
    client.write("w/modes/f", c, mode="overwrite")
    assert read(client, "sheaf://w/modes/f").equals(c)
    assert len(client.browse("w/modes", prefix="f/").entries) == 1
    client.write("w/modes/t.parquet", a)
    client.write("w/modes/t.parquet", c, mode="append")  # a file is replaced
    assert read(client, "sheaf://w/modes/t.parquet").equals(c)
    client.write("w/modes/t.parquet", b, mode="overwrite")
    assert read(client, "sheaf://w/modes/t.parquet").equals(b)
    assert len(client.list_revisions("w/modes")) == 6


def test_append_with_another_schema_names_the_column(client, data):
    client.write("w/schema/f", features(10))
    before = hashes(client, "w/schema")
    other = features(10).set_column(1, "x", pa.array([str(i) for i in range(10)]))
    with pytest.raises(sheaf.SchemaMismatchError) as e:
        client.write("w/schema/f", other)
    assert e.value.reason == "SCHEMA_MISMATCH" and e.value.column == "x" and isinstance(e.value, ValueError)
    assert "x" in e.value.server_message
    with pytest.raises(sheaf.SchemaMismatchError) as e:
        client.write("w/schema/f", features(10).append_column("extra", pa.array(range(10))))
    assert e.value.column == "extra" and e.value.path == "f"
    assert hashes(client, "w/schema") == before
    client.write("w/schema/f", other, mode="overwrite")  # replacing the table is fine
    assert read(client, "sheaf://w/schema/f").schema == other.schema


def test_base_must_still_be_latest(client, data):
    first = client.write("w/base/t.parquet", features(3))
    second = client.write(f"w/base@{first[:10]}/t.parquet", features(4))  # first is latest: fine
    with pytest.raises(sheaf.SheafError) as e:
        client.write("w/base/u.parquet", features(5), base=first)
    assert e.value.reason == "LATEST_MOVED"
    assert hashes(client, "w/base") == [second, first]


# ---------------------------------------------------------------------------
# Lineage
# ---------------------------------------------------------------------------


def lineage_of(client, ref: str) -> dict:
    return client.browse(ref).user_meta["sheaf"]["lineage"]


def test_derived_from_is_recorded_and_walked(client, data):
    a = client.write("w/lineage-a/raw.parquet", features(100), message="raw")
    raw = client.dataset(a.uri, columns=["id", "x"])
    b = client.write("w/lineage-b/clean.parquet", raw.to_table(), message="clean", derived_from=raw)
    tiny = client.dataset("sheaf://test/tables:v1/tables/tiny.parquet")
    c = client.write(
        "w/lineage-c/report.parquet",
        features(3),
        message="report",
        metadata={"owner": "me"},
        derived_from=["sheaf://w/lineage-b/clean.parquet", "test/tables:v1", tiny],
    )
    meta = client.browse(c.ref).user_meta
    assert meta["owner"] == "me"
    lineage = meta["sheaf"]["lineage"]
    assert lineage["writer"]["tool"] == f"sheaf-python {sheaf.__version__}"
    assert "principal" in lineage["writer"]
    v1 = data.tops["test/tables@v1"]
    inputs = lineage["inputs"]
    assert [(i["package"], i["top_hash"]) for i in inputs] == [
        ("w/lineage-b", b.top_hash),
        ("test/tables", v1),
        ("test/tables", v1),
    ]
    assert inputs[0]["uri"].startswith(f"sheaf://w/lineage-b@{b.top_hash}/clean.parquet")
    assert inputs[1]["uri"].startswith(f"sheaf://test/tables@{v1}")
    assert inputs[2]["uri"] == tiny.pinned_uri
    assert lineage_of(client, b.ref)["inputs"] == [{"package": "w/lineage-a", "top_hash": a, "uri": raw.pinned_uri}]

    nodes = client.lineage("w/lineage-c")
    assert [(n.package, n.top_hash, n.depth) for n in nodes] == [
        ("w/lineage-c", c, 0),
        ("w/lineage-b", b, 1),
        ("test/tables", v1, 1),
        ("w/lineage-a", a, 2),
    ]
    assert nodes[0].message == "report" and nodes[0].tool == f"sheaf-python {sheaf.__version__}"
    assert nodes[0].inputs[0] == sheaf.LineageInput("w/lineage-b", b, inputs[0]["uri"])
    assert nodes[1].inputs == (sheaf.LineageInput("w/lineage-a", a, raw.pinned_uri),)
    assert nodes[3].inputs == () and nodes[3].ref == f"w/lineage-a@{a}"
    assert [n.package for n in client.lineage(f"w/lineage-c@{c[:12]}", depth=1)] == [
        "w/lineage-c",
        "w/lineage-b",
        "test/tables",
    ]


def test_track_lineage_records_what_the_client_read(client, data):
    v1 = data.tops["test/tables@v1"]
    source = client.write("w/tracked-src/raw.parquet", features(10))
    with client.track_lineage() as tracked:
        numbers = client.dataset("sheaf://test/tables:v1/tables/numbers.parquet", columns=["id", "x"], limit=10)
        numbers.to_table()
        numbers.endpoint_rows()  # the client's own re-plans are not inputs of their own
        client.read_file("test/files", "README.md")
        top = client.write("w/tracked/out.parquet", features(10))
        with client.writer("w/tracked", derived_from="sheaf://w/tracked-src/raw.parquet") as w:
            w.write("more.parquet", features(5))
    assert [(i.package, i.top_hash) for i in tracked.inputs] == [
        ("test/tables", v1),
        ("test/files", data.tops["test/files"]),
    ]
    assert tracked.inputs[0].uri == numbers.pinned_uri
    recorded = lineage_of(client, top.ref)["inputs"]
    assert [(i["package"], i["top_hash"], i["uri"]) for i in recorded] == [
        (i.package, i.top_hash, i.uri) for i in tracked.inputs
    ]
    # derived_from= first (resolved without being tracked), then what was tracked.
    second = lineage_of(client, w.result.ref)["inputs"]
    assert [(i["package"], i["top_hash"]) for i in second] == [
        ("w/tracked-src", source.top_hash),
        ("test/tables", v1),
        ("test/files", data.tops["test/files"]),
    ]
    untracked = client.write("w/tracked/after.parquet", features(1))
    assert lineage_of(client, untracked.ref)["inputs"] == []


# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------


def profile_table(n: int = 20_000) -> pa.Table:
    rng = np.random.default_rng(11)
    return pa.table(
        {
            "i": pa.array(rng.integers(-1000, 1000, n), pa.int64()),
            "f": pa.array([None if i % 13 == 0 else v for i, v in enumerate(rng.normal(5, 2, n))], pa.float64()),
            "s": pa.array([None if i % 17 == 0 else f"w{v}" for i, v in enumerate(rng.integers(0, 3000, n))]),
            "u": pa.array(rng.integers(0, 100, n).astype(np.uint8)),
        }
    )


def test_every_written_table_has_a_profile_matching_pandas(client, data):
    table = profile_table()
    result = client.write("w/profile/t.parquet", table)
    (entry,) = client.browse(result.ref).entries
    profile = entry.profile
    assert profile is not None and profile == entry.meta["sheaf"]["profile"]
    df = table.to_pandas()
    assert profile["rows"] == len(df)
    columns = {c["name"]: c for c in profile["columns"]}
    assert list(columns) == list(df.columns)
    nulls = df.isna().sum()
    described = df.describe()
    for name in df.columns:
        col = columns[name]
        assert col["nulls"] == nulls[name], name
        assert abs(col["distinct"] - df[name].nunique()) <= 0.03 * df[name].nunique() + 1, (name, col["distinct"])
        if name == "s":
            assert col["min"] == df[name].min() and col["max"] == df[name].max()
            continue
        assert col["min"] == described[name]["min"] and col["max"] == described[name]["max"], name
        assert math.isclose(col["mean"], described[name]["mean"], rel_tol=1e-9), name
        assert math.isclose(col["std"], described[name]["std"], rel_tol=1e-9), name  # sample std (ddof=1)
        quantiles = col["quantiles"]  # from a sample: approximate, in order, within [min, max]
        assert len(quantiles) == 21 and quantiles == sorted(quantiles), name
        assert quantiles[0] >= col["min"] and quantiles[-1] <= col["max"], name
        assert abs(quantiles[10] - df[name].median()) <= 0.1 * described[name]["std"] + 1, name


# ---------------------------------------------------------------------------
# quilt3 reads every written revision
# ---------------------------------------------------------------------------


def test_quilt3_browses_every_written_revision(client, data, quilt3):
    client.write("w/quilt/t.parquet", features(100), message="one", metadata={"k": [1, 2.5, "é"]})
    client.write("w/quilt/f", features(10), message="two")  # metadata kept from the base
    with client.writer("w/quilt", message="three", derived_from="sheaf://test/tables:v1/tables/tiny.parquet") as w:
        w.write("f", features(10, start=10))
        w.write("g.parquet", features(5).to_pandas())
    client.write("w/quilt/f", features(1), mode="overwrite", metadata={})
    assert len(client.list_revisions("w/quilt")) == 4
    assert_quilt3_reads(quilt3, data, client, "w/quilt")
    # And every revision the other tests of this file wrote (this test runs last).
    others = [p.name for p in client.list_packages("w/*") if p.name != "w/quilt" and p.latest]
    for package in others:
        assert_quilt3_reads(quilt3, data, client, package)
