"""Errors of the Flight server as pyarrow surfaces them, and the read policy
for physical keys outside the registry (--allow).

gRPC code -> what pyarrow raises (checked against pyarrow's C++ client):
NOT_FOUND -> pyarrow.ArrowKeyError (a KeyError), INVALID_ARGUMENT ->
pyarrow.ArrowInvalid, PERMISSION_DENIED -> flight.FlightUnauthorizedError,
UNAVAILABLE -> flight.FlightUnavailableError, UNIMPLEMENTED ->
pyarrow.ArrowNotImplementedError. pyarrow prefixes the server's message with
the code ("gRPC returned not found error, with message: ...")."""

from __future__ import annotations

import contextlib
import hashlib
import os

import flight_testlib as fl
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS, uri
from sheaf_testlib import canonical, chunked_hash, write_manifest

T = "t/tables"
READINGS = ("demo/weather", "tables/readings.parquet")

# gRPC code -> (pyarrow exception, the phrase pyarrow puts in its message)
NOT_FOUND = (pa.ArrowKeyError, "not found error")
INVALID_ARGUMENT = (pa.ArrowInvalid, "invalid argument error")
PERMISSION_DENIED = (flight.FlightUnauthorizedError, "unauthorized error")
UNAVAILABLE = (flight.FlightUnavailableError, "unavailable error")
UNIMPLEMENTED = (pa.ArrowNotImplementedError, "")


def expect(code, fn, *must_mention: str, flight_error_as_oserror: bool = False):
    """Runs fn(), which must fail with `code`; the message must name every
    string in must_mention. Returns the message.

    flight_error_as_oserror: pyarrow 26's FlightClient.get_schema raises a
    plain OSError ("Flight returned unauthorized error ... Detail:
    Unauthorized") instead of the FlightError subclass for the Flight-specific
    codes; accept that there (the phrase still identifies the code)."""
    exc_type, phrase = code
    with pytest.raises(Exception) as info:
        fn()
    e = info.value
    ok = isinstance(e, exc_type)
    if not ok and flight_error_as_oserror and issubclass(exc_type, flight.FlightError):
        ok = type(e) is OSError
    assert ok, f"expected {exc_type.__name__}, got {type(e).__name__}: {e}"
    msg = str(e)
    if phrase:
        assert phrase in msg.lower(), f"expected a gRPC {phrase!r}, got: {msg}"
    for s in must_mention:
        assert s in msg, f"the error should mention {s!r}: {msg}"
    return msg


def everywhere(client, code, u: str, *must_mention: str):
    """GetFlightInfo and GetSchema (CMD and PATH descriptors) fail alike."""
    for d in (flight.FlightDescriptor.for_command(u), flight.FlightDescriptor.for_path(u)):
        expect(code, lambda d=d: client.get_flight_info(d, OPTIONS), *must_mention)
        expect(code, lambda d=d: client.get_schema(d, OPTIONS), *must_mention, flight_error_as_oserror=True)


def do_get(client, ticket):
    return lambda: client.do_get(ticket, OPTIONS).read_all()


# ---------------------------------------------------------------------------
# NOT_FOUND
# ---------------------------------------------------------------------------


def _absent_prefix(*hashes: str) -> str:
    return next(p for p in ("000000", "ffffff", "abcdef", "123456") if not any(h.startswith(p) for h in hashes))


def test_not_found(flight_data):
    c = flight_data.client
    top = flight_data.tops[T]
    everywhere(c, NOT_FOUND, uri("no/such", "x.parquet"), "no/such")
    everywhere(c, NOT_FOUND, uri("no/such"), "no/such")
    prefix = _absent_prefix(top)
    everywhere(c, NOT_FOUND, uri(T, "parts", rev=f"@{prefix}"), prefix)
    full = prefix + "0" * 58
    everywhere(c, NOT_FOUND, uri(T, "parts", rev=f"@{full}"), full)
    everywhere(c, NOT_FOUND, uri(T, "parts", rev=":no-such-tag"), "no-such-tag")
    everywhere(c, NOT_FOUND, uri(T, "nope/missing.parquet"), "nope/missing.parquet")
    everywhere(c, NOT_FOUND, uri(T, "missing.csv", rev=f"@{top[:8]}"), "missing.csv")


