"""Write sessions against the real server: `client.writer` with several
tables and parts (from threads), aborts, sessions that are gone, explicit
commit and abort, commits and part uploads whose answer is lost retried
without duplicates, lineage (`derived_from=`, `track_lineage`,
`client.lineage`), and quilt3 reading every revision the write tests made.

What one write writes (kinds of data, refusals, modes, profiles): test_write.py.

Every test writes packages of its own (`w/<test>...`) into the shared test
server's registry."""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

import sheaf
from sheaf._proto import sheaf_pb2

from conftest import TIMEOUT, hashes, read
from testdata import features

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


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
    # And every revision the other write tests wrote: test_write.py runs before this file, and this test last in it.
    others = [p.name for p in client.list_packages("w/*") if p.name != "w/quilt" and p.latest]
    for package in others:
        assert_quilt3_reads(quilt3, data, client, package)
