"""Helpers for the Arrow Flight tests (test_flight*.py): dataset URIs, reading
every endpoint with pyarrow, comparing tables, the sampling formula, and the
test data the shared server serves. Imports pyarrow, so only the Flight tests
import this module."""

from __future__ import annotations

import decimal
import json
import os
import random
import urllib.parse
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

# Buffers received over Flight need not be 64-byte aligned; pyarrow's compute
# (Table.filter on a received table) warns about that unless told to copy.
os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "reallocate")

import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv
import pyarrow.flight as flight
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq
from sheaf_testlib import MIB, FlightServer

# Every call gets a deadline so a hung server fails a test instead of the run.
TIMEOUT = 60.0
OPTIONS = flight.FlightCallOptions(timeout=TIMEOUT)


# --------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------


def uri(package: str, path: str = "", rev: str = "", **params) -> str:
    """`sheaf://PACKAGE[REV][/PATH][?k=v...]` with percent-encoded values
    (REV is "@hash" or ":tag")."""
    text = f"sheaf://{package}{rev}"
    if path:
        text += "/" + path
    if params:
        text += "?" + "&".join(f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in params.items())
    return text


def cmd(u: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(u)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def info(client, u: str, *, path_descriptor: bool = False) -> flight.FlightInfo:
    d = flight.FlightDescriptor.for_path(u) if path_descriptor else cmd(u)
    return client.get_flight_info(d, OPTIONS)


def app_metadata(fi: flight.FlightInfo) -> dict:
    return json.loads(bytes(fi.app_metadata).decode("utf-8"))


def redeem(client, ticket: flight.Ticket) -> pa.Table:
    return client.do_get(ticket, OPTIONS).read_all()


def read_endpoints(client, fi: flight.FlightInfo, connect=None) -> list[pa.Table]:
    """Each endpoint's table, in endpoint order. An endpoint with locations is
    read from its first location through `connect(url)`."""
    out = []
    for ep in fi.endpoints:
        c = client
        if ep.locations:
            assert connect is not None, f"endpoint names locations {ep.locations} but no connect() was given"
            c = connect(ep.locations[0].uri.decode())
        out.append(redeem(c, ep.ticket))
    return out


def concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def read(client, u: str) -> pa.Table:
    """GetFlightInfo, then every endpoint in order, concatenated. Checks each
    endpoint's schema against FlightInfo's."""
    fi = info(client, u)
    parts = read_endpoints(client, fi)
    for p in parts:
        assert p.schema.equals(fi.schema), f"{u}: endpoint schema {p.schema} != FlightInfo schema {fi.schema}"
    return concat(parts, fi.schema)


def action(client, name: str, body: dict | None = None):
    """DoAction with a JSON body; asserts exactly one JSON result and returns it."""
    payload = json.dumps(body if body is not None else {}).encode()
    results = list(client.do_action(flight.Action(name, payload), OPTIONS))
    assert len(results) == 1, f"{name}: expected one result, got {len(results)}"
    return json.loads(results[0].body.to_pybytes().decode("utf-8"))


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------


def wire_type(t: pa.DataType) -> pa.DataType:
    """The type a column should arrive as: dictionaries hydrated, views plain."""
    if pa.types.is_dictionary(t):
        return wire_type(t.value_type)
    if t == pa.string_view():
        return pa.string()
    if t == pa.binary_view():
        return pa.binary()
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(wire_type(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(wire_type(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(wire_type(t.field(i).type)) for i in range(t.num_fields)])
    return t


def hydrate(table: pa.Table) -> pa.Table:
    """`table` with the types the server sends (dictionaries decoded)."""
    cols, fields = [], []
    for f, col in zip(table.schema, table.columns, strict=False):
        t = wire_type(f.type)
        cols.append(col.cast(t) if t != f.type else col)
        fields.append(pa.field(f.name, t, f.nullable))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def assert_same(got: pa.Table, expected: pa.Table, what: str = ""):
    """Same column names, types and values in the same order (chunking and
    nullability flags aside)."""
    prefix = f"{what}: " if what else ""
    assert got.column_names == expected.column_names, f"{prefix}columns {got.column_names} != {expected.column_names}"
    for name, g, e in zip(got.column_names, got.schema.types, expected.schema.types, strict=False):
        assert g == e, f"{prefix}column {name!r} arrived as {g}, expected {e}"
    assert got.num_rows == expected.num_rows, f"{prefix}{got.num_rows} rows, expected {expected.num_rows}"
    for name in got.column_names:
        g, e = got.column(name), expected.column(name)
        if not g.equals(e):
            gl, el = g.to_pylist(), e.to_pylist()
            bad = next(i for i in range(len(gl)) if gl[i] != el[i]) if gl != el else None
            raise AssertionError(
                f"{prefix}column {name!r} differs (first at row {bad}: "
                f"{_short(gl[bad]) if bad is not None else '?'} != {_short(el[bad]) if bad is not None else '?'})"
            )


def _short(v):
    r = repr(v)
    return r if len(r) < 120 else r[:117] + "..."


def assert_no_views(schema: pa.Schema):
    for f in schema:
        t = f.type
        assert t not in (pa.string_view(), pa.binary_view()), f"column {f.name} arrived as a view type {t}"
        assert not pa.types.is_dictionary(t), f"column {f.name} arrived dictionary-encoded ({t})"


# --------------------------------------------------------------------------
# Sampling, computed independently of the server
# --------------------------------------------------------------------------

M64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def row_hash(seed: int, p: int) -> int:
    return splitmix64(seed ^ splitmix64(p))


def sample_positions(n_rows: int, fraction: float, seed: int) -> list[int]:
    """Positions kept by `sample=fraction&seed=seed`: hash < floor(F * 2^64)."""
    threshold = int(Fraction(float(fraction)) * (1 << 64))
    return [p for p in range(n_rows) if row_hash(seed, p) < threshold]


def sample_rows_positions(n_rows: int, n: int, seed: int) -> list[int]:
    """Positions kept by `sample_rows=n&seed=seed`: the n smallest hashes."""
    ranked = sorted(range(n_rows), key=lambda p: row_hash(seed, p))
    return sorted(ranked[:n])


# --------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------


def types_table(n: int = 5000) -> pa.Table:
    """Many column types, with nulls."""
    rng = random.Random(1)
    ids = list(range(n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([None if i % 7 == 0 else f"name-{i}-{'é' * (i % 3)}" for i in ids], pa.string()),
            "score": pa.array([None if i % 11 == 0 else i * 0.125 - 100 for i in ids], pa.float64()),
            "flag": pa.array([i % 3 == 0 for i in ids], pa.bool_()),
            "small": pa.array([(i * 7919) % 60000 - 30000 for i in ids], pa.int32()),
            "u16": pa.array([i % 65536 for i in ids], pa.uint16()),
            "ts": pa.array([1_700_000_000_000_000 + i * 1_000_003 for i in ids], pa.timestamp("us", tz="UTC")),
            "day": pa.array([19000 + i % 400 for i in ids], pa.date32()),
            "cat": pa.array([["red", "green", "blue", None][i % 4] for i in ids]).dictionary_encode(),
            "tags": pa.array([[i, i + 1][: i % 3] if i % 5 else None for i in ids], pa.list_(pa.int64())),
            "raw": pa.array([rng.randbytes(i % 17) for i in ids], pa.binary()),
            "amount": pa.array(
                [None if i % 13 == 0 else decimal.Decimal(i * 37) / 100 for i in ids], pa.decimal128(12, 2)
            ),
            "big_s": pa.array([f"L{i}" for i in ids], pa.large_string()),
            "point": pa.array(
                [{"x": i, "label": f"p{i % 4}"} for i in ids], pa.struct([("x", pa.int64()), ("label", pa.string())])
            ),
        }
    )


def parts_tables() -> dict[str, pa.Table]:
    """Three Parquet parts of one schema (ids continue across parts)."""
    out, start = {}, 0
    for key, rows in (("parts/a.parquet", 1000), ("parts/b.parquet", 1500), ("parts/c/d.parquet", 700)):
        ids = list(range(start, start + rows))
        out[key] = pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "v": pa.array([i * 0.5 for i in ids], pa.float64()),
                "s": pa.array([f"s{i % 9}" for i in ids], pa.string()),
            }
        )
        start += rows
    return out


def csv_text(n: int, sep: str) -> str:
    lines = [sep.join(["id", "x", "name", "ok"])]
    for i in range(n):
        lines.append(sep.join([str(i), repr(i * 0.25), f"n{i % 13}", "true" if i % 2 else "false"]))
    return "\n".join(lines) + "\n"


def jsonl_text(n: int) -> str:
    rows = []
    for i in range(n):
        rows.append(
            json.dumps(
                {
                    "id": i,
                    "x": i / 4,
                    "name": f"j{i % 5}",
                    "ok": i % 3 == 0,
                    "maybe": None if i % 4 else i,
                    "tags": [i, i + 1],
                }
            )
        )
    return "\n".join(rows) + "\n"


def ipc_table() -> pa.Table:
    ids = list(range(30_000))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "f": pa.array([i / 3 for i in ids], pa.float64()),
            "s": pa.array([None if i % 10 == 0 else f"row {i}" for i in ids], pa.string()),
            "d": pa.array([["a", "b", "c"][i % 3] for i in ids]).dictionary_encode(),
        }
    )


