"""Write sessions under hostile use: a refused commit leaves a session that can be
aborted (or committed again), a part is either in the commit or refused, metadata and
lineage land on a base whose header holds integers beyond 64 bits, append keeps a
folder table named like a file, a file written into a folder table must have the
folder's columns, an idempotency key cannot begin two different writes, `sheaf put` reads
its target as a dataset URI, a bulk ingest names only tables a write could make, lineage
inputs are bounded, and a full disk is RESOURCE_EXHAUSTED (not a retry)."""

from __future__ import annotations

import json
import threading

import auth_lib as al
import flight_testlib as fl
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS
from sheaf_testlib import file_url
from test_writes import begin, commit, put_part, revisions, table


@pytest.fixture
def server(registry, flight_server):
    return flight_server(registry)


def put(c, target: str, data: pa.Table) -> dict:
    """A plain DoPut (no session): one revision."""
    writer, reader = c.do_put(flight.FlightDescriptor.for_command(target), data.schema, OPTIONS)
    writer.write_table(data)
    writer.done_writing()
    result = reader.read()
    writer.close()
    return json.loads(result.to_pybytes())


def session_files(registry, session: str) -> list[str]:
    d = registry / ".sheaf" / "sessions" / session
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def latest(c, package: str) -> str:
    return fl.action(c, "resolve", {"ref": package})["top_hash"]


# -- 1: a refused commit releases the session -------------------------------------------


def test_a_refused_commit_can_be_aborted_and_its_data_goes(server, registry):
    c = server.client
    put(c, "sheaf://h/refused/t.parquet", table(0, 3))
    s = begin(c, "h/refused", mode="error")
    part = put_part(c, s, "h/refused", "t.parquet", table(0, 1000))["part_id"]
    with pytest.raises(pa.ArrowException, match="t.parquet exists in h/refused"):
        commit(c, s, [part])
    fl.action(c, "abort_write", {"session": s})
    assert session_files(registry, s) == [], "the abort removed the staged part"
    with pytest.raises(pa.ArrowException, match="not found"):
        commit(c, s)


def test_a_refused_commit_can_be_corrected_and_a_landed_one_retried(server, registry):
    c = server.client
    s = begin(c, "h/again")
    part = put_part(c, s, "h/again", "t", table(0, 10))["part_id"]
    with pytest.raises(pa.ArrowException, match="has no part nope"):
        commit(c, s, ["nope"])
    done = commit(c, s, [part])
    assert done["rows"] == 10
    # A commit that landed answers again, and still cannot be aborted.
    assert commit(c, s, [part]) == done
    with pytest.raises(pa.ArrowException, match="is committed"):
        fl.action(c, "abort_write", {"session": s})
    assert len(revisions(c, "h/again")) == 1

    # latest moved under a session based on exactly one revision: refused, then aborted.
    s = begin(c, "h/again", base=done["top_hash"])
    put_part(c, s, "h/again", "t", table(10, 10))
    put(c, "sheaf://h/again/other.parquet", table(0, 1))
    with pytest.raises(pa.ArrowException, match="moved|latest"):
        commit(c, s)
    fl.action(c, "abort_write", {"session": s})
    assert session_files(registry, s) == []


def test_a_refused_schema_is_released_too(server, registry):
    c = server.client
    s = begin(c, "h/schema")
    put_part(c, s, "h/schema", "t", table(0, 5))
    commit(c, s)
    s = begin(c, "h/schema")
    put_part(c, s, "h/schema", "t", pa.table({"id": ["x"], "name": ["y"]}))
    with pytest.raises(pa.ArrowException, match="column id"):
        commit(c, s)
    fl.action(c, "abort_write", {"session": s})
    assert session_files(registry, s) == []


def test_the_rust_client_aborts_a_session_whose_commit_is_refused(server, registry, sheaf, tmp_path):
    """`sheaf put` writes through the Rust client's `write`: a refused commit drops its session's staged data."""
    path = tmp_path / "t.parquet"
    pq.write_table(table(0, 100), path)
    sheaf.ok("put", str(path), "sheaf://h/cli/t.parquet", "--server", server.url)
    for _ in range(2):
        r = sheaf("put", str(path), "sheaf://h/cli/t.parquet", "--server", server.url, "--mode", "error")
        assert r.returncode != 0 and "t.parquet exists in h/cli" in r.stderr, r.stderr
    # The committed session keeps its records (a retried commit answers its outcome); the refused ones keep nothing.
    sessions = [d for d in (registry / ".sheaf" / "sessions").iterdir()]
    refused = [d.name for d in sessions if not (d / "committed.json").exists()]
    assert len(sessions) - len(refused) == 1, sessions
    assert [f for s in refused for f in session_files(registry, s)] == [], "no staged part is left"


