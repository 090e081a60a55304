"""Sheaf's Arrow Flight server (`sheaf serve`) read with pyarrow as the client:
start-up and shutdown, every table kind against pyarrow reading the source
file, projection, filters, limits, endpoints and tickets, pinned reads,
compression, --advertise, ListFlights and the actions.

Sampling is in test_flight_sampling.py, errors and the physical-key policy in
test_flight_errors.py, large data and concurrency in test_flight_big.py."""

from __future__ import annotations

import json
import signal
import subprocess

import flight_testlib as fl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from flight_testlib import OPTIONS, assert_same, hydrate, uri
from sheaf_testlib import HEX64, Sheaf, free_port

T = "t/tables"


# ---------------------------------------------------------------------------
# start-up and shutdown
# ---------------------------------------------------------------------------


def test_serve_prints_its_address_and_stops_on_sigterm(registry, flight_server):
    server = flight_server(registry)
    assert server.first_line.startswith("sheaf: serving ")
    port = int(server.url.rsplit(":", 1)[1])
    assert port > 0
    # An empty registry: nothing to list, but the server answers.
    assert list(server.client.list_flights(b"", OPTIONS)) == []
    assert fl.action(server.client, "list_packages") == []
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=20) == 0, server.stderr()


def test_sigterm_lets_a_running_stream_finish(registry, flight_server, sheaf, tmp_path):
    src = tmp_path / "src"
    table = pa.table({"id": pa.array(range(3_000_000), pa.int64())})
    fl.write_parquet(src / "t.parquet", table, row_group_size=500_000)
    sheaf.push("o/p", src)
    server = flight_server(registry)
    fi = fl.info(server.client, uri("o/p", "t.parquet", partitions=1))
    reader = server.client.do_get(fi.endpoints[0].ticket, OPTIONS)
    first = reader.read_chunk().data
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=1)  # not expected to exit while the stream runs
    except subprocess.TimeoutExpired:
        pass
    rest = reader.read_all()
    got = pa.concat_tables([pa.Table.from_batches([first]), rest])
    assert_same(got, table, "the stream running at SIGTERM")
    assert server.proc.wait(timeout=20) == 0, server.stderr()
    assert "shutting down" in server.stderr()


def test_serve_json_start_up_object(registry, flight_server):
    server = flight_server(registry, json_out=True)
    doc = server.json
    assert doc["listening"] == server.url and doc["listening"].startswith("grpc://127.0.0.1:")
    assert "registry" in doc
    assert fl.action(server.client, "list_packages") == []


def test_serve_json_first_line_is_the_json_object(registry, flight_server):
    """Scripts read the FIRST LINE to learn the port (`head -1 | jq .listening`),
    so under --json that line must be the whole JSON object."""
    server = flight_server(registry, json_out=True)
    try:
        line = json.loads(server.first_line)
    except ValueError:
        pytest.fail(
            f"under --json the first stdout line is not a JSON object: {server.first_line!r} "
            f"(stdout: {server.stdout_head!r})"
        )
    assert line["listening"] == server.url


def test_server_reads_the_registry_live(registry, flight_server, sheaf, tmp_path):
    server = flight_server(registry)
    src = tmp_path / "src"
    fl.write_parquet(src / "x.parquet", pa.table({"a": [1, 2, 3]}))
    sheaf.push("late/pkg", src)
    got = fl.read(server.client, uri("late/pkg", "x.parquet"))
    assert got.column("a").to_pylist() == [1, 2, 3]


# ---------------------------------------------------------------------------
# every table kind equals pyarrow reading the source
# ---------------------------------------------------------------------------


def test_parquet_file(flight_data):
    c = flight_data.client
    expected = hydrate(pq.read_table(flight_data.src / "data" / "types.parquet"))
    fi = fl.info(c, uri(T, "data/types.parquet"))
    assert fi.total_records == expected.num_rows
    assert fi.ordered is True
    assert len(fi.endpoints) >= 1
    assert all(not ep.locations for ep in fi.endpoints), "without --advertise endpoints name no location"
    fl.assert_no_views(fi.schema)
    got = fl.read(c, uri(T, "data/types.parquet"))
    assert_same(got, expected, "types.parquet")
    # String columns arrive as utf8 (never utf8_view), dictionaries hydrated.
    assert got.schema.field("name").type == pa.string()
    assert got.schema.field("cat").type == pa.string()


def test_parquet_file_app_metadata(flight_data):
    c = flight_data.client
    top = flight_data.tops[T]
    fi = fl.info(c, uri(T, "data/types.parquet", columns="id"))
    meta = fl.app_metadata(fi)
    assert set(meta) >= {"package", "top_hash", "path", "pinned_uri"}
    assert meta["package"] == T
    assert meta["top_hash"] == top and HEX64.match(top)
    assert meta["path"] == "data/types.parquet"
    assert meta["pinned_uri"].startswith(f"sheaf://{T}@{top}/data/types.parquet")
    assert "columns=id" in meta["pinned_uri"]
    # The pinned URI reads the same rows.
    assert_same(fl.read(c, meta["pinned_uri"]), fl.read(c, uri(T, "data/types.parquet", columns="id")))