def write_ipc_file(path: Path, table: pa.Table, max_chunksize: int | None = 10_000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with ipc.new_file(str(path), table.schema) as w:
        for b in table.to_batches(max_chunksize=max_chunksize):
            w.write_batch(b)


def write_ipc_stream(path: Path, table: pa.Table, max_chunksize: int | None = 10_000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with ipc.new_stream(str(path), table.schema) as w:
        for b in table.to_batches(max_chunksize=max_chunksize):
            w.write_batch(b)


def write_parquet(path: Path, table: pa.Table, row_group_size: int | None = None, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path), row_group_size=row_group_size, **kw)


# Readers for the source files, as a pyarrow user would read them.


def read_csv(path: Path, sep: str = ",") -> pa.Table:
    return pacsv.read_csv(str(path), parse_options=pacsv.ParseOptions(delimiter=sep))


def read_jsonl(path: Path) -> pa.Table:
    return pajson.read_json(str(path))


def read_ipc_file(path: Path) -> pa.Table:
    with ipc.open_file(str(path)) as r:
        return r.read_all()


def read_ipc_stream(path: Path) -> pa.Table:
    with ipc.open_stream(str(path)) as r:
        return r.read_all()


def manifest_entries(registry: Path, top_hash: str) -> list[dict]:
    """The entry lines of a revision's manifest file, in file order."""
    lines = (registry / ".quilt" / "packages" / top_hash).read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines[1:]) if "physical_keys" in e]


@dataclass
class FlightData:
    """What the shared server serves, and where its sources are."""

    server: FlightServer
    registry: Path
    src: Path  # pushed as t/tables
    big: Path  # pushed as t/big
    blob_src: Path  # pushed as t/blob
    demo: Path  # demo/weather installed here
    tops: dict[str, str] = field(default_factory=dict)  # package -> top hash

    @property
    def client(self):
        return self.server.client

    def readings(self) -> pa.Table:
        return pq.read_table(str(self.demo / "tables" / "readings.parquet"))


CELL_SIZE = 5 * MIB + 321


def big_cell_table() -> pa.Table:
    """Three rows; the middle one holds a binary value over 4 MiB."""
    payload = random.Random(5).randbytes(CELL_SIZE)
    return pa.table({"id": pa.array([0, 1, 2], pa.int64()), "payload": pa.array([b"tiny", payload, b""], pa.binary())})


def blob_bytes() -> bytes:
    return random.Random(6).randbytes(5 * MIB + 77)
