"""Write sessions (begin_write, DoPut parts, commit_write, abort_write) with
plain pyarrow as the client: one revision from many parts, modes, the schema
check, idempotent commits, lineage, `sheaf put` / `sheaf lineage` / `sheaf log`,
and `sheaf gc` of expired sessions. quilt3 reads every revision written."""

from __future__ import annotations

import concurrent.futures
import json
import time

import flight_testlib as fl
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS, assert_same
from sheaf_testlib import HEX64, Sheaf, blob_path, file_url


@pytest.fixture
def server(registry, flight_server):
    return flight_server(registry, "--demo")


def begin(c, package: str, **body) -> str:
    return fl.action(c, "begin_write", {"package": package, **body})["session"]


def put_part(c, session: str, package: str, path: str, table: pa.Table, part: int | None = None) -> dict:
    target = f"sheaf://{package}/{path}?session={session}" + (f"&part={part}" if part is not None else "")
    writer, reader = c.do_put(flight.FlightDescriptor.for_command(target), table.schema, OPTIONS)
    writer.write_table(table, max_chunksize=1000)
    writer.done_writing()
    result = reader.read()
    writer.close()
    return json.loads(result.to_pybytes())


def commit(c, session: str, parts: list[str] | None = None) -> dict:
    return fl.action(c, "commit_write", {"session": session, "parts": parts or []})


def revisions(c, package: str) -> list[dict]:
    try:
        return fl.action(c, "list_revisions", {"package": package})
    except KeyError:  # pyarrow's ArrowKeyError: NOT_FOUND, no revision yet
        return []


def table(lo: int, n: int) -> pa.Table:
    ids = list(range(lo, lo + n))
    return pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i % 7}" for i in ids]})


def test_parts_commit_as_one_revision_in_part_order(server):
    c = server.client
    s = begin(c, "w/one", message="three parts")
    # Uploaded out of order; the folder reads in part order.
    ids = [put_part(c, s, "w/one", "features", table(p * 100, 100), part=p)["part_id"] for p in (2, 0, 1)]
    assert revisions(c, "w/one") == [], "parts are invisible until the commit"
    done = commit(c, s, ids)
    assert HEX64.match(done["top_hash"]) and done["previous"] is None
    assert done["rows"] == 300 and len(done["keys"]) == 3
    assert done["uris"] == [f"sheaf://w/one@{done['top_hash']}/features"]
    got = fl.read(c, done["uris"][0])
    assert got.column("id").to_pylist() == list(range(300))
    revs = revisions(c, "w/one")
    assert [r["top_hash"] for r in revs] == [done["top_hash"]] and revs[0]["message"] == "three parts"


def test_only_listed_parts_are_committed(server):
    """A retried or speculative task uploads its part twice; the commit names one."""
    c = server.client
    s = begin(c, "w/retry")
    first = put_part(c, s, "w/retry", "t", table(0, 50), part=0)["part_id"]
    put_part(c, s, "w/retry", "t", table(0, 50), part=0)  # the duplicate attempt
    other = put_part(c, s, "w/retry", "t", table(50, 50), part=1)["part_id"]
    done = commit(c, s, [first, other])
    assert fl.read(c, done["uris"][0]).column("id").to_pylist() == list(range(100))
    with pytest.raises(pa.ArrowException, match="no part"):
        commit(c, begin(c, "w/retry"), ["0" * 17])


def test_a_retried_commit_answers_the_same_revision(server):
    c = server.client
    s = begin(c, "w/idem")
    put_part(c, s, "w/idem", "x.parquet", table(0, 10))
    done = commit(c, s)
    assert commit(c, s) == done
    assert len(revisions(c, "w/idem")) == 1
    # A begin retried with the same idempotency key finds the same session.
    assert begin(c, "w/idem", idempotency_key="job-7") == begin(c, "w/idem", idempotency_key="job-7")