def test_parquet_folder_of_three_parts(flight_data):
    c = flight_data.client
    parts = [pq.read_table(flight_data.src / k) for k in ("parts/a.parquet", "parts/b.parquet", "parts/c/d.parquet")]
    expected = pa.concat_tables(parts)
    fi = fl.info(c, uri(T, "parts"))
    assert fi.total_records == 3200
    got = fl.read(c, uri(T, "parts"))
    assert_same(got, expected, "parts/")
    assert got.column("id").to_pylist() == list(range(3200))
    # 9 row groups (3 + 4 + 2): at most one endpoint per row group.
    assert len(fl.info(c, uri(T, "parts", partitions=9)).endpoints) == 9
    assert len(fl.info(c, uri(T, "parts", partitions=1000)).endpoints) == 9
    for n in (2, 4, 9):
        tables = fl.read_endpoints(c, fl.info(c, uri(T, "parts", partitions=n)))
        assert len(tables) == n
        assert all(t.num_rows > 0 for t in tables)
        assert_same(pa.concat_tables(tables), expected, f"parts with partitions={n}")


@pytest.mark.parametrize(
    "path,reader",
    [
        ("csv/data.csv", lambda p: fl.read_csv(p)),
        ("csv/data.tsv", lambda p: fl.read_csv(p, "\t")),
        ("json/data.jsonl", fl.read_jsonl),
        ("ipc/data.arrow", fl.read_ipc_file),
        ("ipc/data.arrows", fl.read_ipc_stream),
    ],
)
def test_file_tables(flight_data, path, reader):
    c = flight_data.client
    expected = hydrate(reader(flight_data.src / path))
    fi = fl.info(c, uri(T, path))
    assert fi.total_records == -1, "row counts of CSV, JSON and IPC files are not known up front"
    assert len(fi.endpoints) == 1, "files other than Parquet are read whole by one endpoint"
    assert len(fl.info(c, uri(T, path, partitions=4)).endpoints) == 1
    fl.assert_no_views(fi.schema)
    got = fl.read(c, uri(T, path))
    assert_same(got, expected, path)


def test_demo_tables(flight_data):
    c = flight_data.client
    readings = flight_data.readings()
    assert readings.num_rows == 100_000
    assert pq.ParquetFile(flight_data.demo / "tables" / "readings.parquet").metadata.num_row_groups == 10
    fi = fl.info(c, uri("demo/weather", "tables/readings.parquet"))
    assert fi.total_records == 100_000
    assert_same(fl.read(c, uri("demo/weather", "tables/readings.parquet")), readings, "readings")
    assert_same(
        fl.read(c, uri("demo/weather", "tables/daily.csv")),
        fl.read_csv(flight_data.demo / "tables" / "daily.csv"),
        "daily.csv",
    )


def test_demo_jsonl_values(flight_data):
    # pyarrow infers "2026-11-01" strings in JSON as timestamps, Sheaf (like
    # arrow-rs) keeps them as strings: compare the values under Sheaf's schema.
    import pyarrow.json as pajson

    c = flight_data.client
    got = fl.read(c, uri("demo/weather", "tables/daily.jsonl"))
    assert got.num_rows == 150
    expected = pajson.read_json(
        flight_data.demo / "tables" / "daily.jsonl", parse_options=pajson.ParseOptions(explicit_schema=got.schema)
    )
    assert_same(got, expected, "daily.jsonl")


def _manifest_expected(entries: list[dict]) -> pa.Table:
    return pa.table(
        {
            "logical_key": pa.array([e["logical_key"] for e in entries], pa.string()),
            "size": pa.array([e["size"] for e in entries], pa.uint64()),
            "hash_type": pa.array([e["hash"]["type"] for e in entries], pa.string()),
            "hash": pa.array([e["hash"]["value"] for e in entries], pa.string()),
        }
    )


def test_manifest_table(flight_data):
    c = flight_data.client
    entries = fl.manifest_entries(flight_data.registry, flight_data.tops[T])
    fi = fl.info(c, uri(T))
    assert fi.total_records == len(entries)
    assert fl.app_metadata(fi)["path"] == ""
    got = fl.read(c, uri(T))
    assert got.column_names == ["logical_key", "size", "hash_type", "hash", "meta"]
    assert got.schema.field("meta").type == pa.string()
    assert_same(
        got.select(["logical_key", "size", "hash_type", "hash"]).cast(_manifest_expected(entries).schema),
        _manifest_expected(entries),
        "manifest",
    )
    assert got.schema.field("size").type in (pa.uint64(), pa.int64())
    for e, m in zip(entries, got.column("meta").to_pylist(), strict=False):
        assert json.loads(m) == (e.get("meta") or {}), e["logical_key"]


def test_manifest_table_with_content(flight_data):
    c = flight_data.client
    entries = fl.manifest_entries(flight_data.registry, flight_data.tops[T])
    got = fl.read(c, uri(T, content="true"))
    assert got.column_names == ["logical_key", "size", "hash_type", "hash", "meta", "content"]
    assert got.schema.field("content").type == pa.binary()
    assert got.column("logical_key").to_pylist() == [e["logical_key"] for e in entries]
    for key, content in zip(got.column("logical_key").to_pylist(), got.column("content").to_pylist(), strict=False):
        assert content == (flight_data.src / key).read_bytes(), key
    assert "content" not in fl.read(c, uri(T, content="false")).column_names