# -- 2: a part is in the commit or refused ----------------------------------------------


def test_a_part_staged_while_the_commit_takes_its_parts(server, registry):
    """The commit claims the session's end, then fixes the parts it takes once (a create-only file). A part whose
    record is written after the claim is acknowledged only if that set holds it; otherwise it is refused and
    removed. Simulated here: the claim is made by hand, as a commit on another replica would."""
    c = server.client
    s = begin(c, "h/late")
    first = put_part(c, s, "h/late", "t", table(0, 1), part=0)["part_id"]
    (registry / ".sheaf" / "sessions" / s / "ended").write_text("commit 00ff")
    # No set fixed yet: this part fixes it, itself included.
    second = put_part(c, s, "h/late", "t", table(1, 1), part=1)["part_id"]
    taken = json.loads((registry / ".sheaf" / "sessions" / s / "taken-00ff.json").read_text())
    assert sorted(taken) == sorted([first, second])
    # The set is fixed: a later part is refused, and nothing of it stays.
    with pytest.raises(pa.ArrowException, match="without this part"):
        put_part(c, s, "h/late", "t", table(2, 1), part=2)
    assert len([f for f in session_files(registry, s) if f.startswith("parts/")]) == 4
    # The commit (the claim's retry) makes its revision from exactly that set.
    done = commit(c, s)
    assert sorted(fl.read(c, done["uris"][0]).column("id").to_pylist()) == [0, 1]


def test_an_aborted_session_refuses_a_part_racing_the_abort(server, registry):
    c = server.client
    s = begin(c, "h/abort-race")
    put_part(c, s, "h/abort-race", "t", table(0, 1))
    # The abort's claim is in place, its record removal not yet.
    (registry / ".sheaf" / "sessions" / s / "ended").write_text("abort")
    with pytest.raises(pa.ArrowException, match="aborted"):
        put_part(c, s, "h/abort-race", "t", table(1, 1))
    assert len([f for f in session_files(registry, s) if f.startswith("parts/")]) == 2


def test_every_acknowledged_part_is_in_the_commit(server):
    c = server.client
    s = begin(c, "h/race", mode="append")
    for i in range(60):
        put_part(c, s, "h/race", "t", pa.table({"x": [i]}), part=i)
    acked, refused, stop = [], [], threading.Event()

    def late():
        c2 = server.connect()
        j = 1000
        while not stop.is_set():
            try:
                put_part(c2, s, "h/race", "t", pa.table({"x": [j]}), part=99)
                acked.append(j)
            except pa.ArrowException as e:
                refused.append(str(e))
            j += 1

    thread = threading.Thread(target=late)
    thread.start()
    try:
        while len(acked) < 3:
            threading.Event().wait(0.01)
        done = commit(c, s)
        n = len(refused)
        while len(refused) < n + 3:  # parts after the commit are refused
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
    got = set(fl.read(c, done["uris"][0]).column("x").to_pylist())
    assert set(range(60)) <= got
    assert set(acked) <= got, f"acknowledged but not committed: {sorted(set(acked) - got)}"
    assert got == set(range(60)) | set(acked)
    assert all("committed" in r for r in refused), refused[:3]


# -- 3: metadata and lineage on a base header with big integers ---------------------------


def test_metadata_and_lineage_land_on_a_base_with_big_integers(server, registry, quilt3, tmp_path):
    c = server.client
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    quilt3.Package().set_dir("/", str(src)).set_meta({"big": 10**30, "keep": "old"}).build(
        "h/bigmeta", registry=file_url(registry), message="by quilt3"
    )
    # New metadata replaces the old, lineage added.
    s = begin(c, "h/bigmeta", metadata=json.dumps({"new": 1}), message="by sheaf")
    put_part(c, s, "h/bigmeta", "t.parquet", table(0, 1))
    top = commit(c, s)["top_hash"]
    pkg = quilt3.Package.browse("h/bigmeta", registry=file_url(registry), top_hash=top)
    assert pkg.top_hash == top
    assert set(pkg.meta) == {"new", "sheaf"} and pkg.meta["new"] == 1
    assert pkg.meta["sheaf"]["lineage"]["session"] == s
    # The retry finds its revision by the lineage it wrote.
    assert commit(c, s)["top_hash"] == top

    # Without metadata the base's is kept, its big integer exact, lineage added.
    quilt3.Package().set_dir("/", str(src)).set_meta({"big": 10**30, "keep": "old"}).build(
        "h/bigkeep", registry=file_url(registry), message="by quilt3"
    )
    s = begin(c, "h/bigkeep", message="by sheaf")
    put_part(c, s, "h/bigkeep", "t.parquet", table(0, 1))
    top = commit(c, s)["top_hash"]
    assert "10000000000000000000000000000" in (registry / ".quilt" / "packages" / top).read_text().splitlines()[0]
    pkg = quilt3.Package.browse("h/bigkeep", registry=file_url(registry), top_hash=top)
    assert pkg.top_hash == top and pkg.meta["big"] == 10**30 and pkg.meta["keep"] == "old"
    assert pkg.meta["sheaf"]["lineage"]["session"] == s
    assert commit(c, s)["top_hash"] == top
    assert len(revisions(c, "h/bigkeep")) == 2