def test_not_found_in_actions(flight_data):
    c = flight_data.client
    expect(NOT_FOUND, lambda: fl.action(c, "resolve", {"ref": "no/such"}), "no/such")
    expect(NOT_FOUND, lambda: fl.action(c, "resolve", {"ref": f"{T}:no-such-tag"}), "no-such-tag")
    expect(NOT_FOUND, lambda: fl.action(c, "list_revisions", {"package": "no/such"}), "no/such")
    expect(NOT_FOUND, lambda: fl.action(c, "browse", {"ref": "no/such"}), "no/such")
    expect(NOT_FOUND, lambda: fl.action(c, "list_tables", {"ref": "no/such"}), "no/such")


# ---------------------------------------------------------------------------
# INVALID_ARGUMENT
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,mention",
    [
        ("sheaf://nopackage", "nopackage"),
        ("sheaf://t/tables@zz/parts", "zz"),
        ("sheaf://t/tables@abcde/parts", "abcde"),
        ("sheaf://Bad Owner!/x/y.parquet", ""),
        ("sheaf://t/tables/parts?colums=id", "colums"),
        ("sheaf://t/tables/parts?columns=id&bogus=1", "bogus"),
        ("sheaf://t/tables/parts?limit=-1", "limit"),
        ("sheaf://t/tables/parts?limit=ten", "limit"),
        ("sheaf://t/tables/parts?limit=1&limit=2", "limit"),
        ("sheaf://t/tables/parts?sample=2", "sample"),
        ("sheaf://t/tables/parts?sample=abc", "sample"),
        ("sheaf://t/tables/parts?sample=0.1&sample_rows=3", "sample_rows"),
        ("sheaf://t/tables/parts?sample_rows=-4", "sample_rows"),
        ("sheaf://t/tables/parts?seed=-1", "seed"),
        ("sheaf://t/tables/parts?partitions=0", "partitions"),
        ("sheaf://t/tables/parts?compression=gzip", "gzip"),
        ("sheaf://t/tables?content=maybe", "content"),
        ("sheaf://t/tables/parts?content=true", "content"),
    ],
)
def test_invalid_uri_or_parameter(flight_data, bad, mention):
    c = flight_data.client
    everywhere(c, INVALID_ARGUMENT, bad, *([mention] if mention else []))


@pytest.mark.parametrize(
    "flt,mention",
    [
        ("temp_c >>> 3", "temp_c >>> 3"),
        ("temp_c > ", "temp_c > "),
        ("nope > 1", "nope"),
        ("station = 'oslo' AND nothere IS NULL", "nothere"),
        ("temp_c + 1", "temp_c + 1"),
        ("'unterminated", "unterminated"),
    ],
)
def test_invalid_filter(flight_data, flt, mention):
    everywhere(flight_data.client, INVALID_ARGUMENT, uri(*READINGS, filter=flt), mention)


def test_invalid_filter_on_other_table_kinds(flight_data):
    c = flight_data.client
    everywhere(c, INVALID_ARGUMENT, uri(T, "csv/data.csv", filter="nope = 1"), "nope")
    everywhere(c, INVALID_ARGUMENT, uri(T, "json/data.jsonl", filter="id >"), "id >")
    everywhere(c, INVALID_ARGUMENT, uri(T, filter="nope = 1"), "nope")