def test_manifest_table_partitions(flight_data):
    """partitions=N cuts the manifest table into N runs of entries (balanced by
    content size when contents are read); their ordered union is the single
    read, endpoint metadata covers every entry once, and sampling hashes the
    entry's position in the whole manifest, so it does not depend on the cut."""
    c = flight_data.client
    entries = fl.manifest_entries(flight_data.registry, flight_data.tops[T])
    assert len(entries) >= 6
    for q in (
        {},
        {"content": "true"},
        {"content": "true", "sample": "0.5", "seed": "7"},
        {"filter": "size > 10", "content": "true"},
    ):
        whole = fl.read(c, uri(T, **q))
        assert len(fl.info(c, uri(T, **q)).endpoints) == 1, q  # small: one endpoint by default
        for n in (2, 4, len(entries), len(entries) + 5):
            fi = fl.info(c, uri(T, partitions=str(n), **q))
            assert len(fi.endpoints) == min(n, len(entries)), (q, n)
            assert fi.ordered
            metas = [json.loads(bytes(e.app_metadata)) for e in fi.endpoints]
            assert [m["first_row"] for m in metas] == [
                sum(x["table_rows"] for x in metas[:i]) for i in range(len(metas))
            ]
            assert sum(m["table_rows"] for m in metas) == len(entries) and all(m["table_rows"] > 0 for m in metas)
            parts = fl.read_endpoints(c, fi)
            assert_same(pa.concat_tables(parts), whole, f"{q} partitions={n}")
    # A limit is global: one endpoint.
    assert len(fl.info(c, uri(T, partitions="4", limit="3")).endpoints) == 1


def test_get_schema_matches_flight_info_and_data(flight_data):
    c = flight_data.client
    for u in (
        uri(T, "data/types.parquet"),
        uri(T, "parts", columns="s,id"),
        uri(T, "csv/data.csv"),
        uri(T, "json/data.jsonl"),
        uri(T, "ipc/data.arrow"),
        uri(T),
        uri(T, content="true"),
        uri("demo/weather", "tables/readings.parquet", columns="station", filter="temp_c > 3"),
    ):
        fi = fl.info(c, u)
        for d in (flight.FlightDescriptor.for_command(u), flight.FlightDescriptor.for_path(u)):
            assert c.get_schema(d, OPTIONS).schema.equals(fi.schema), u
        assert fl.read(c, u).schema.equals(fi.schema), u


def test_path_descriptor_reads_the_same(flight_data):
    c = flight_data.client
    u = uri(T, "parts", columns="id,s", filter="id % 3 = 0")
    fi = fl.info(c, u, path_descriptor=True)
    assert fi.descriptor.descriptor_type == flight.DescriptorType.PATH
    by_path = pa.concat_tables(fl.read_endpoints(c, fi))
    assert_same(by_path, fl.read(c, u))


ODD_PATHS = [
    "odd dir/ü space.csv",
    "odd dir/pct %41.csv",
    "odd dir/q?mark.parquet",
    "odd dir/hash #1.jsonl",
    "odd dir/plus+sign & eq=.csv",
]
ODD_TABLE = pa.table({"a": pa.array([1, 2, 3], pa.int64()), "b": ["x", "y", "z"]})


@pytest.fixture
def odd(registry, flight_server, sheaf, tmp_path):
    """Package o/odd whose tables' logical keys hold spaces, %, ?, #, &, = and +."""
    src = tmp_path / "src"
    for p in ODD_PATHS:
        f = src.joinpath(*p.split("/"))
        f.parent.mkdir(parents=True, exist_ok=True)
        if p.endswith(".csv"):
            f.write_text("a,b\n1,x\n2,y\n3,z\n")
        elif p.endswith(".jsonl"):
            f.write_text("".join(json.dumps(r) + "\n" for r in ODD_TABLE.to_pylist()))
        else:
            pq.write_table(ODD_TABLE, f)
    sheaf.push("o/odd", src)
    return flight_server(registry)


def _read_back(c, uris: list[tuple[str, str]]):
    """Reads every (what, uri); asserts each gives ODD_TABLE, reporting all failures."""
    problems = []
    for what, u in uris:
        try:
            assert_same(fl.read(c, u), ODD_TABLE, what)
        except Exception as e:  # noqa: BLE001 - collected, reported together
            problems.append(f"{what} {u!r}: {type(e).__name__}: {str(e).splitlines()[0][:220]}")
    assert not problems, "URIs do not read their table back:\n" + "\n".join(problems)


def test_odd_paths_read_with_percent_encoded_uris(odd):
    import urllib.parse

    uris = [(p, f"sheaf://o/odd/{urllib.parse.quote(p, safe='/')}") for p in ODD_PATHS]
    _read_back(odd.client, uris)
    for p, u in uris:
        assert fl.app_metadata(fl.info(odd.client, u))["path"] == p


def test_odd_paths_pinned_uri_round_trips(odd):
    import urllib.parse

    pinned = [
        (p, fl.app_metadata(fl.info(odd.client, f"sheaf://o/odd/{urllib.parse.quote(p, safe='/')}"))["pinned_uri"])
        for p in ODD_PATHS
    ]
    _read_back(odd.client, [(f"pinned_uri of {p}", u) for p, u in pinned])


def test_odd_paths_list_tables_uris_round_trip(odd):
    tables = fl.action(odd.client, "list_tables", {"ref": "o/odd"})["tables"]
    assert {t["path"] for t in tables} >= set(ODD_PATHS)
    _read_back(odd.client, [(f"list_tables uri of {t['path']}", t["uri"]) for t in tables if t["path"] in ODD_PATHS])


def test_odd_paths_list_flights(odd):
    """ListFlights lists every table (one odd key must not fail the whole
    listing) and its descriptors read back."""
    listed = [i for i in odd.client.list_flights(b"", OPTIONS) if fl.app_metadata(i)["path"] in ODD_PATHS]
    assert sorted(fl.app_metadata(i)["path"] for i in listed) == sorted(ODD_PATHS)
    _read_back(
        odd.client,
        [(f"ListFlights descriptor of {fl.app_metadata(i)['path']}", i.descriptor.command.decode()) for i in listed],
    )