# -- 4: append to a folder table named like a file ------------------------------------


def test_append_to_a_folder_named_like_a_file_adds_a_part(server, sheaf, tmp_path):
    c = server.client
    src = tmp_path / "src"
    (src / "spark.parquet").mkdir(parents=True)
    for i in range(3):
        pq.write_table(pa.table({"x": pa.array([i], pa.int64())}), src / "spark.parquet" / f"part-{i}.parquet")
    sheaf.push("h/spark", src)
    s = begin(c, "h/spark", mode="append")
    put_part(c, s, "h/spark", "spark.parquet", pa.table({"x": pa.array([99], pa.int64())}))
    done = commit(c, s)
    assert len(done["keys"]) == 1 and done["keys"][0].startswith("spark.parquet/part-")
    assert sorted(fl.read(c, "sheaf://h/spark/spark.parquet").column("x").to_pylist()) == [0, 1, 2, 99]
    # Appended data of other columns is refused as for any folder.
    s = begin(c, "h/spark", mode="append")
    put_part(c, s, "h/spark", "spark.parquet", pa.table({"y": ["a"]}))
    with pytest.raises(pa.ArrowException, match="column"):
        commit(c, s)
    # A file is still replaced in append mode.
    put(c, "sheaf://h/spark/f.parquet", table(0, 5))
    s = begin(c, "h/spark", mode="append")
    put_part(c, s, "h/spark", "f.parquet", table(0, 2))
    commit(c, s)
    assert fl.read(c, "sheaf://h/spark/f.parquet").num_rows == 2


# -- 5: a file inside a folder table -------------------------------------------------


def test_a_file_written_into_a_folder_table_must_have_its_columns(server):
    c = server.client
    s = begin(c, "h/inside")
    put_part(c, s, "h/inside", "train", table(0, 3))
    before = commit(c, s)["top_hash"]
    with pytest.raises(pa.ArrowException, match=r"column y.*train/part-0\.parquet|train/part-0\.parquet.*column y"):
        put(c, "sheaf://h/inside/train/part-0.parquet", pa.table({"y": ["a"]}))
    assert latest(c, "h/inside") == before
    # The folder's own columns are fine.
    put(c, "sheaf://h/inside/train/part-0.parquet", table(10, 2))
    assert fl.read(c, "sheaf://h/inside/train").num_rows == 5
    # A session writing folder t and file t/extra.parquet: checked against each other.
    s = begin(c, "h/inside")
    put_part(c, s, "h/inside", "t", table(0, 3))
    put_part(c, s, "h/inside", "t/extra.parquet", pa.table({"id": ["text"]}))
    with pytest.raises(pa.ArrowException, match="column id"):
        commit(c, s)
    # ...and a session file into an existing folder table too.
    s = begin(c, "h/inside")
    put_part(c, s, "h/inside", "train/extra.parquet", pa.table({"z": [1.5]}))
    with pytest.raises(pa.ArrowException, match="column z"):
        commit(c, s)
    # Files in a folder that is no folder table (no part files) keep their own columns.
    put(c, "sheaf://h/inside/tables/a.parquet", table(0, 1))
    put(c, "sheaf://h/inside/tables/b.parquet", pa.table({"other": [1.5]}))
    assert fl.read(c, "sheaf://h/inside/train").num_rows == 5


# -- 13a: one idempotency key, one write ---------------------------------------------


def test_an_idempotency_key_reused_for_another_write_is_refused(server):
    c = server.client
    first = begin(c, "h/key", idempotency_key="job-1", mode="append")
    assert begin(c, "h/key", idempotency_key="job-1", mode="append") == first
    with pytest.raises(pa.ArrowException, match=r'idempotency key "job-1".*another mode'):
        begin(c, "h/key", idempotency_key="job-1", mode="error")
    with pytest.raises(pa.ArrowException, match=r'idempotency key "job-1".*another message'):
        begin(c, "h/key", idempotency_key="job-1", mode="append", message="other")
    # The key is per package: another package's session is its own.
    assert begin(c, "h/key2", idempotency_key="job-1", mode="error") != first