def test_invalid_column(flight_data):
    c = flight_data.client
    everywhere(c, INVALID_ARGUMENT, uri(*READINGS, columns="id,nope"), "nope")
    everywhere(c, INVALID_ARGUMENT, uri(T, "parts", columns="ID"), "ID")
    everywhere(c, INVALID_ARGUMENT, uri(T, "csv/data.tsv", columns="missing_col"), "missing_col")
    everywhere(c, INVALID_ARGUMENT, uri(T, "ipc/data.arrows", columns="zz_top"), "zz_top")
    everywhere(c, INVALID_ARGUMENT, uri(T, columns="content"), "content")


def test_not_a_table_is_invalid(flight_data):
    c = flight_data.client
    everywhere(c, INVALID_ARGUMENT, uri(T, "README.md"), "README.md")
    everywhere(c, INVALID_ARGUMENT, uri(T, "parts/notes.txt"), "parts/notes.txt")
    everywhere(c, INVALID_ARGUMENT, uri(T, "json"), "json")


def test_ambiguous_hash_prefix(registry, flight_server, sheaf, tmp_path):
    # Two header-only revisions whose top hashes share their first 6 hex digits.
    seen, i = {}, 0
    while True:
        m = f"m{i}"
        top = hashlib.sha256(canonical({"version": "v0", "message": m})).hexdigest()
        if top[:6] in seen:
            m1, m2, shared = seen[top[:6]], m, top[:6]
            break
        seen[top[:6]] = m
        i += 1
    empty = tmp_path / "empty"
    empty.mkdir()
    h1 = sheaf.push("o/amb", empty, "-m", m1)["top_hash"]
    h2 = sheaf.push("o/amb", empty, "-m", m2)["top_hash"]
    assert h1[:6] == h2[:6] == shared
    server = flight_server(registry)
    everywhere(server.client, INVALID_ARGUMENT, uri("o/amb", rev=f"@{shared}"), shared, h1, h2)
    expect(INVALID_ARGUMENT, lambda: fl.action(server.client, "resolve", {"ref": f"o/amb@{shared}"}), h1, h2)
    n = next(k for k in range(64) if h1[k] != h2[k]) + 1
    assert fl.app_metadata(fl.info(server.client, uri("o/amb", rev=f"@{h1[:n]}")))["top_hash"] == h1


def test_bad_ticket(flight_data):
    c = flight_data.client
    for raw in (b"\xff\xfe garbage", b"not a ticket at all"):
        expect(INVALID_ARGUMENT, do_get(c, flight.Ticket(raw)))
    # A manifest-table ticket whose entry range (proto fields 7 and 8, appended:
    # the last value wins) runs past the manifest.
    good = fl.info(c, uri(T)).endpoints[0].ticket.ticket
    expect(
        INVALID_ARGUMENT, do_get(c, flight.Ticket(good + bytes([0x38, 2, 0x40, 0xE8, 0x07]))), "entries [2, 1000)", T
    )


def test_bad_actions(flight_data):
    c = flight_data.client
    expect(INVALID_ARGUMENT, lambda: fl.action(c, "no_such_action"), "no_such_action")
    bad_json = flight.Action("resolve", b"{not json")
    expect(INVALID_ARGUMENT, lambda: list(c.do_action(bad_json, OPTIONS)), "resolve")
    expect(INVALID_ARGUMENT, lambda: fl.action(c, "resolve", {}), "ref")
    expect(INVALID_ARGUMENT, lambda: fl.action(c, "list_revisions", {}), "package")
    expect(INVALID_ARGUMENT, lambda: fl.action(c, "resolve", {"ref": "nopackage"}), "nopackage")


def test_parquet_folder_with_mismatched_schemas(registry, flight_server, sheaf, tmp_path):
    src = tmp_path / "src"
    src.joinpath("mixed").mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2]}), src / "mixed" / "p1.parquet")
    pq.write_table(pa.table({"a": ["x", "y"]}), src / "mixed" / "p2.parquet")
    sheaf.push("o/mixed", src)
    server = flight_server(registry)
    everywhere(server.client, INVALID_ARGUMENT, uri("o/mixed", "mixed"), "mixed/p2.parquet")
    # Each part alone is a table.
    assert fl.read(server.client, uri("o/mixed", "mixed/p2.parquet")).column("a").to_pylist() == ["x", "y"]