def test_modes_append_overwrite_and_error(server):
    c = server.client
    s = begin(c, "w/modes")
    put_part(c, s, "w/modes", "f", table(0, 10))
    commit(c, s)
    s = begin(c, "w/modes", mode="append")
    put_part(c, s, "w/modes", "f", table(10, 10))
    appended = commit(c, s)
    assert fl.read(c, appended["uris"][0]).num_rows == 20
    s = begin(c, "w/modes", mode="overwrite")
    put_part(c, s, "w/modes", "f", table(100, 5))
    replaced = commit(c, s)
    assert fl.read(c, replaced["uris"][0]).column("id").to_pylist() == list(range(100, 105))
    s = begin(c, "w/modes", mode="error")
    put_part(c, s, "w/modes", "f", table(0, 1))
    with pytest.raises(pa.ArrowException, match="f exists in w/modes") as e:
        commit(c, s)
    assert "already exists" in str(e.value)
    # ...and a new table in that mode is fine.
    s = begin(c, "w/modes", mode="WRITE_MODE_ERROR_IF_EXISTS")
    put_part(c, s, "w/modes", "g", table(0, 1))
    made = commit(c, s)["top_hash"]
    assert fl.action(c, "resolve", {"ref": "w/modes"})["top_hash"] == made


def test_append_with_another_schema_names_the_column(server):
    c = server.client
    s = begin(c, "w/schema")
    put_part(c, s, "w/schema", "f", table(0, 10))
    before = commit(c, s)["top_hash"]
    s = begin(c, "w/schema")
    put_part(c, s, "w/schema", "f", pa.table({"id": ["text"], "name": ["x"]}))
    with pytest.raises(pa.ArrowException, match=r"column id: the table has it as Int64, the appended data as Utf8"):
        commit(c, s)
    s = begin(c, "w/schema")
    put_part(c, s, "w/schema", "f", pa.table({"id": pa.array([1], pa.int64())}))
    with pytest.raises(pa.ArrowException, match=r"column name: the appended data lacks column name"):
        commit(c, s)
    # Declared non-null, or with field metadata: readers need a folder's parts to agree on both, so the append is
    # refused naming the column (it made the whole folder unreadable).
    base = table(0, 1)
    for changed in (
        base.cast(pa.schema([pa.field("id", pa.int64(), nullable=False), base.schema.field("name")])),
        base.cast(pa.schema([base.schema.field("id").with_metadata({"unit": "m"}), base.schema.field("name")])),
    ):
        s = begin(c, "w/schema")
        put_part(c, s, "w/schema", "f", changed)
        refused = r"column id: the table has it as Int64, the appended data as Int64 (NOT NULL|with field metadata)"
        with pytest.raises(pa.ArrowException, match=refused):
            commit(c, s)
    assert fl.action(c, "resolve", {"ref": "w/schema"})["top_hash"] == before
    assert fl.read(c, "sheaf://w/schema/f").num_rows == 10


def test_session_metadata_is_read_as_python_reads_it_and_big_integers_are_refused(server):
    c = server.client
    with pytest.raises(pa.ArrowException, match="beyond 64 bits"):
        begin(c, "w/meta", metadata='{"n": 1180591620717411303424}')
    with pytest.raises(pa.ArrowException, match="must be a JSON object"):
        begin(c, "w/meta", metadata="[1]")
    # Metadata and messages go into every read of the revision's manifest header: bounded.
    with pytest.raises(pa.ArrowException, match=r"begin_write to w/meta: metadata of \d+ bytes; at most 1048576"):
        begin(c, "w/meta", metadata=json.dumps({"x": "y" * (1 << 20)}))
    with pytest.raises(pa.ArrowException, match=r"begin_write to w/meta: a message of 65537 bytes; at most 65536"):
        begin(c, "w/meta", message="m" * 65537)
    s = begin(c, "w/meta", metadata='{"n": 18446744073709551615, "z": -0}')
    put_part(c, s, "w/meta", "f", table(0, 1))
    commit(c, s)
    assert revisions(c, "w/meta")


