"""Helpers for the Flight SQL suites (test_sql_*.py): the test data (Parquet files generated with pyarrow from
seeded generators, pushed with the CLI into a registry built once per session), a `sheaf serve` per test module,
ADBC connections (adbc_driver_flightsql's DBAPI), raw Flight SQL calls with pyarrow.flight (a hand-encoded
CommandStatementQuery), DuckDB over the very same local Parquet files, and the one place where results of two
engines are compared (`normalize_value`).

The packages (see `build_data`):

- `sql/sales` (tag `release`): `tables/orders.parquet` (120,000 rows in 5 row groups: ints, floats, strings,
  dates, naive and UTC timestamps, booleans, NULLs in most columns), `tables/items/` (a folder table of 3 Parquet
  parts), `README.md` and `docs/notes.txt` (non-table entries, seen in `_manifest`).
- `sql/stores`: `tables/stores.parquet` (a dimension of stores) in two revisions, tagged `v1` and `v2` (latest):
  v2 removes stores 3, 17 and 42, changes stores 5, 8, 21 and 33 and adds stores 51 to 55. Orders reference stores
  1 to 60, so some orders have no store in either revision.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

# Buffers received over Flight need not be 64-byte aligned (see flight_testlib).
os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "reallocate")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.flight as flight  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from sheaf_testlib import Sheaf, start_server  # noqa: E402

TIMEOUT = 120.0
OPTIONS = flight.FlightCallOptions(timeout=TIMEOUT)

ORDERS_ROWS = 120_000
ORDERS_ROW_GROUP = 25_000
ITEMS_PARTS = (("part-0.parquet", 30_000), ("part-1.parquet", 25_000), ("part-2.parquet", 35_000))

SALES = "sql/sales"
STORES = "sql/stores"
ORDERS = "tables/orders.parquet"
ITEMS = "tables/items"
STORES_T = "tables/stores.parquet"

# --------------------------------------------------------------------------
# Test data (deterministic: every generator is seeded)
# --------------------------------------------------------------------------

PRODUCTS = [f"prod-{i:02d}" for i in range(36)] + ["Café crème", "naïve tea", "日本茶", "Big  Box"]
CATEGORIES = ["books", "toys", "food", "garden", "électronique"]
CITIES = ["Oslo", "Bergen", "Lyon", "Paris", "Kyoto", "São Paulo", "Austin"]
REGIONS = ["north", "south", "east", "west"]
EPOCH = dt.date(2023, 1, 1)


def _masked(values, mask, typ) -> pa.Array:
    return pa.array(values, typ, mask=np.asarray(mask, dtype=bool))


def orders_table(n: int = ORDERS_ROWS, seed: int = 16) -> pa.Table:
    """The orders fact table: one row per order, NULLs in most columns."""
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 730, n)
    secs = rng.integers(0, 86_400, n)
    dates = np.datetime64(EPOCH.isoformat(), "D") + days
    ts = dates.astype("datetime64[us]") + secs.astype("timedelta64[s]").astype("timedelta64[us]")
    shipped = ts + rng.integers(3_600, 10 * 86_400, n).astype("timedelta64[s]").astype("timedelta64[us]")
    notes = [f"note {i % 9973} {'x' * int(i % 7)}" for i in range(n)]
    return pa.table(
        {
            "order_id": pa.array(np.arange(1, n + 1), pa.int64()),
            "customer_id": pa.array(rng.integers(1, 5001, n), pa.int32()),
            "store_id": pa.array(rng.integers(1, 61, n), pa.int32()),
            "product": pa.array([PRODUCTS[i] for i in rng.integers(0, len(PRODUCTS), n)], pa.string()),
            "category": _masked(
                [CATEGORIES[i] for i in rng.integers(0, len(CATEGORIES), n)], rng.random(n) < 0.05, pa.string()
            ),
            "quantity": _masked(rng.integers(1, 21, n), rng.random(n) < 0.03, pa.int32()),
            "unit_price": pa.array(np.round(rng.uniform(0.5, 500.0, n), 2), pa.float64()),
            "discount": _masked(np.round(rng.uniform(0.0, 0.5, n), 3), rng.random(n) < 0.3, pa.float64()),
            "order_date": pa.array(dates, pa.date32()),
            "order_ts": pa.array(ts, pa.timestamp("us")),
            "shipped_at": _masked(shipped.astype("datetime64[ms]"), rng.random(n) < 0.1, pa.timestamp("ms", tz="UTC")),
            "is_returned": _masked(rng.random(n) < 0.08, rng.random(n) < 0.02, pa.bool_()),
            "note": _masked(notes, rng.random(n) < 0.7, pa.string()),
        }
    )


def items_tables(seed: int = 17) -> dict[str, pa.Table]:
    """The parts of the folder table `tables/items/`: line items of orders (some order ids exist in no order)."""
    rng = np.random.default_rng(seed)
    out, start = {}, 1
    for name, rows in ITEMS_PARTS:
        out[name] = pa.table(
            {
                "item_id": pa.array(np.arange(start, start + rows), pa.int64()),
                "order_id": pa.array(rng.integers(1, ORDERS_ROWS + 2_001, rows), pa.int64()),
                "sku": pa.array([f"SKU-{i:04d}" for i in rng.integers(0, 800, rows)], pa.string()),
                "qty": pa.array(rng.integers(1, 6, rows), pa.int16()),
                "weight_kg": _masked(np.round(rng.uniform(0.01, 30.0, rows), 3), rng.random(rows) < 0.1, pa.float64()),
                "fragile": pa.array(rng.random(rows) < 0.2, pa.bool_()),
            }
        )
        start += rows
    return out


def stores_v1(seed: int = 18) -> pa.Table:
    """Stores 1..50 (the first revision of the dimension table)."""
    rng = np.random.default_rng(seed)
    n = 50
    return pa.table(
        {
            "store_id": pa.array(np.arange(1, n + 1), pa.int32()),
            "name": pa.array([f"Store {i:02d}" for i in range(1, n + 1)], pa.string()),
            "city": pa.array([CITIES[i] for i in rng.integers(0, len(CITIES), n)], pa.string()),
            "region": _masked([REGIONS[i] for i in rng.integers(0, 4, n)], rng.random(n) < 0.1, pa.string()),
            "opened": pa.array(np.datetime64("2010-01-01", "D") + rng.integers(0, 4000, n), pa.date32()),
            "sq_m": _masked(np.round(rng.uniform(80, 2000, n), 1), rng.random(n) < 0.1, pa.float64()),
            "active": pa.array(rng.random(n) < 0.9, pa.bool_()),
        }
    )


STORES_REMOVED = (3, 17, 42)
STORES_CHANGED = (5, 8, 21, 33)
STORES_ADDED = tuple(range(51, 56))


def stores_v2(v1: pa.Table) -> pa.Table:
    """The second revision: some stores removed, some changed (name, city, size), some added."""
    rows = [r for r in v1.to_pylist() if r["store_id"] not in STORES_REMOVED]
    for r in rows:
        if r["store_id"] in STORES_CHANGED:
            r["name"] = r["name"] + " (renamed)"
            r["city"] = "Lyon" if r["city"] != "Lyon" else "Oslo"
            r["sq_m"] = None if r["sq_m"] is None else r["sq_m"] + 100.0
    for i in STORES_ADDED:
        rows.append(
            {
                "store_id": i,
                "name": f"Store {i:02d}",
                "city": CITIES[i % len(CITIES)],
                "region": REGIONS[i % 4],
                "opened": dt.date(2025, 1, i - 50),
                "sq_m": 150.0 + i,
                "active": True,
            }
        )
    return pa.Table.from_pylist(rows, schema=v1.schema)


def write_parquet(path: Path, table: pa.Table, row_group_size: int | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path), row_group_size=row_group_size)


# --------------------------------------------------------------------------
# The registry, built once per session
# --------------------------------------------------------------------------


@dataclass
class SqlData:
    """The pushed packages: local folders (what DuckDB reads), top hashes and tags."""

    root: Path
    registry: Path
    sales: Path  # pushed as sql/sales
    stores1: Path  # pushed as sql/stores (first revision)
    stores2: Path  # pushed as sql/stores (second revision, latest)
    tops: dict[str, str] = field(default_factory=dict)  # "sql/sales", "sql/stores@v1", "sql/stores@v2" -> top hash

    @property
    def orders_path(self) -> Path:
        return self.sales / "tables" / "orders.parquet"

    @property
    def items_glob(self) -> str:
        return str(self.sales / "tables" / "items" / "*.parquet")

    def placeholders(self) -> dict[str, str]:
        """What `{v1}`, `{v2}` (12-character top-hash prefixes of sql/stores), `{v1full}`, `{v2full}` and
        `{sales}` (sql/sales's top hash prefix) stand for in query templates."""
        return {
            "v1": self.tops["sql/stores@v1"][:12],
            "v2": self.tops["sql/stores@v2"][:12],
            "v1full": self.tops["sql/stores@v1"],
            "v2full": self.tops["sql/stores@v2"],
            "sales": self.tops[SALES][:12],
        }


_DATA: SqlData | None = None


def sql_data(tmp_path_factory) -> SqlData:
    """The test registry, built the first time a module asks (then shared by every module of the session)."""
    global _DATA
    if _DATA is None:
        _DATA = build_data(tmp_path_factory.mktemp("sql"))
    return _DATA


def build_data(root: Path) -> SqlData:
    """Writes the Parquet files, pushes the packages, tags revisions. Returns where everything is."""
    registry = root / "registry"
    registry.mkdir()
    sheaf = Sheaf(str(registry))
    sales = root / "sales"
    write_parquet(sales / "tables" / "orders.parquet", orders_table(), row_group_size=ORDERS_ROW_GROUP)
    for name, table in items_tables().items():
        write_parquet(sales / "tables" / "items" / name, table, row_group_size=10_000)
    (sales / "README.md").write_text("# sql/sales\nOrders and their items.\n")
    (sales / "docs").mkdir()
    (sales / "docs" / "notes.txt").write_text("not a table\n")

    s1, s2 = root / "stores-v1", root / "stores-v2"
    v1 = stores_v1()
    write_parquet(s1 / "tables" / "stores.parquet", v1)
    write_parquet(s2 / "tables" / "stores.parquet", stores_v2(v1))
    for d in (s1, s2):
        (d / "README.md").write_text("# sql/stores\n")

    data = SqlData(root=root, registry=registry, sales=sales, stores1=s1, stores2=s2)
    data.tops[SALES] = sheaf.push(SALES, sales, "-m", "sales")["top_hash"]
    data.tops["sql/stores@v1"] = sheaf.push(STORES, s1, "-m", "stores v1")["top_hash"]
    data.tops["sql/stores@v2"] = sheaf.push(STORES, s2, "-m", "stores v2")["top_hash"]
    sheaf.ok("tag", f"{STORES}@{data.tops['sql/stores@v1'][:12]}", "v1")
    sheaf.ok("tag", f"{STORES}@{data.tops['sql/stores@v2'][:12]}", "v2")
    sheaf.ok("tag", f"{SALES}@{data.tops[SALES][:12]}", "release")
    return data


def serve(data: SqlData, *args, log_dir: Path | None = None):
    """`sheaf serve` over the test registry (extra ARGS such as --auth); stop it with .stop()."""
    return start_server(data.registry, *args, log_dir=log_dir or data.root / "serve-logs")


# Users of the --auth server: alice and carol (group analysts) read sql/*, bob reads sql/sales only. The lengths of
# "user:password" are 25, 21 and 17 bytes: all three remainders mod 3, so each base64 padding case of the Basic
# header is exercised (the Go driver sends it without padding).
ALICE = ("alice", "alice-sql-pass-7Hq2")
BOB = ("bob", "bob-sql-pass-9Zk4")
CAROL = ("carol", "carol-pw-xy")


def serve_with_auth(data: SqlData, folder: Path, *args):
    """`sheaf serve --auth` over the test registry with users alice and bob (see ALICE, BOB)."""
    import auth_lib as al

    config = al.Config(
        key="sql-test-key-" + "k" * 40,
        users=[
            al.User(ALICE[0], ALICE[1], ["analysts"]),
            al.User(BOB[0], BOB[1], []),
            al.User(CAROL[0], CAROL[1], ["analysts"]),
        ],
        grants=[al.grant("group:analysts", "sql/*", "read"), al.grant("user:bob", SALES, "read")],
    )
    path = config.write(folder / "auth.toml")
    return start_server(data.registry, "--auth", path, *args, log_dir=folder / "serve-logs")


class Connections:
    """Opens ADBC DBAPI connections to one server and closes them all at the end."""

    def __init__(self, url: str):
        self.url = url
        self.opened = []

    def __call__(self, username: str | None = None, password: str | None = None, **db_kwargs):
        """A new `adbc_driver_flightsql.dbapi` connection (autocommit: Sheaf has no transactions)."""
        import adbc_driver_flightsql.dbapi as fsql

        kw = {k: str(v) for k, v in db_kwargs.items()}
        if username is not None:
            kw["username"] = username
            kw["password"] = password or ""
        conn = fsql.connect(self.url, db_kwargs=kw, autocommit=True)
        self.opened.append(conn)
        return conn

    def close(self):
        for c in self.opened:
            try:
                c.close()
            except Exception:
                pass
        self.opened.clear()


def query(connect, sql: str, parameters=None) -> pa.Table:
    """Runs one statement with a fresh cursor and returns the whole result as an Arrow table."""
    conn = connect() if callable(connect) else connect
    with conn.cursor() as cur:
        cur.execute(sql, parameters=parameters)
        return cur.fetch_arrow_table()


# --------------------------------------------------------------------------
# DuckDB over the same files
# --------------------------------------------------------------------------


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def duck_connection(data: SqlData):
    """An in-memory DuckDB whose catalog mirrors Sheaf's names over the very same local files, so most
    statements run unchanged on both engines: database `sheaf`, schemas `"sql/sales"`, `"sql/stores"`,
    `"sql/stores@<v1 prefix>"`, `"sql/stores:v1"`, ..., views `"tables/orders.parquet"` (read_parquet of the
    file), `"tables/items"` (read_parquet of the parts), `"_manifest"` (logical_key and size of every file of the
    pushed folder, from read_blob). Session time zone UTC."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute("ATTACH ':memory:' AS sheaf")
    con.execute("USE sheaf")
    p = data.placeholders()
    stores_revs = {
        data.stores1: ["sql/stores@" + p["v1"], "sql/stores@" + p["v1full"], "sql/stores:v1"],
        data.stores2: ["sql/stores", "sql/stores@" + p["v2"], "sql/stores@" + p["v2full"], "sql/stores:v2"],
    }
    schemas = {data.sales: ["sql/sales", "sql/sales@" + p["sales"], "sql/sales:release"], **stores_revs}
    for folder, names in schemas.items():
        for name in names:
            con.execute(f'CREATE SCHEMA "{name}"')
            for pq_file in sorted(folder.rglob("*.parquet")):
                rel = pq_file.relative_to(folder).as_posix()
                if rel.startswith("tables/items/"):
                    continue
                con.execute(f'CREATE VIEW "{name}"."{rel}" AS SELECT * FROM read_parquet({_q(str(pq_file))})')
            if folder == data.sales:
                con.execute(f'CREATE VIEW "{name}"."{ITEMS}" AS SELECT * FROM read_parquet({_q(data.items_glob)})')
            prefix = str(folder) + "/"
            con.execute(
                f'CREATE VIEW "{name}"."_manifest" AS SELECT replace(filename, {_q(prefix)}, \'\') AS logical_key, '
                f"size FROM read_blob({_q(str(folder) + '/**')})"
            )
    return con


def duck(con, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


# --------------------------------------------------------------------------
# Comparing results of two engines
# --------------------------------------------------------------------------

REL_TOL = 1e-9


def normalize_value(v):
    """The one normalization of the suites, so that equal answers of DataFusion (via Flight SQL) and DuckDB compare
    equal whatever Arrow types each engine picked:

    - every integer width (and a decimal with no fraction, DuckDB's HUGEINT sums) -> Python int;
    - other decimals -> float; floats stay floats and compare to numbers with relative tolerance 1e-9 (`same_value`);
      NaN equals NaN;
    - a date -> the datetime at its midnight (DuckDB's date + interval or date_trunc of a date is a timestamp);
    - a timestamp with a time zone -> the naive UTC datetime; timestamps of any unit -> datetime (microseconds);
    - strings of any Arrow string type (utf8, large, view) -> str; booleans stay bool (never equal to 1/0);
    - lists and structs element-wise; NULL stays None."""
    if v is None or isinstance(v, (bool, str, bytes)):
        return v
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return v
    if hasattr(v, "to_pydatetime"):  # pandas Timestamp (nanosecond timestamps)
        return normalize_value(v.to_pydatetime())
    if isinstance(v, dt.date):
        return dt.datetime(v.year, v.month, v.day)
    if isinstance(v, dict):
        return {k: normalize_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [normalize_value(x) for x in v]
    return v


def same_value(a, b) -> bool:
    """Equality after `normalize_value`: numbers (not booleans) within relative tolerance 1e-9."""
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def _sort_key(row):
    def k(v):
        if v is None:
            return (0, "")
        if isinstance(v, bool):
            return (1, int(v))
        if isinstance(v, (int, float)):
            return (2, 0.0 if math.isnan(v) else float(f"{v:.8g}"))  # rounded: tolerance-equal values sort together
        return (3, repr(v))

    return tuple(k(v) for v in row)


def rows_of(table: pa.Table) -> list[tuple]:
    """The table's rows as tuples of normalized values."""
    cols = [[normalize_value(v) for v in c.to_pylist()] for c in table.columns]
    return list(zip(*cols, strict=True)) if cols else []


def assert_same_result(got: pa.Table, expected: pa.Table, *, ordered: bool = False, what: str = ""):
    """Asserts two results hold the same rows (as multisets, or in order with `ordered`), same column names
    (case-insensitive: DuckDB keeps the case of an unquoted alias, DataFusion lower-cases it), values compared
    with `same_value`."""
    prefix = f"{what}: " if what else ""
    gn = [n.lower() for n in got.column_names]
    en = [n.lower() for n in expected.column_names]
    assert gn == en, f"{prefix}columns {got.column_names} != {expected.column_names}"
    assert got.num_rows == expected.num_rows, f"{prefix}{got.num_rows} rows, expected {expected.num_rows}"
    g, e = rows_of(got), rows_of(expected)
    if not ordered:
        g, e = sorted(g, key=_sort_key), sorted(e, key=_sort_key)
    for i, (a, b) in enumerate(zip(g, e, strict=True)):
        if not (len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))):
            raise AssertionError(
                f"{prefix}row {i} differs{' (sorted)' if not ordered else ''}:\n got {a!r}\n want {b!r}"
            )


# --------------------------------------------------------------------------
# Raw Flight SQL with pyarrow.flight
# --------------------------------------------------------------------------

SQL_TYPE_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def pack_any(message: str, value: bytes) -> bytes:
    """google.protobuf.Any{type_url = type.googleapis.com/arrow.flight.protocol.sql.MESSAGE, value}."""
    return _field(1, (SQL_TYPE_PREFIX + message).encode()) + _field(2, value)


def parse_fields(buf: bytes) -> dict[int, list]:
    """A protobuf message's fields: number -> values (ints for varints, bytes for length-delimited)."""
    out: dict[int, list] = {}
    i = 0

    def varint():
        nonlocal i
        shift = n = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            value, i = buf[i : i + size], i + size
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def create_prepared_statement(client, sql: str, options=OPTIONS) -> bytes:
    """ActionCreatePreparedStatement (hand-encoded); returns the prepared statement handle."""
    body = pack_any("ActionCreatePreparedStatementRequest", _field(1, sql.encode()))
    results = list(client.do_action(flight.Action("CreatePreparedStatement", body), options))
    assert len(results) == 1, f"CreatePreparedStatement: {len(results)} results"
    anyf = parse_fields(results[0].body.to_pybytes())
    assert anyf[1][0].decode().endswith("ActionCreatePreparedStatementResult"), anyf[1]
    return parse_fields(anyf[2][0])[1][0]


def prepared_descriptor(handle: bytes) -> flight.FlightDescriptor:
    """A CMD descriptor packing CommandPreparedStatementQuery{prepared_statement_handle = 1}."""
    return flight.FlightDescriptor.for_command(pack_any("CommandPreparedStatementQuery", _field(1, handle)))


def statement_descriptor(sql: str) -> flight.FlightDescriptor:
    """A CMD descriptor packing CommandStatementQuery{query = 1}."""
    return flight.FlightDescriptor.for_command(pack_any("CommandStatementQuery", _field(1, sql.encode())))


def statement_info(client, sql: str, options=OPTIONS) -> flight.FlightInfo:
    return client.get_flight_info(statement_descriptor(sql), options)


def sql_app_metadata(fi: flight.FlightInfo) -> dict:
    """FlightInfo.app_metadata of a SQL statement: {"revisions": [...], "sql": ...}."""
    raw = bytes(fi.app_metadata)
    assert raw, "FlightInfo of a SQL statement has no app_metadata"
    return json.loads(raw.decode("utf-8"))


def read_endpoints(client, fi: flight.FlightInfo, options=OPTIONS) -> list[pa.Table]:
    """Each endpoint redeemed with DoGet (on this server: Sheaf's SQL endpoints name no location)."""
    out = []
    for ep in fi.endpoints:
        assert not ep.locations, f"SQL endpoint names locations {ep.locations}"
        out.append(client.do_get(ep.ticket, options).read_all())
    return out


def flight_sql(client, sql: str, options=OPTIONS) -> pa.Table:
    """The whole result of a statement read with pyarrow.flight."""
    fi = statement_info(client, sql, options)
    parts = read_endpoints(client, fi, options)
    return pa.concat_tables(parts) if parts else fi.schema.empty_table()


def flight_uri(client, uri: str, options=OPTIONS) -> pa.Table:
    """A plain (non-SQL) Sheaf read of a dataset URI: GetFlightInfo then DoGet of every endpoint."""
    fi = client.get_flight_info(flight.FlightDescriptor.for_command(uri), options)
    parts = [client.do_get(ep.ticket, options).read_all() for ep in fi.endpoints]
    return pa.concat_tables(parts) if parts else fi.schema.empty_table()


# --------------------------------------------------------------------------
# Errors as ADBC reports them
# --------------------------------------------------------------------------

# adbc_driver_flightsql maps gRPC codes to ADBC status codes (checked against a pyarrow server raising each code):
# NOT_FOUND -> ProgrammingError/NOT_FOUND, INVALID_ARGUMENT -> ProgrammingError/INVALID_ARGUMENT,
# UNIMPLEMENTED -> NotSupportedError/NOT_IMPLEMENTED, DEADLINE_EXCEEDED -> OperationalError/TIMEOUT,
# PERMISSION_DENIED -> ProgrammingError/UNAUTHORIZED, RESOURCE_EXHAUSTED -> InternalError/INTERNAL. Its text is
# "STATUS: [FlightSQL] <server message> (<GrpcCode>; <Method...>)" (or "... <message>. Detail: <Kind> (<GrpcCode>;
# <Method>)"), so the gRPC code is read from there first.
_ADBC_TO_GRPC = {
    "NOT_FOUND": "NOT_FOUND",
    "INVALID_ARGUMENT": "INVALID_ARGUMENT",
    "NOT_IMPLEMENTED": "UNIMPLEMENTED",
    "TIMEOUT": "DEADLINE_EXCEEDED",
    "UNAUTHORIZED": "PERMISSION_DENIED",
    "UNAUTHENTICATED": "UNAUTHENTICATED",
    "CANCELLED": "CANCELLED",
    "INTERNAL": "INTERNAL",
}
_GO_CODES = {
    "NotFound": "NOT_FOUND",
    "InvalidArgument": "INVALID_ARGUMENT",
    "Unimplemented": "UNIMPLEMENTED",
    "DeadlineExceeded": "DEADLINE_EXCEEDED",
    "ResourceExhausted": "RESOURCE_EXHAUSTED",
    "PermissionDenied": "PERMISSION_DENIED",
    "Unauthenticated": "UNAUTHENTICATED",
    "Internal": "INTERNAL",
    "Unavailable": "UNAVAILABLE",
    "Canceled": "CANCELLED",
    "Unknown": "UNKNOWN",
    "FailedPrecondition": "FAILED_PRECONDITION",
}


@dataclass
class SqlError:
    """A refused statement: the gRPC code, the server's message, the exception."""

    code: str
    message: str
    error: BaseException

    def __str__(self):
        return f"{self.code}: {self.message!r} ({type(self.error).__name__})"


def grpc_code(e: BaseException) -> str:
    """The gRPC code behind an ADBC exception: the "(GrpcCode; Method)" of the driver's detail when present,
    else the ADBC status code mapped back; pyarrow.flight errors via auth_lib.code_of."""
    found = [c for c in re.findall(r"\((\w+); ", str(e)) if c in _GO_CODES]
    if found:
        return _GO_CODES[found[-1]]
    status = getattr(e, "status_code", None)
    if status is not None:
        return _ADBC_TO_GRPC.get(status.name, f"ADBC_{status.name}")
    import auth_lib

    return auth_lib.code_of(e)


def server_text(e: BaseException) -> str:
    """The server's message without the driver's decoration."""
    text = str(e)
    m = re.match(r"^[A-Z_]+: \[FlightSQL\] (.*)$", text, re.S)
    if m:
        body = re.sub(r"\. Detail: .*$", "", m.group(1), flags=re.S)
        body = re.sub(r" \(\w+; [^\n]*\)$", "", body)  # the driver's "(GrpcCode; Method...)"
        return body.strip()
    import hostile_lib

    return hostile_lib.server_message(e)


def sql_error(fn) -> SqlError:
    """Calls fn(), which must fail; returns how."""
    import adbc_driver_manager

    try:
        value = fn()
    except (adbc_driver_manager.Error, pa.ArrowException, flight.FlightError) as e:
        return SqlError(grpc_code(e), server_text(e), e)
    pytest.fail(f"expected an error, got {value!r:.500}")


def failing_query(connect, sql: str, parameters=None) -> SqlError:
    """Runs a statement that must fail (planning or reading) and returns how it failed."""
    return sql_error(lambda: query(connect, sql, parameters))


def assert_refused(err: SqlError, code: str | tuple[str, ...], *names: str):
    """The error has the gRPC code (one of) and its message names every string of `names`."""
    codes = (code,) if isinstance(code, str) else code
    assert err.code in codes, f"expected {' or '.join(codes)}, got {err}"
    for n in names:
        assert n in err.message, f"the message should name {n!r}: {err}"


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