# ---------------------------------------------------------------------------
# UNIMPLEMENTED
# ---------------------------------------------------------------------------


def test_unimplemented_rpcs(flight_data):
    c = flight_data.client
    d = flight.FlightDescriptor.for_command(uri(T, "parts"))
    schema = pa.schema([("a", pa.int64())])

    # DoPut exists (test_flight_put.py); a put to a folder is refused.
    def put():
        writer, _ = c.do_put(d, schema, OPTIONS)
        writer.write_table(pa.table({"a": [1, 2]}))
        writer.close()

    expect(INVALID_ARGUMENT, put, ".parquet")

    def exchange():
        writer, reader = c.do_exchange(d, OPTIONS)
        try:
            writer.begin(schema)
            writer.write_table(pa.table({"a": [1]}))
            writer.done_writing()
            reader.read_all()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    expect(UNIMPLEMENTED, exchange)
    expect(UNIMPLEMENTED, lambda: c.authenticate_basic_token("user", "password", OPTIONS))
    # The server still answers afterwards.
    assert fl.info(c, uri(T, "parts")).total_records == 3200


# ---------------------------------------------------------------------------
# physical keys outside the registry: --allow
# ---------------------------------------------------------------------------


def _entry(key: str, path, data: bytes) -> dict:
    return {
        "logical_key": key,
        "physical_keys": [path.as_uri()],
        "size": len(data),
        "hash": {"type": "sha2-256-chunked", "value": chunked_hash(data)},
        "meta": {},
    }