def test_abort_and_unknown_sessions(server):
    c = server.client
    s = begin(c, "w/abort")
    put_part(c, s, "w/abort", "f", table(0, 10))
    fl.action(c, "abort_write", {"session": s})
    with pytest.raises(pa.ArrowException, match="not found"):
        commit(c, s)
    with pytest.raises(pa.ArrowException, match="not found"):
        put_part(c, s, "w/abort", "f", table(0, 1))
    assert revisions(c, "w/abort") == []
    for bad in ("../../etc", "0" * 32, "x" * 5000):
        with pytest.raises(pa.ArrowException, match="not found|at most"):
            commit(c, bad)
    # A session of one package cannot take parts of another.
    s = begin(c, "w/one-pkg")
    with pytest.raises(pa.ArrowException, match="writes w/one-pkg, not w/other"):
        put_part(c, s, "w/other", "f", table(0, 1))
    # Options that belong to the session are refused on a part.
    target = f"sheaf://w/one-pkg/f?session={s}&message=x"
    with pytest.raises(pa.ArrowException, match="no revision nor message"):
        c.do_put(flight.FlightDescriptor.for_command(target), table(0, 1).schema, OPTIONS)[1].read()


def test_commit_racing_abort_exactly_one_wins(server):
    """A commit and an abort of one session sent at once: exactly one of them succeeds. When the commit wins, its
    revision holds the uploaded rows and a retried commit answers it again; when the abort wins, no revision is
    made. Never both, never an empty revision."""
    c = server.client
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for i in range(12):
            before = len(revisions(c, "w/race"))
            s = begin(c, "w/race")
            put_part(c, s, "w/race", f"t{i}", table(0, 2))
            committing = pool.submit(lambda s=s: commit(c, s))
            aborting = pool.submit(lambda s=s: fl.action(c, "abort_write", {"session": s}))
            done, failed = [], []
            for name, future in (("commit", committing), ("abort", aborting)):
                try:
                    done.append((name, future.result(timeout=60)))
                except pa.ArrowException as e:
                    failed.append((name, str(e)))
            assert len(done) == 1, f"round {i}: succeeded {done}, failed {failed}"
            winner, answer = done[0]
            if winner == "commit":
                assert answer["rows"] == 2, answer
                assert commit(c, s)["top_hash"] == answer["top_hash"], "a retried commit answers the same revision"
                assert len(revisions(c, "w/race")) == before + 1
                assert "being committed" in failed[0][1] or "is committed" in failed[0][1], failed
            else:
                assert len(revisions(c, "w/race")) == before, f"round {i}: the aborted session made a revision"
                assert "aborted" in failed[0][1], failed


def test_lineage_is_recorded_and_walked(server, registry):
    c = server.client
    raw = fl.action(c, "resolve", {"ref": "demo/weather"})["top_hash"]
    src = f"sheaf://demo/weather@{raw}/tables/readings.parquet"
    s = begin(
        c,
        "w/derived",
        message="features",
        tool="test-suite 1",
        inputs=[{"package": "demo/weather", "top_hash": raw, "uri": src}],
        metadata=json.dumps({"team": "ml"}),
    )
    put_part(c, s, "w/derived", "features.parquet", table(0, 10))
    mid = commit(c, s)["top_hash"]
    s = begin(c, "w/model", inputs=[{"package": "w/derived", "top_hash": mid}])
    put_part(c, s, "w/model", "scores.parquet", table(0, 3))
    top = commit(c, s)["top_hash"]

    meta = fl.action(c, "browse", {"ref": "w/derived"})["user_meta"]
    assert meta["team"] == "ml"
    lineage = meta["sheaf"]["lineage"]
    assert lineage["inputs"] == [{"package": "demo/weather", "top_hash": raw, "uri": src}]
    assert lineage["writer"]["principal"] == "anonymous" and lineage["writer"]["tool"] == "test-suite 1"

    nodes = fl.action(c, "lineage", {"ref": "w/model"})["nodes"]
    assert [(n["package"], n["top_hash"], n["depth"]) for n in nodes] == [
        ("w/model", top, 0),
        ("w/derived", mid, 1),
        ("demo/weather", raw, 2),
    ]
    sheaf = Sheaf(str(registry))
    tree = sheaf.ok("lineage", "w/model").stdout
    assert "w/model@" in tree and "└─ w/derived@" in tree and "demo/weather@" in tree and src in tree
    log = sheaf.ok("log", "w/derived").stdout
    assert "[derived]" in log
    assert "[derived]" not in sheaf.ok("log", "demo/weather").stdout
    # A revision without lineage ends the walk.
    assert sheaf.json("lineage", "demo/weather")[0]["inputs"] == []
    # An input naming one package with another's revision is listed, not opened.
    s = begin(c, "w/liar", inputs=[{"package": "w/derived", "top_hash": top}])
    put_part(c, s, "w/liar", "x.parquet", table(0, 1))
    commit(c, s)
    liar = fl.action(c, "lineage", {"ref": "w/liar"})["nodes"]
    assert len(liar) == 2 and "not a revision of w/derived" in liar[1]["missing"] and liar[1]["message"] is None
    with pytest.raises(pa.ArrowException, match="full top hash"):
        begin(c, "w/bad", inputs=[{"package": "demo/weather", "top_hash": "abc"}])