def test_quoted_identifiers(registry, flight_server, sheaf, tmp_path):
    src = tmp_path / "src"
    table = pa.table({"MixedCase": pa.array(range(10), pa.int64()), "my col": [f"v{i}" for i in range(10)]})
    fl.write_parquet(src / "q.parquet", table)
    sheaf.push("o/q", src)
    server = flight_server(registry)
    got = fl.read(
        server.client,
        uri("o/q", "q.parquet", columns="my col,MixedCase", filter='"MixedCase" >= 7 AND "my col" <> \'v9\''),
    )
    assert_same(got, table.filter(pc.field("MixedCase") >= 7).slice(0, 2).select(["my col", "MixedCase"]))


def test_empty_tables(registry, flight_server, sheaf, tmp_path):
    src = tmp_path / "src"
    empty = pa.table({"a": pa.array([], pa.int64()), "s": pa.array([], pa.string())})
    fl.write_parquet(src / "empty.parquet", empty)
    (src / "header_only.csv").write_text("a,b\n")
    fl.write_ipc_file(src / "empty.arrow", empty)
    sheaf.push("o/empty", src)
    c = flight_server(registry).client
    fi = fl.info(c, uri("o/empty", "empty.parquet"))
    assert fi.total_records == 0
    assert_same(fl.read(c, uri("o/empty", "empty.parquet")), empty)
    assert_same(fl.read(c, uri("o/empty", "empty.parquet", sample=0.5, partitions=3)), empty)
    assert_same(fl.read(c, uri("o/empty", "empty.arrow")), empty)
    assert_same(fl.read(c, uri("o/empty", "header_only.csv")), fl.read_csv(src / "header_only.csv"))


# ---------------------------------------------------------------------------
# projection, filters, limits
# ---------------------------------------------------------------------------


def test_projection(flight_data):
    c = flight_data.client
    types = hydrate(pq.read_table(flight_data.src / "data" / "types.parquet"))
    got = fl.read(c, uri(T, "data/types.parquet", columns="score,id,cat"))
    assert_same(got, types.select(["score", "id", "cat"]))
    csv = fl.read_csv(flight_data.src / "csv" / "data.csv")
    assert_same(fl.read(c, uri(T, "csv/data.csv", columns="name,id")), csv.select(["name", "id"]))
    js = fl.read_jsonl(flight_data.src / "json" / "data.jsonl")
    assert_same(fl.read(c, uri(T, "json/data.jsonl", columns="tags,ok")), js.select(["tags", "ok"]))
    arrow = hydrate(fl.read_ipc_file(flight_data.src / "ipc" / "data.arrow"))
    assert_same(fl.read(c, uri(T, "ipc/data.arrows", columns="d,f")), arrow.select(["d", "f"]))
    fi = fl.info(c, uri(T, "data/types.parquet", columns="score,id"))
    assert fi.schema.names == ["score", "id"]
    assert fi.total_records == types.num_rows


def test_projection_of_the_manifest_table(flight_data):
    c = flight_data.client
    full = fl.read(c, uri(T))
    for cols in (["hash"], ["hash", "size"], ["meta", "logical_key"], ["size"]):
        got = fl.read(c, uri(T, columns=",".join(cols)))
        assert_same(got, full.select(cols), f"manifest columns={cols}")
    got = fl.read(c, uri(T, columns="content,logical_key", content="true"))
    expected = fl.read(c, uri(T, content="true")).select(["content", "logical_key"])
    assert_same(got, expected, "manifest columns=content,logical_key")


READINGS = ("demo/weather", "tables/readings.parquet")


def _where(pred):
    """A row predicate (on a dict of the row) as a filter of a pyarrow table."""
    return lambda t: t.filter(pa.array([bool(pred(r)) for r in t.to_pylist()], pa.bool_()))


# (SQL, the same filter computed with pyarrow)
FILTERS = [
    (
        "temp_c > 10 AND station = 'oslo'",
        lambda t: t.filter((pc.field("temp_c") > 10) & (pc.field("station") == "oslo")),
    ),
    ("id % 7 = 3", _where(lambda r: r["id"] % 7 == 3)),
    (
        "station IN ('lima', 'osaka') OR pressure_hpa < 981",
        lambda t: t.filter(pc.field("station").isin(["lima", "osaka"]) | (pc.field("pressure_hpa") < 981)),
    ),
    ("temp_c BETWEEN -1 AND 1.5", lambda t: t.filter((pc.field("temp_c") >= -1) & (pc.field("temp_c") <= 1.5))),
    (
        "NOT (station <> 'nairobi') AND id >= 99000",
        lambda t: t.filter((pc.field("station") == "nairobi") & (pc.field("id") >= 99000)),
    ),
    ("station LIKE 'o%'", lambda t: t.filter(pc.starts_with(pc.field("station"), "o"))),
    ("id + 1 = 50000", lambda t: t.filter(pc.field("id") == 49999)),
    ("id > 200000", lambda t: t.filter(pc.field("id") > 200000)),
    ("pressure_hpa >= 980", lambda t: t.filter(pc.field("pressure_hpa") >= 980)),
    ("temp_c * 2 > pressure_hpa - 940", _where(lambda r: r["temp_c"] * 2 > r["pressure_hpa"] - 940)),
]


