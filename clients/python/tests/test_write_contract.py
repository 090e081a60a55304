"""The write side of the wire contract (proto/sheaf.proto), against a pyarrow
Flight server on loopback that plays the server's part (fakes.FakeWrites):
begin_write with its typed request, one typed DoPut per part answered with a
binary `PutResponse`, commit_write listing the parts uploaded (retried in the
same session when its answer is lost), abort_write when the block fails,
lineage, and `derived_from=` pinned by planning.

Writes against the real server are tested in test_write.py and
test_write_sessions.py.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

import sheaf
from sheaf import _write_data
from sheaf._proto import sheaf_pb2

from fakes import TOP


def test_a_write_is_begin_one_typed_put_and_commit(writes, writes_client):
    table = pa.table({"id": pa.array(range(7), pa.int64())})
    result = writes_client.write(
        "sheaf://x/y@abcdef/dir/t.parquet",
        table,
        message="m",
        metadata={"k": 1},
        mode="overwrite",
        derived_from=sheaf.LineageInput("a/b", "cd" * 32, "sheaf://a/b@cd/t"),
    )
    (begin,) = writes.begins
    assert begin.package == "x/y" and begin.base == "abcdef" and begin.message == "m"
    assert begin.mode == sheaf_pb2.WRITE_MODE_OVERWRITE and begin.metadata == '{"k": 1}'
    assert begin.tool == f"sheaf-python {sheaf.__version__}" and len(begin.idempotency_key) >= 16
    assert list(begin.inputs) == [sheaf_pb2.LineageInput(package="a/b", top_hash="cd" * 32, uri="sheaf://a/b@cd/t")]
    assert not begin.HasField("ttl_seconds")
    ((put, rows),) = writes.puts
    assert put == sheaf_pb2.DatasetRequest(package="x/y", path="dir/t.parquet", session="s1") and rows == 7
    (commit,) = writes.commits
    assert commit == sheaf_pb2.CommitWriteRequest(session="s1", parts=["p1"])  # the parts it uploaded, listed
    assert result == f"{1:064x}" and result.uri == f"sheaf://x/y@{result}/t.parquet" and result.rows == 7
    assert writes.aborts == []


def test_writer_parts_positions_and_defaults(writes, writes_client):
    with writes_client.writer("x/y") as w:
        w.write("/f/", pa.table({"a": [1]}), part=3)
        w.write("f", [pa.record_batch({"a": [2, 3]})])
    begin = writes.begins[0]
    assert begin.mode == sheaf_pb2.WRITE_MODE_APPEND and not begin.HasField("base")
    assert not begin.HasField("message") and not begin.HasField("metadata") and list(begin.inputs) == []
    assert [(p.path, p.HasField("part"), p.part, rows) for p, rows in writes.puts] == [
        ("f", True, 3, 1),
        ("f", False, 0, 2),
    ]
    assert list(writes.commits[0].parts) == ["p1", "p2"]


def test_big_batches_are_sent_in_slices(writes, writes_client, monkeypatch):
    monkeypatch.setattr(_write_data, "MAX_BATCH_ROWS", 1000)
    writes_client.write("x/y/t.parquet", pa.table({"a": pa.array(range(4500), pa.int64())}))
    assert writes.puts[0][1] == 4500


def test_a_lost_commit_answer_is_retried_in_the_same_session(writes, writes_client, monkeypatch):
    monkeypatch.setattr(sheaf.write, "BACKOFF", (0.01,))
    writes.lose_commits = 2
    with writes_client.writer("x/y") as w:
        w.write("t.parquet", pa.table({"a": [1]}))
    assert [c.session for c in writes.commits] == ["s1", "s1", "s1"]
    assert w.top_hash == writes.committed["s1"] and len(writes.committed) == 1


def test_a_lost_upload_of_data_in_memory_is_sent_again(writes, writes_client, monkeypatch):
    monkeypatch.setattr(sheaf.write, "BACKOFF", (0.01,))
    writes.lose_puts = 1
    with writes_client.writer("x/y") as w:
        part = w.write("t.parquet", pa.table({"a": [1, 2]}))
    assert part.part_id == "p2" and [rows for _, rows in writes.puts] == [2, 2]
    assert list(writes.commits[0].parts) == ["p2"]  # the part staged by the lost upload is left out
    writes.lose_puts = 1
    with pytest.raises(sheaf.UnavailableError):  # a stream cannot be sent again
        with writes_client.writer("x/y") as w:
            w.write("t.parquet", iter([pa.record_batch({"a": [1]})]))
    assert writes.aborts == [w.session]


def test_commit_gives_up_after_its_attempts(writes, writes_client, monkeypatch):
    monkeypatch.setattr(sheaf.write, "BACKOFF", (0.01,))
    writes.lose_commits = 100
    w = writes_client.writer("x/y")
    w.write("t.parquet", pa.table({"a": [1]}))
    with pytest.raises(sheaf.UnavailableError, match="connection lost"):
        w.commit()
    assert len(writes.commits) == sheaf.write.ATTEMPTS and w.state == "open"


def test_an_exception_in_the_block_aborts(writes, writes_client):
    with pytest.raises(ZeroDivisionError):
        with writes_client.writer("x/y") as w:
            w.write("t.parquet", pa.table({"a": [1]}))
            1 / 0  # noqa: B018
    assert writes.aborts == ["s1"] and writes.commits == [] and w.state == "aborted"
    with pytest.raises(ZeroDivisionError):
        with writes_client.writer("x/y"):
            1 / 0  # noqa: B018
    assert writes.aborts == ["s1"] and len(writes.begins) == 1  # never opened: nothing to abort


def test_a_failed_source_is_not_committed(writes, writes_client):
    def broken():
        yield pa.record_batch({"a": [1]})
        raise OSError("disk")

    with writes_client.writer("x/y") as w:
        w.write("good.parquet", pa.table({"a": [1]}))
        with pytest.raises(OSError, match="disk"):
            w.write("bad.parquet", broken())
    assert list(writes.commits[0].parts) == ["p1"]  # whatever the server staged of the broken part is left out
    w2 = writes_client.writer("x/y")
    with pytest.raises(OSError, match="disk"):
        w2.write("bad.parquet", broken())
    with pytest.raises(sheaf.SheafError, match="every part upload of this session failed"):
        w2.commit()


def test_lineage_nodes(writes, writes_client):
    nodes = writes_client.lineage("x/y", depth=3)
    assert nodes[0] == sheaf.LineageNode(
        "x/y", TOP, 0, "m", "alice", "sheaf-python 0.1.0", (sheaf.LineageInput("a/b", "cd" * 32, "sheaf://a/b@cd"),)
    )
    assert nodes[1].depth == 3 and nodes[1].missing == "gone" and nodes[1].message is None


def test_derived_from_datasets_and_uris_are_pinned_by_planning(writes, writes_client):
    ds = writes_client.dataset(package="x/y", path="t")
    with writes_client.track_lineage() as tracked:
        writes_client.write("x/y/t.parquet", pa.table({"a": [1]}), derived_from=[ds, "x/y:v1/t"])
    assert tracked.inputs == ()  # resolving derived_from= is not a read
    inputs = list(writes.begins[0].inputs)
    pinned = f"sheaf://x/y@{TOP}/t"
    assert inputs == [sheaf_pb2.LineageInput(package="x/y", top_hash=TOP, uri=pinned)]  # the same input once
    assert writes.commands[-1] == b"sheaf://x/y:v1/t"  # a URI is planned as it is: the server resolves it


def test_write_result_is_a_str_that_pickles():
    import pickle

    r = sheaf.WriteResult("ab" * 32, package="x/y", uris=["sheaf://x/y@ab/t"], rows=3)
    again = pickle.loads(pickle.dumps(r))
    assert again == r and type(again) is sheaf.WriteResult and vars(again) == vars(r)
    assert again.uri == "sheaf://x/y@ab/t" and again.rows == 3 and again.ref == f"x/y@{r}"