def test_quilt3_reads_written_revisions_with_the_same_top_hash(server, registry, quilt3, tmp_path):
    c = server.client
    s = begin(c, "w/q", message="for quilt3", metadata=json.dumps({"k": 1.5}))
    put_part(c, s, "w/q", "parts", table(0, 500), part=0)
    put_part(c, s, "w/q", "parts", table(500, 500), part=1)
    put_part(c, s, "w/q", "single.parquet", table(0, 7))
    top = commit(c, s)["top_hash"]
    pkg = quilt3.Package.browse("w/q", registry=file_url(registry), top_hash=top)
    assert pkg.top_hash == top
    assert pkg.meta["k"] == 1.5 and "lineage" in pkg.meta["sheaf"]
    keys = sorted(k for k, _ in pkg.walk())
    assert len(keys) == 3 and keys[-1] == "single.parquet"
    profile = pkg["single.parquet"]._meta["sheaf"]["profile"]
    assert profile["rows"] == 7
    dest = tmp_path / "installed"
    pkg.fetch(str(dest))
    assert pq.read_table(dest / "single.parquet").equals(table(0, 7))


def test_sheaf_put_publishes_a_file(server, registry, tmp_path):
    c = server.client
    path = tmp_path / "t.parquet"
    pq.write_table(table(0, 1234), path)
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    sheaf = Sheaf(str(registry))
    raw = fl.action(c, "resolve", {"ref": "demo/weather"})["top_hash"]
    out = sheaf.json(
        "put",
        str(path),
        "sheaf://w/cli/data/t.parquet",
        "--server",
        server.url,
        "-m",
        "from the cli",
        "--derived-from",
        "demo/weather/tables/readings.parquet",
    )
    assert out["rows"] == 1234 and HEX64.match(out["top_hash"])
    assert_same(fl.read(c, out["uris"][0]), table(0, 1234))
    nodes = sheaf.json("lineage", "w/cli")
    assert nodes[1]["package"] == "demo/weather" and nodes[1]["top_hash"] == raw
    assert nodes[0]["tool"].startswith("sheaf-cli ")
    out = sheaf.json("put", str(csv), "sheaf://w/cli/csv", "--server", server.url)
    assert fl.read(c, out["uris"][0]).column("a").to_pylist() == [1, 2]
    r = sheaf("put", str(csv), "sheaf://w/cli/csv", "--server", server.url, "--mode", "error")
    assert r.returncode != 0 and "csv exists in w/cli" in r.stderr
    r = sheaf("put", str(tmp_path / "missing.parquet"), "sheaf://w/cli/x.parquet", "--server", server.url)
    assert r.returncode != 0 and "missing.parquet" in r.stderr
    big = '{"n": 1180591620717411303424}'
    r = sheaf("put", str(csv), "sheaf://w/cli/big", "--server", server.url, "--meta", big)
    assert r.returncode != 0 and "beyond 64 bits" in r.stderr, r.stderr