@pytest.mark.parametrize("sql,apply", FILTERS, ids=[f[0] for f in FILTERS])
def test_filter_equals_pyarrow(flight_data, sql, apply):
    c = flight_data.client
    readings = flight_data.readings()
    expected = apply(readings)
    u = uri(*READINGS, filter=sql)
    fi = fl.info(c, u)
    assert fi.total_records == -1, "total_records is -1 under a filter"
    got = fl.read(c, u)
    assert_same(got, expected, sql)
    # Split over endpoints, in order, the result is the same.
    assert_same(
        pa.concat_tables(fl.read_endpoints(c, fl.info(c, uri(*READINGS, filter=sql, partitions=4)))),
        expected,
        f"{sql} over 4 partitions",
    )


def test_filter_on_a_column_not_projected(flight_data):
    c = flight_data.client
    readings = flight_data.readings()
    got = fl.read(c, uri(*READINGS, columns="id", filter="temp_c > 30 AND station = 'lima'"))
    expected = readings.filter((pc.field("temp_c") > 30) & (pc.field("station") == "lima")).select(["id"])
    assert got.column_names == ["id"]
    assert_same(got, expected)


def test_filter_on_other_table_kinds(flight_data):
    c = flight_data.client
    src = flight_data.src
    csv = fl.read_csv(src / "csv" / "data.csv")
    assert_same(
        fl.read(c, uri(T, "csv/data.csv", filter="ok AND name = 'n3'")),
        csv.filter(pc.field("ok") & (pc.field("name") == "n3")),
    )
    tsv = fl.read_csv(src / "csv" / "data.tsv", "\t")
    assert_same(
        fl.read(c, uri(T, "csv/data.tsv", filter="x < 10.5", columns="id")),
        tsv.filter(pc.field("x") < 10.5).select(["id"]),
    )
    js = fl.read_jsonl(src / "json" / "data.jsonl")
    assert_same(
        fl.read(c, uri(T, "json/data.jsonl", filter="maybe IS NOT NULL AND id > 4000")),
        js.filter(pc.field("maybe").is_valid() & (pc.field("id") > 4000)),
    )
    arrow = hydrate(fl.read_ipc_file(src / "ipc" / "data.arrow"))
    assert_same(
        fl.read(c, uri(T, "ipc/data.arrow", filter="d = 'b' AND s IS NULL")),
        arrow.filter((pc.field("d") == "b") & pc.field("s").is_null()),
    )
    types = hydrate(pq.read_table(src / "data" / "types.parquet"))
    assert_same(
        fl.read(c, uri(T, "data/types.parquet", filter="name IS NULL OR score > 400")),
        types.filter(pc.field("name").is_null() | (pc.field("score") > 400)),
    )
    parts = fl.read(c, uri(T, "parts"))
    assert_same(
        fl.read(c, uri(T, "parts", filter="s = 's4' AND id BETWEEN 900 AND 2600")),
        parts.filter((pc.field("s") == "s4") & (pc.field("id") >= 900) & (pc.field("id") <= 2600)),
    )


def test_filter_on_the_manifest_table(flight_data):
    c = flight_data.client
    full = fl.read(c, uri(T))
    got = fl.read(c, uri(T, filter="size > 100", columns="logical_key"))
    assert_same(got, full.filter(pc.field("size") > 100).select(["logical_key"]))
    got = fl.read(c, uri(T, filter="size > 100", columns="hash"))
    assert_same(got, full.filter(pc.field("size") > 100).select(["hash"]))
    got = fl.read(c, uri(T, filter="hash_type = 'sha2-256-chunked' AND size < 100", columns="meta,size"))
    assert_same(
        got,
        full.filter((pc.field("hash_type") == "sha2-256-chunked") & (pc.field("size") < 100)).select(["meta", "size"]),
    )
    got = fl.read(c, uri(T, filter="logical_key LIKE 'csv/%'", content="true"))
    assert got.column("logical_key").to_pylist() == ["csv/data.csv", "csv/data.tsv"]
    assert got.column("content").to_pylist() == [
        (flight_data.src / k).read_bytes() for k in ("csv/data.csv", "csv/data.tsv")
    ]


def test_plus_in_a_uri_is_a_plus_sign(flight_data):
    c = flight_data.client
    # Literal '+' (not percent-encoded) means plus, not space.
    got = fl.read(c, f"sheaf://{READINGS[0]}/{READINGS[1]}?columns=id&filter=id+1<3")
    assert got.column("id").to_pylist() == [0, 1]
    got = fl.read(c, uri(*READINGS, columns="station", filter="station = 'a+b' OR id + 2 = 4"))
    assert got.column("station").to_pylist() == ["nairobi"]


def test_limit(flight_data):
    c = flight_data.client
    readings = flight_data.readings()
    for n in (0, 1, 5, 10_001, 100_000, 250_000):
        u = uri(*READINGS, limit=n)
        fi = fl.info(c, u)
        assert len(fi.endpoints) == 1, "a limit gives one endpoint"
        assert fi.total_records == min(n, 100_000)
        assert_same(fl.read(c, u), readings.slice(0, n), f"limit={n}")
    # A limit wins over partitions.
    assert len(fl.info(c, uri(*READINGS, limit=20_000, partitions=5)).endpoints) == 1
    # Limit after the filter: the first N matching rows.
    expected = readings.filter(pc.field("station") == "osaka").slice(0, 37)
    assert_same(fl.read(c, uri(*READINGS, filter="station = 'osaka'", limit=37)), expected)
    # Across Parquet parts, and on other table kinds.
    parts = fl.read(c, uri(T, "parts"))
    assert_same(fl.read(c, uri(T, "parts", limit=2600, columns="id")), parts.slice(0, 2600).select(["id"]))
    csv = fl.read_csv(flight_data.src / "csv" / "data.csv")
    assert_same(fl.read(c, uri(T, "csv/data.csv", limit=9000)), csv.slice(0, 9000))
    js = fl.read_jsonl(flight_data.src / "json" / "data.jsonl")
    assert_same(fl.read(c, uri(T, "json/data.jsonl", limit=3)), js.slice(0, 3))
    manifest = fl.read(c, uri(T))
    assert_same(fl.read(c, uri(T, limit=2)), manifest.slice(0, 2))