# -- 8: `sheaf put` reads its target as every dataset URI is read --------------------------


def test_sheaf_put_decodes_its_target_and_refuses_a_query_or_revision(server, sheaf, tmp_path):
    """`a%20b.parquet` is written as `a b.parquet`, the table a read of that same URI finds; a query or a revision
    on a write target is a usage error (exit 2) naming the URI, and nothing is written."""
    c = server.client
    path = tmp_path / "t.parquet"
    pq.write_table(table(0, 10), path)
    out = sheaf.json("put", str(path), "sheaf://h/put/a%20b.parquet", "--server", server.url)
    assert fl.read(c, "sheaf://h/put/a%20b.parquet").num_rows == 10
    assert any(u.endswith("/a%20b.parquet") for u in out["uris"]), out["uris"]
    for target, why in [
        ("sheaf://h/put/c.parquet?columns=a", "takes no query"),
        ("sheaf://h/put@abcdef/c.parquet", "latest revision"),
        ("sheaf://h/put", "name the table's path"),
    ]:
        r = sheaf("put", str(path), target, "--server", server.url)
        assert r.returncode == 2 and target in r.stderr and why in r.stderr, (target, r.returncode, r.stderr)
    entries = fl.read(c, "sheaf://h/put").column("logical_key").to_pylist()
    assert entries == ["a b.parquet"], entries


# -- 10: a bulk ingest names a table a write could make ------------------------------------


@pytest.mark.filterwarnings("ignore:Cannot disable autocommit")
@pytest.mark.parametrize(
    ("table_name", "why"),
    [
        ("q.csv", "must be a .parquet file or a folder"),
        ("n" * 300, "longer than 255 bytes"),
        ("a/../b", "cannot be a path"),
    ],
)
def test_a_bulk_ingest_into_a_table_no_write_could_make_is_refused(server, table_name, why):
    import adbc_driver_flightsql.dbapi as adbc

    with adbc.connect(server.url) as conn, conn.cursor() as cur:
        with pytest.raises(Exception, match=why):
            cur.adbc_ingest(table_name, table(0, 3), mode="create", db_schema_name="h/ingest")
    with pytest.raises(pa.ArrowException, match="h/ingest"):
        fl.read(server.client, "sheaf://h/ingest")


# -- 12: a full disk is RESOURCE_EXHAUSTED, not a retry --------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted on a folder: a real file system that fills up."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("where", ["upload", "registry"])
def test_a_full_disk_is_resource_exhausted_naming_the_target(flight_server, small_disk, tmp_path, where):
    """The server's disk fills up while it receives an upload (its temporary file) or stores the revision (the
    registry): RESOURCE_EXHAUSTED naming the target and saying the storage is full, never UNAVAILABLE (which clients
    retry) nor INVALID_ARGUMENT (the data is fine); nothing lands, and a small write still does."""
    import numpy as np

    registry = small_disk / "registry" if where == "registry" else tmp_path / "registry"
    temp = tmp_path / "tmp" if where == "registry" else small_disk / "tmp"
    registry.mkdir()
    temp.mkdir()
    server = flight_server(registry, env={"TMPDIR": str(temp)})
    c = server.client
    noise = pa.table({"x": np.random.default_rng(7).random(1_500_000)})  # 12 MB, incompressible
    out = al.attempt(lambda: put(c, "sheaf://h/full/big.parquet", noise))
    assert out.code == "RESOURCE_EXHAUSTED", out.describe()
    assert "h/full/big.parquet" in out.message and "storage is full" in out.message, out.describe()
    assert str(small_disk) not in out.message, out.describe()
    assert put(c, "sheaf://h/full/small.parquet", table(0, 10))["rows"] == 10
    entries = fl.read(c, "sheaf://h/full").column("logical_key").to_pylist()
    assert entries == ["small.parquet"], entries


# -- 9: lineage inputs are bounded -----------------------------------------------------------


def test_a_lineage_input_uri_too_long_to_record_is_refused(server):
    c = server.client
    top = "0" * 64  # a full top hash: an input is recorded, not opened, when a session begins
    ok = begin(c, "h/lineage", inputs=[{"package": "demo/weather", "top_hash": top, "uri": "sheaf://x/" + "u" * 4000}])
    assert ok
    with pytest.raises(pa.ArrowException, match=r"lineage input demo/weather@0{64}: a URI of 5010 bytes"):
        begin(c, "h/lineage", inputs=[{"package": "demo/weather", "top_hash": top, "uri": "sheaf://x/" + "u" * 5000}])