def _age_atime(path):
    """Sets atime before mtime, so (with relatime) any read updates it."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    return os.stat(path).st_atime_ns


def _reads_update_atime(folder) -> bool:
    """Whether this file system records reads in atime (relatime does when
    atime is older than mtime); the never-read checks rely on it."""
    probe = folder / ".atime-probe"
    probe.write_bytes(b"probe")
    before = _age_atime(probe)
    probe.read_bytes()
    after = os.stat(probe).st_atime_ns
    probe.unlink()
    return after != before


@pytest.fixture
def outside(registry, tmp_path):
    """A package `evil/secret` whose entries point outside the registry:
    secret.parquet and secret.csv into <tmp>/outside, link.parquet to a
    symlink in <tmp>/outside leading to <tmp>/elsewhere."""
    out = tmp_path / "outside"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    table = pa.table({"id": pa.array(range(50), pa.int64()), "secret": [f"s{i}" for i in range(50)]})
    pq.write_table(table, out / "secret.parquet")
    (out / "secret.csv").write_text("a,b\n1,x\n2,y\n")
    other = pa.table({"id": pa.array(range(100, 120), pa.int64()), "secret": ["other"] * 20})
    pq.write_table(other, elsewhere / "other.parquet")
    (out / "link.parquet").symlink_to(elsewhere / "other.parquet")
    # The same bytes as secret.parquet, but in a folder that is never allowed.
    (elsewhere / "copy.parquet").write_bytes((out / "secret.parquet").read_bytes())
    lines = [
        _entry("secret.parquet", out / "secret.parquet", (out / "secret.parquet").read_bytes()),
        _entry("secret.csv", out / "secret.csv", (out / "secret.csv").read_bytes()),
        _entry("link.parquet", out / "link.parquet", (elsewhere / "other.parquet").read_bytes()),
        _entry("copy.parquet", elsewhere / "copy.parquet", (elsewhere / "copy.parquet").read_bytes()),
    ]
    top = write_manifest(registry, {"version": "v0", "message": "secret"}, lines, name="evil/secret")
    return {"dir": out, "elsewhere": elsewhere, "table": table, "top": top, "registry": registry}


def test_physical_key_outside_is_refused_and_never_read(outside, flight_server):
    server = flight_server(outside["registry"])
    c = server.client
    secret = outside["dir"] / "secret.parquet"
    secret_csv = outside["dir"] / "secret.csv"
    atimes = {p: _age_atime(p) for p in (secret, secret_csv, outside["elsewhere"] / "other.parquet")}
    for key in ("secret.parquet", "secret.csv", "link.parquet", "copy.parquet"):
        everywhere(c, PERMISSION_DENIED, uri("evil/secret", key), key)
    # Reading the list of entries reads no data ...
    manifest = fl.read(c, uri("evil/secret"))
    assert manifest.column("logical_key").to_pylist() == [
        "secret.parquet",
        "secret.csv",
        "link.parquet",
        "copy.parquet",
    ]
    # ... but their content is refused.
    expect(PERMISSION_DENIED, lambda: fl.read(c, uri("evil/secret", content="true")), "secret.parquet")
    # ListFlights does not fail because of them (and does not leak them).
    infos = list(c.list_flights(b"evil/*", OPTIONS))
    assert "" in [fl.app_metadata(i)["path"] for i in infos]
    if not _reads_update_atime(outside["dir"]):
        pytest.skip("this file system does not record reads in atime; cannot check that nothing was read")
    for p, before in atimes.items():
        assert os.stat(p).st_atime_ns == before, f"{p} was read although its physical key is refused"


def test_allow_lets_the_server_read_outside(outside, flight_server):
    server = flight_server(outside["registry"], "--allow", outside["dir"])
    c = server.client
    fl.assert_same(fl.read(c, uri("evil/secret", "secret.parquet")), outside["table"])
    fl.assert_same(fl.read(c, uri("evil/secret", "secret.csv")), fl.read_csv(outside["dir"] / "secret.csv"))
    # A symlink inside the allowed folder must not lead outside it.
    everywhere(c, PERMISSION_DENIED, uri("evil/secret", "link.parquet"), "link.parquet")


def test_manifest_content_is_fetched_only_for_selected_rows(outside, flight_server):
    """content=true with a filter (or limit) reads only the files of the rows
    selected: selecting the allowed secret.csv must not touch the refused
    link.parquet (nor read secret.parquet)."""
    server = flight_server(outside["registry"], "--allow", outside["dir"])
    c = server.client
    before = _age_atime(outside["dir"] / "secret.parquet")
    got = fl.read(c, uri("evil/secret", filter="logical_key = 'secret.csv'", content="true"))
    assert got.column("content").to_pylist() == [(outside["dir"] / "secret.csv").read_bytes()]
    if _reads_update_atime(outside["dir"]):
        assert os.stat(outside["dir"] / "secret.parquet").st_atime_ns == before, (
            "content=true read secret.parquet although the filter did not select it"
        )
    got = fl.read(c, uri("evil/secret", limit=1, content="true", columns="logical_key,content"))
    assert got.column("logical_key").to_pylist() == ["secret.parquet"]
    got = fl.read(c, uri("evil/secret", filter="logical_key IN ('secret.parquet', 'secret.csv')", content="true"))
    assert got.column("logical_key").to_pylist() == ["secret.parquet", "secret.csv"]


def test_allow_as_url_and_several(outside, flight_server, tmp_path):
    server = flight_server(outside["registry"], "--allow", tmp_path / "unrelated", "--allow", outside["dir"].as_uri())
    fl.assert_same(fl.read(server.client, uri("evil/secret", "secret.parquet")), outside["table"])


def test_allow_compares_whole_path_segments(outside, flight_server):
    # <tmp>/outs is a string prefix of <tmp>/outside, not a parent folder.
    server = flight_server(outside["registry"], "--allow", str(outside["dir"])[:-3])
    everywhere(server.client, PERMISSION_DENIED, uri("evil/secret", "secret.parquet"), "secret.parquet")


def test_tickets_are_checked_by_the_server_redeeming_them(outside, flight_server):
    allowing = flight_server(outside["registry"], "--allow", outside["dir"])
    strict = flight_server(outside["registry"])
    fi = fl.info(allowing.client, uri("evil/secret", "secret.parquet"))
    fl.assert_same(pa.concat_tables(fl.read_endpoints(allowing.client, fi)), outside["table"])
    for ep in fi.endpoints:
        expect(PERMISSION_DENIED, do_get(strict.client, ep.ticket), "secret.parquet")


def test_refused_key_stays_refused_after_the_same_content_was_read(outside, flight_server):
    """copy.parquet has the same bytes (hash) as the allowed secret.parquet but
    lives outside every allowed location: GetFlightInfo/GetSchema must refuse
    it, also after secret.parquet's footer was read (and cached by hash)."""
    server = flight_server(outside["registry"], "--allow", outside["dir"])
    c = server.client
    everywhere(c, PERMISSION_DENIED, uri("evil/secret", "copy.parquet"), "copy.parquet")
    fl.assert_same(fl.read(c, uri("evil/secret", "secret.parquet")), outside["table"])
    everywhere(c, PERMISSION_DENIED, uri("evil/secret", "copy.parquet"), "copy.parquet")
    expect(PERMISSION_DENIED, lambda: fl.read(c, uri("evil/secret", "copy.parquet")), "copy.parquet")