# ---------------------------------------------------------------------------
# endpoints and tickets
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 7, 10, 50])
def test_endpoints_union_equals_single_stream_and_file(flight_data, n):
    c = flight_data.client
    readings = flight_data.readings()
    single = fl.read_endpoints(c, fl.info(c, uri(*READINGS, partitions=1)))
    assert len(single) == 1
    fi = fl.info(c, uri(*READINGS, partitions=n))
    assert fi.ordered is True
    assert fi.total_records == 100_000
    assert len(fi.endpoints) == min(n, 10), "one endpoint per partition, at most one per row group"
    tables = fl.read_endpoints(c, fi)
    assert all(t.num_rows > 0 for t in tables)
    # Endpoints follow row groups: each holds whole row groups of 10000 rows.
    assert all(t.num_rows % 10_000 == 0 for t in tables)
    union = pa.concat_tables(tables)
    assert_same(union, single[0], f"partitions={n} vs one stream")
    assert_same(union, readings, f"partitions={n} vs the file")


def test_default_endpoints_of_a_small_table(flight_data):
    fi = fl.info(flight_data.client, uri(*READINGS))
    assert len(fi.endpoints) == 1, "a ~3 MB table fits one ~64 MiB endpoint"


def test_ticket_redeemed_twice_gives_the_same_rows(flight_data):
    c = flight_data.client
    for u in (
        uri(*READINGS, partitions=4),
        uri(*READINGS, sample=0.3, seed=9, filter="temp_c > 0"),
        uri(T, "csv/data.csv"),
        uri(T, content="true"),
        uri(T, "parts", limit=1500),
    ):
        fi = fl.info(c, u)
        for ep in fi.endpoints:
            a = fl.redeem(c, ep.ticket)
            b = fl.redeem(c, ep.ticket)
            assert a.equals(b), u
            # Self-contained: another connection can redeem it too.
            other = flight_data.server.connect()
            assert fl.redeem(other, ep.ticket).equals(a), u


def test_tickets_survive_a_server_restart(registry, flight_server, sheaf, tmp_path):
    src = tmp_path / "src"
    table = pa.table({"id": list(range(1000)), "s": [str(i) for i in range(1000)]})
    fl.write_parquet(src / "x.parquet", table, row_group_size=100)
    sheaf.push("o/p", src)
    first = flight_server(registry)
    fi = fl.info(first.client, uri("o/p", "x.parquet", partitions=3, filter="id % 2 = 0"))
    first.stop()
    second = flight_server(registry)
    got = pa.concat_tables(fl.read_endpoints(second.client, fi))
    assert_same(got, _where(lambda r: r["id"] % 2 == 0)(table))


# ---------------------------------------------------------------------------
# revisions: pinned reads, tags, hash prefixes
# ---------------------------------------------------------------------------


def test_pinned_reads_after_a_new_push(registry, flight_server, sheaf, tmp_path):
    server = flight_server(registry)
    c = server.client
    src = tmp_path / "src"
    old = pa.table({"id": pa.array(range(10), pa.int64()), "v": ["old"] * 10})
    fl.write_parquet(src / "t.parquet", old)
    old_bytes = (src / "t.parquet").read_bytes()
    sheaf.push("o/p", src, "-m", "v1")
    log = sheaf.json("log", "o/p")
    fi_old = fl.info(c, uri("o/p", "t.parquet"))
    meta_old = fl.app_metadata(fi_old)
    assert meta_old["top_hash"] == log[0]["top_hash"]
    old_top = meta_old["top_hash"]

    new = pa.table({"id": pa.array(range(100, 105), pa.int64()), "v": ["new"] * 5})
    fl.write_parquet(src / "t.parquet", new)
    sheaf.push("o/p", src, "-m", "v2")
    new_top = sheaf.json("log", "o/p")[0]["top_hash"]
    assert new_top != old_top

    # Latest follows the push (the server reads the registry live) ...
    fi_new = fl.info(c, uri("o/p", "t.parquet"))
    assert fl.app_metadata(fi_new)["top_hash"] == new_top
    assert_same(fl.read(c, uri("o/p", "t.parquet")), new)
    # ... while the old hash, the old pinned URI and old tickets keep the old rows.
    assert_same(fl.read(c, uri("o/p", "t.parquet", rev=f"@{old_top}")), old)
    assert_same(fl.read(c, uri("o/p", "t.parquet", rev=f"@{old_top[:10]}")), old)
    assert_same(fl.read(c, meta_old["pinned_uri"]), old)
    assert_same(pa.concat_tables(fl.read_endpoints(c, fi_old)), old)
    assert fl.app_metadata(fl.info(c, uri("o/p", "t.parquet", rev=f"@{old_top[:8]}")))["top_hash"] == old_top
    # The manifest table is pinned too.
    assert fl.read(c, uri("o/p", rev=f"@{old_top}")).column("hash").to_pylist() == [
        e["hash"]["value"] for e in fl.manifest_entries(registry, old_top)
    ]
    assert fl.read(c, uri("o/p", rev=f"@{old_top}", content="true")).column("content").to_pylist() == [old_bytes]