def test_gc_collects_expired_sessions_only(server, registry):
    c = server.client
    live = begin(c, "w/gc")
    put_part(c, live, "w/gc", "f", table(0, 10))
    # Long enough for the part to land on a loaded machine (1 s once was not).
    dead = begin(c, "w/gc", ttl_seconds=3)
    put_part(c, dead, "w/gc", "f", table(0, 10))
    time.sleep(3.2)
    with pytest.raises(pa.ArrowException, match="expired"):
        commit(c, dead)
    sheaf = Sheaf(str(registry))
    report = sheaf.json("gc", "--older-than", "0s")
    doomed = {x["path"] for x in report["leftovers"] if x["kind"] == "expired_session"}
    assert doomed and all(f".sheaf/sessions/{dead}/" in p for p in doomed)
    sheaf.json("gc", "--older-than", "0s", "--delete")
    assert not (registry / ".sheaf" / "sessions" / dead).exists() or not any(
        (registry / ".sheaf" / "sessions" / dead).rglob("*.*")
    )
    # The live session still commits.
    assert commit(c, live)["rows"] == 10


def test_push_profiles_parquet_and_csv_files(registry, tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    pq.write_table(table(0, 100), root / "t.parquet")
    (root / "c.csv").write_text("a,b\n1,x\n2,\n3,x\n")
    (root / "broken.parquet").write_bytes(b"not parquet at all")
    (root / "notes.txt").write_text("hello")
    sheaf = Sheaf(str(registry))
    sheaf.push("w/pushed", root)
    entries = {e["logical_key"]: e for e in sheaf.json("browse", "w/pushed")["entries"]}
    assert entries["t.parquet"]["meta"]["sheaf"]["profile"]["rows"] == 100
    csv = entries["c.csv"]["meta"]["sheaf"]["profile"]
    assert csv["rows"] == 3 and [c["nulls"] for c in csv["columns"]] == [0, 1]
    # A file that does not parse is still pushed, without a profile; other files get none.
    assert not entries["broken.parquet"]["meta"] and not entries["notes.txt"]["meta"]
    plain = sheaf.push("w/plain", root, "--no-profile")
    assert all(not e["meta"] for e in sheaf.json("browse", "w/plain")["entries"]), plain


def test_part_numbers_beyond_five_digits_are_refused(server):
    """Part keys carry their number in five digits (their text order is the folder's row order): part 100000 and
    above are refused naming the range, in the URI and past 32 bits alike."""
    c = server.client
    s = begin(c, "w/parts")
    for part in (100_000, 4_294_967_296):
        with pytest.raises(pa.ArrowException, match=r"out of range: parts are numbered 0 to 99999"):
            put_part(c, s, "w/parts", "f", table(0, 1), part=part)
    put_part(c, s, "w/parts", "f", table(0, 1), part=99_999)
    assert commit(c, s)["rows"] == 1


def test_a_commit_stores_again_a_damaged_blob_it_would_reuse(server, registry):
    """The blob of a committed part cut short in storage; a later write of the same data must not take the damaged
    blob for its content (the new revision would be unreadable): it stores the data again, as push does."""
    c = server.client
    s = begin(c, "w/first")
    put_part(c, s, "w/first", "t.parquet", table(0, 500))
    commit(c, s)
    (entry,) = [e for e in Sheaf(str(registry)).json("browse", "w/first")["entries"] if e["logical_key"] == "t.parquet"]
    blob = blob_path(registry, entry["hash"]["value"])
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:100])
    s = begin(c, "w/second")
    put_part(c, s, "w/second", "t.parquet", table(0, 500))
    commit(c, s)
    assert blob.stat().st_size == entry["size"]
    assert_same(fl.read(c, "sheaf://w/second/t.parquet"), table(0, 500))