def test_missing_data_object_is_not_found_for_every_format(registry, flight_server, sheaf, tmp_path):
    """A blob deleted from the registry: the request is valid, the data is
    missing. CSV says NOT_FOUND naming the entry; Parquet must say the same
    (not INVALID_ARGUMENT, which blames the request)."""
    from sheaf_testlib import blob_path

    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(pa.table({"a": [1, 2, 3]}), src / "gone.parquet")
    (src / "gone.csv").write_text("a\n1\n")
    top = sheaf.push("o/gone", src)["top_hash"]
    for e in fl.manifest_entries(registry, top):
        blob_path(registry, e["hash"]["value"]).unlink()
    c = flight_server(registry).client
    everywhere(c, NOT_FOUND, uri("o/gone", "gone.csv"), "gone.csv")
    everywhere(c, NOT_FOUND, uri("o/gone", "gone.parquet"), "gone.parquet")


# ---------------------------------------------------------------------------
# UNAVAILABLE: the storage fails
# ---------------------------------------------------------------------------


@pytest.fixture
def broken_storage(registry, tmp_path):
    """evil/broken: entries whose (allowed) physical keys cannot be opened:
    a path under a regular file (ENOTDIR), which is neither missing nor
    forbidden but a failure of the storage."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "plainfile").write_bytes(b"not a folder")
    data = b"a,b\n1,2\n"
    table_bytes = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1]}), table_bytes)
    pbytes = table_bytes.getvalue().to_pybytes()
    lines = [
        _entry("t.csv", out / "plainfile" / "t.csv", data),
        _entry("t.parquet", out / "plainfile" / "t.parquet", pbytes),
    ]
    write_manifest(registry, {"version": "v0", "message": "broken"}, lines, name="evil/broken")
    return {"registry": registry, "dir": out}


def test_storage_failure_is_unavailable(broken_storage, flight_server):
    server = flight_server(broken_storage["registry"], "--allow", broken_storage["dir"])
    c = server.client
    everywhere(c, UNAVAILABLE, uri("evil/broken", "t.csv"), "t.csv")
    expect(UNAVAILABLE, lambda: fl.read(c, uri("evil/broken", content="true")), "t.csv")


def test_storage_failure_reading_parquet_is_unavailable(broken_storage, flight_server):
    server = flight_server(broken_storage["registry"], "--allow", broken_storage["dir"])
    everywhere(server.client, UNAVAILABLE, uri("evil/broken", "t.parquet"), "t.parquet")