def test_tags_and_hash_prefixes(flight_data, tmp_path):
    c = flight_data.client
    top = flight_data.tops[T]
    sheaf = Sheaf(str(flight_data.registry))
    sheaf.json("tag", f"{T}@{top}", "flight-v1")
    expected = fl.read(c, uri(T, "parts"))
    for rev in (":flight-v1", f"@{top}", f"@{top[:6]}", f"@{top[:12]}", ":latest"):
        fi = fl.info(c, uri(T, "parts", rev=rev))
        assert fl.app_metadata(fi)["top_hash"] == top, rev
        assert_same(fl.read(c, uri(T, "parts", rev=rev)), expected, rev)


# ---------------------------------------------------------------------------
# compression
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compression_round_trips(flight_data, codec):
    c = flight_data.client
    readings = flight_data.readings()
    got = fl.read(c, uri(*READINGS, compression=codec, partitions=3))
    assert_same(got, readings, codec)
    types = hydrate(pq.read_table(flight_data.src / "data" / "types.parquet"))
    assert_same(fl.read(c, uri(T, "data/types.parquet", compression=codec)), types, codec)
    csv = fl.read_csv(flight_data.src / "csv" / "data.csv")
    assert_same(
        fl.read(c, uri(T, "csv/data.csv", compression=codec, filter="id > 100")),
        csv.filter(pc.field("id") > 100),
        codec,
    )
    assert_same(fl.read(c, uri(T, compression=codec, content="true")), fl.read(c, uri(T, content="true")), codec)


# ---------------------------------------------------------------------------
# --advertise
# ---------------------------------------------------------------------------


def test_advertise_lists_every_location_in_placement_order(registry, flight_server, sheaf, tmp_path):
    src = tmp_path / "src"
    table = pa.table({"id": pa.array(range(6000), pa.int64())})
    fl.write_parquet(src / "x.parquet", table, row_group_size=1000)
    sheaf.push("o/p", src)
    port = free_port()
    locations = [f"grpc://127.0.0.1:{port}", f"grpc://localhost:{port}"]
    args = ["--advertise", locations[0], "--advertise", locations[1]]
    server = flight_server(registry, *args, "--placement", "round-robin", listen=f"127.0.0.1:{port}")
    fi = fl.info(server.client, uri("o/p", "x.parquet", partitions=6))
    assert len(fi.endpoints) == 6
    seen = [[loc.uri.decode() for loc in ep.locations] for ep in fi.endpoints]
    assert all(sorted(s) == sorted(locations) for s in seen), seen
    firsts = [s[0] for s in seen]
    # Round-robin: consecutive endpoints alternate between the two locations.
    assert all(firsts[i] != firsts[i + 1] for i in range(len(firsts) - 1)), firsts
    # Each location is a real server: reading from it gives the table.
    got = pa.concat_tables(fl.read_endpoints(server.client, fi, connect=server.connect))
    assert_same(got, table)
    server.stop()

    # Rendezvous (the default): the order depends on the ticket only, so
    # planning again (or at another replica) puts the same location first.
    server = flight_server(registry, *args, listen=f"127.0.0.1:{port}")

    def plan() -> list[list[str]]:
        fi = fl.info(server.client, uri("o/p", "x.parquet", partitions=6))
        return [[loc.uri.decode() for loc in ep.locations] for ep in fi.endpoints]

    first = plan()
    assert all(sorted(s) == sorted(locations) for s in first), first
    assert plan() == first


# ---------------------------------------------------------------------------
# ListFlights and actions
# ---------------------------------------------------------------------------


def _paths(infos) -> list[str]:
    return [fl.app_metadata(i)["path"] for i in infos]


def test_list_flights(flight_data):
    c = flight_data.client
    top = flight_data.tops["demo/weather"]
    infos = list(c.list_flights(b"demo/*", OPTIONS))
    assert infos, "demo/* lists the demo package's tables"
    assert {fl.app_metadata(i)["package"] for i in infos} == {"demo/weather"}
    tables = fl.action(c, "list_tables", {"ref": "demo/weather"})["tables"]
    assert sorted(_paths(infos)) == sorted(t["path"] for t in tables)
    assert {"", "tables/readings.parquet", "tables/daily.csv", "tables/daily.jsonl"} <= set(_paths(infos))
    for i in infos:
        d = i.descriptor
        assert d.descriptor_type == flight.DescriptorType.CMD
        text = d.command.decode()
        assert text.startswith(f"sheaf://demo/weather@{top}"), text
        assert fl.app_metadata(i)["top_hash"] == top
        # The descriptor plans the same read.
        again = c.get_flight_info(flight.FlightDescriptor.for_command(text), OPTIONS)
        assert again.schema.equals(i.schema), text
        assert again.total_records == i.total_records
    readings = next(i for i in infos if fl.app_metadata(i)["path"] == "tables/readings.parquet")
    assert readings.total_records == 100_000
    assert_same(pa.concat_tables(fl.read_endpoints(c, readings)), flight_data.readings())

    everything = list(c.list_flights(b"", OPTIONS))
    assert {fl.app_metadata(i)["package"] for i in everything} >= {"demo/weather", "t/tables", "t/big", "t/blob"}
    assert len(list(c.list_flights(b"t/*", OPTIONS))) + len(infos) <= len(everything)
    assert list(c.list_flights(b"nobody/*", OPTIONS)) == []
    t_paths = _paths(i for i in everything if fl.app_metadata(i)["package"] == T)
    assert {
        "",
        "data/types.parquet",
        "parts",
        "csv/data.csv",
        "csv/data.tsv",
        "json/data.jsonl",
        "ipc/data.arrow",
        "ipc/data.arrows",
    } <= set(t_paths)
    assert "README.md" not in t_paths and "parts/_SUCCESS" not in t_paths


def test_actions(flight_data):
    c = flight_data.client
    sheaf = Sheaf(str(flight_data.registry))
    names = {a.type for a in c.list_actions(OPTIONS)}
    assert {"list_packages", "list_revisions", "browse", "resolve", "list_tables"} <= names

    pkgs = fl.action(c, "list_packages")
    by_name = {p["name"]: p for p in pkgs}
    assert {"demo/weather", T, "t/big", "t/blob"} <= set(by_name)
    assert by_name[T]["latest"] == flight_data.tops[T]
    assert {p["name"] for p in fl.action(c, "list_packages", {"pattern": "t/*"})} == {
        n for n in by_name if n.startswith("t/")
    }

    revisions = fl.action(c, "list_revisions", {"package": T})
    log = sheaf.json("log", T)
    assert [r["top_hash"] for r in revisions] == [r["top_hash"] for r in log]

    resolved = fl.action(c, "resolve", {"ref": f"{T}@{flight_data.tops[T][:8]}"})
    assert resolved == {"package": T, "top_hash": flight_data.tops[T]}
    assert fl.action(c, "resolve", {"ref": T})["top_hash"] == flight_data.tops[T]

    browse = fl.action(c, "browse", {"ref": T})
    assert browse["top_hash"] == flight_data.tops[T]
    keys = [e["logical_key"] for e in browse["entries"]]
    assert keys == [e["logical_key"] for e in fl.manifest_entries(flight_data.registry, flight_data.tops[T])]
    sub = fl.action(c, "browse", {"ref": T, "prefix": "parts/"})
    assert [e["logical_key"] for e in sub["entries"]] == [k for k in keys if k.startswith("parts/")]

    tables = fl.action(c, "list_tables", {"ref": T})["tables"]
    by_path = {t["path"]: t for t in tables}
    assert by_path["data/types.parquet"]["format"] == "parquet"
    assert by_path["parts"]["format"] == "parquet"
    assert by_path["csv/data.csv"]["format"] == "csv"
    assert by_path["json/data.jsonl"]["format"] in ("jsonl", "json")
    assert "README.md" not in by_path
    for t in tables:
        assert t["uri"].startswith(f"sheaf://{T}@{flight_data.tops[T]}"), t
        fi = fl.info(c, t["uri"])
        assert fl.app_metadata(fi)["path"] == t["path"]


def test_filter_with_constant_functions_is_simplified(flight_data):
    """Functions of literals (arrow_cast, to_timestamp...) are folded at
    planning, as a query planner would, so DoGet can evaluate the filter."""
    c = flight_data.client
    expected = pq.read_table(flight_data.src / "data" / "types.parquet", columns=["id"])
    expected = expected.filter(pc.greater(expected["id"], 100))
    got = fl.read(c, uri(T, "data/types.parquet", columns="id", filter="id > arrow_cast(100, 'Int32')"))
    assert_same(got, expected)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_endpoint_app_metadata_names_the_rows_each_covers(flight_data, n):
    """Each endpoint's app_metadata says which table rows it covers (before
    filters and sampling), so clients can split work without reading."""
    c = flight_data.client
    fi = fl.info(c, uri(T, "parts", partitions=n))
    metas = [json.loads(bytes(ep.app_metadata)) for ep in fi.endpoints]
    assert [m["partition"] for m in metas] == list(range(len(metas)))
    first = 0
    for m, table in zip(metas, fl.read_endpoints(c, fi), strict=False):
        assert m["first_row"] == first
        assert m["table_rows"] == table.num_rows
        assert m["rows"] == table.num_rows  # exact: the stream must hold them
        first += m["table_rows"]
    assert first == fi.total_records
    # Under a filter or a sample fraction only reading tells the rows.
    for params in ({"filter": "id > 3"}, {"sample": 0.5}):
        fi = fl.info(c, uri(T, "parts", partitions=n, **params))
        assert all("rows" not in json.loads(bytes(ep.app_metadata)) for ep in fi.endpoints), params
    # Whole-file tables: one endpoint; its region is known once counted, and its exact rows are the sample's.
    fi = fl.info(c, uri(T, "csv/data.csv", sample_rows=10, seed=1))
    assert json.loads(bytes(fi.endpoints[0].app_metadata)) == {
        "partition": 0,
        "first_row": 0,
        "table_rows": 20_000,
        "rows": 10,
    }


def test_total_bytes_counts_the_columns_read(flight_data):
    """total_bytes is the uncompressed size of the columns a read decodes
    (Parquet's own figures), so a projection shrinks it; across parts too.
    (Nested schemas keep whole row groups: their leaves are not fields.)"""
    c = flight_data.client
    parts = [flight_data.src / k for k in ("parts/a.parquet", "parts/b.parquet", "parts/c/d.parquet")]
    whole = just_v = 0
    for path in parts:
        md = pq.ParquetFile(path).metadata
        col = [md.schema.column(i).name for i in range(md.num_columns)].index("v")
        whole += sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
        just_v += sum(md.row_group(g).column(col).total_uncompressed_size for g in range(md.num_row_groups))
    assert fl.info(c, uri(T, "parts")).total_bytes == whole
    assert fl.info(c, uri(T, "parts", columns="v")).total_bytes == just_v
    assert just_v < whole
    # A filter column is read too.
    assert fl.info(c, uri(T, "parts", columns="v", filter="id > 3")).total_bytes > just_v
