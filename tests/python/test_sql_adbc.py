"""Flight SQL through the real ADBC driver (adbc_driver_flightsql's DBAPI): statements, Arrow results, bound
parameters, the catalog (get_objects, get_table_schema, get_info, table types), password login and grants over an
`--auth` server, refused writes, and, with pyarrow.flight and a hand-encoded CommandStatementQuery, what the spec
says about FlightInfo: app_metadata naming every revision read, several endpoints for large scans, tickets pinned
to the revision they were planned on.

Run from the repository root:

    SHEAF_BIN=/path/to/sheaf python -m pytest -q tests/python/test_sql_adbc.py
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
import sql_lib as sl
from sheaf_testlib import HEX64, Sheaf, start_server

ORD = '"sql/sales"."tables/orders.parquet"'
STO = '"sql/stores"."tables/stores.parquet"'


@pytest.fixture(scope="module")
def auth_server(data, tmp_path_factory):
    s = sl.serve_with_auth(data, tmp_path_factory.mktemp("sql-auth"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def auth_connect(auth_server):
    connections = sl.Connections(auth_server.url)
    yield connections
    connections.close()


# --------------------------------------------------------------------------
# Statements and results
# --------------------------------------------------------------------------


def test_execute_fetchall(conn, data):
    with conn.cursor() as cur:
        cur.execute(f"SELECT order_id, product, quantity FROM {ORD} WHERE order_id <= 5 ORDER BY order_id")
        assert [d[0] for d in cur.description] == ["order_id", "product", "quantity"]
        rows = cur.fetchall()
    local = pq.read_table(data.orders_path, columns=["order_id", "product", "quantity"]).slice(0, 5)
    assert rows == [tuple(r.values()) for r in local.to_pylist()]


def test_fetchone_and_fetchmany(conn):
    with conn.cursor() as cur:
        cur.execute(f"SELECT order_id FROM {ORD} WHERE order_id BETWEEN 10 AND 19 ORDER BY order_id")
        assert cur.fetchone() == (10,)
        assert cur.fetchmany(3) == [(11,), (12,), (13,)]
        assert [r[0] for r in cur.fetchall()] == list(range(14, 20))


def test_fetch_arrow_table_keeps_the_file_types(conn, data):
    """Every column arrives with the type of the Parquet file (ints keep their width, dates, naive and UTC
    timestamps, booleans), values equal to the file's."""
    got = sl.query(conn, f"SELECT * FROM {ORD} WHERE order_id % 1000 = 1 ORDER BY order_id")
    local = pq.read_table(data.orders_path)
    expected = pa.Table.from_pylist([r for r in local.to_pylist() if r["order_id"] % 1000 == 1], schema=local.schema)
    assert got.num_rows == 120
    for f in local.schema:
        assert got.schema.field(f.name).type == f.type, f"{f.name}: {got.schema.field(f.name).type} != {f.type}"
    assert got.to_pylist() == expected.to_pylist()


def test_strings_are_not_view_types(conn):
    """Strings travel as Utf8 (never Utf8View), as every other Sheaf read, so every client decodes them."""
    got = sl.query(conn, f"SELECT product, upper(product) AS up, category FROM {ORD} LIMIT 3")
    for f in got.schema:
        assert f.type in (pa.string(), pa.large_string()), f"{f.name} arrived as {f.type}"


def test_parameters_question_mark(conn, duck):
    sql = f"SELECT count(*) AS n, sum(quantity) AS q FROM {ORD} WHERE store_id = ? AND quantity > ? AND category = ?"
    got = sl.query(conn, sql, parameters=(7, 10, "toys"))
    expected = sl.duck(
        duck, sql.replace("= ? AND quantity > ? AND category = ?", "= 7 AND quantity > 10 AND category = 'toys'")
    )
    sl.assert_same_result(got, expected, what=sql)
    assert got.column("n")[0].as_py() > 0


def test_parameters_dollar_and_reuse(conn, duck):
    """$1-style parameters; the same cursor executes the same statement again with other values (the driver keeps
    the prepared statement and binds anew)."""
    sql = f"SELECT order_id, unit_price FROM {ORD} WHERE order_date = $1 AND unit_price > $2"
    with conn.cursor() as cur:
        for day, price in ((dt.date(2024, 2, 29), 400.0), (dt.date(2023, 7, 1), 250.5)):
            cur.execute(sql, parameters=(day, price))
            got = cur.fetch_arrow_table()
            expected = sl.duck(duck, sql.replace("$1", f"DATE '{day.isoformat()}'").replace("$2", repr(price)))
            assert expected.num_rows > 0
            sl.assert_same_result(got, expected, what=f"{sql} with {day}, {price}")


def test_prepare_reports_parameter_schema(conn):
    with conn.cursor() as cur:
        schema = cur.adbc_prepare(f"SELECT order_id FROM {ORD} WHERE store_id = $1 AND product = $2")
        assert schema is not None and len(schema) == 2, f"parameter schema {schema}"
        cur.execute(f"SELECT order_id FROM {ORD} WHERE store_id = $1 AND product = $2", parameters=(9, "prod-12"))
        ids = [r[0] for r in cur.fetchall()]
    assert 1 in ids  # order 1: store 9, prod-12


def test_placeholders_with_a_gap_are_refused(conn):
    """Parameters bind by position: a statement using $2 without $1 would bind its first value to $2; refused,
    naming the missing placeholder."""
    err = sl.failing_query(conn, f"SELECT order_id FROM {ORD} WHERE store_id = $2", parameters=(9,))
    sl.assert_refused(err, "INVALID_ARGUMENT", "$1")


# --------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------


def _objects(conn, **kw) -> list[dict]:
    return conn.adbc_get_objects(**kw).read_all().to_pylist()


def _tables(objects: list[dict]) -> dict[tuple[str, str], dict]:
    out = {}
    for cat in objects:
        for sch in cat["catalog_db_schemas"] or []:
            for t in sch["db_schema_tables"] or []:
                out[(sch["db_schema_name"], t["table_name"])] = t
    return out


def test_get_objects_lists_catalog_schemas_tables_columns(conn, data):
    objects = _objects(conn, depth="all")
    assert [c["catalog_name"] for c in objects] == ["sheaf"]
    schemas = {s["db_schema_name"] for s in objects[0]["catalog_db_schemas"]}
    assert schemas == {"sql/sales", "sql/stores"}
    tables = _tables(objects)
    for key in (
        ("sql/sales", "tables/orders.parquet"),
        ("sql/sales", "tables/items"),
        ("sql/stores", "tables/stores.parquet"),
    ):
        assert key in tables, f"{key} not in {sorted(tables)}"
        assert tables[key]["table_type"] == "TABLE"
    assert ("sql/sales", "README.md") not in tables and ("sql/sales", "docs/notes.txt") not in tables
    cols = tables[("sql/sales", "tables/orders.parquet")]["table_columns"]
    assert [c["column_name"] for c in cols] == pq.read_schema(data.orders_path).names
    assert [c["ordinal_position"] for c in cols] == list(range(1, len(cols) + 1))
    item_cols = [c["column_name"] for c in tables[("sql/sales", "tables/items")]["table_columns"]]
    assert item_cols == ["item_id", "order_id", "sku", "qty", "weight_kg", "fragile"]


def test_get_objects_filters(conn):
    objects = _objects(conn, depth="tables", db_schema_filter="sql/st%")
    assert {s["db_schema_name"] for s in objects[0]["catalog_db_schemas"]} == {"sql/stores"}
    objects = _objects(conn, depth="tables", table_name_filter="tables/orders%")
    assert set(_tables(objects)) == {("sql/sales", "tables/orders.parquet")}
    assert _objects(conn, depth="catalogs", catalog_filter="nope") == []


def test_get_table_schema(conn, data):
    schema = conn.adbc_get_table_schema("tables/orders.parquet", catalog_filter="sheaf", db_schema_filter="sql/sales")
    local = pq.read_schema(data.orders_path)
    assert schema.names == local.names
    assert schema.types == local.types
    stores = conn.adbc_get_table_schema("tables/stores.parquet", db_schema_filter="sql/stores")
    assert stores.names == ["store_id", "name", "city", "region", "opened", "sq_m", "active"]


def test_get_info_and_table_types(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "Sheaf", info
    assert info.get("vendor_version"), info
    assert conn.adbc_get_table_types() == ["TABLE"]


def test_sql_info_read_only_and_quote(server):
    """GetSqlInfo (hand-encoded CommandGetSqlInfo): server name, read-only true, identifier quote `"`."""
    ids = [0, 1, 3, 504]  # FLIGHT_SQL_SERVER_NAME, _VERSION, _READ_ONLY, SQL_IDENTIFIER_QUOTE_CHAR
    packed = b"".join(sl._varint(i) for i in ids)
    desc = flight.FlightDescriptor.for_command(sl.pack_any("CommandGetSqlInfo", sl._field(1, packed)))
    fi = server.client.get_flight_info(desc, sl.OPTIONS)
    table = pa.concat_tables(sl.read_endpoints(server.client, fi))
    values = {r["info_name"]: r["value"] for r in table.to_pylist()}
    assert values.get(0) == "Sheaf", values
    assert values.get(1), values
    assert values.get(3) is True, values
    assert values.get(504) == '"', values


# --------------------------------------------------------------------------
# Authentication and grants
# --------------------------------------------------------------------------


def test_password_login(auth_connect, data):
    conn = auth_connect(*sl.ALICE)
    got = sl.query(conn, f"SELECT count(*) AS n FROM {ORD} o JOIN {STO} s USING (store_id)")
    assert got.column("n")[0].as_py() > 0
    objects = _objects(conn, depth="db_schemas")
    assert {s["db_schema_name"] for s in objects[0]["catalog_db_schemas"]} == {"sql/sales", "sql/stores"}


@pytest.mark.parametrize("user", [sl.ALICE, sl.BOB, sl.CAROL], ids=lambda u: u[0])
def test_password_login_any_length(auth_connect, user):
    """The driver sends Basic credentials as unpadded base64: every length of "user:password" logs in."""
    got = sl.query(auth_connect(*user), f"SELECT count(*) AS n FROM {ORD}")
    assert got.column("n")[0].as_py() == sl.ORDERS_ROWS


def test_wrong_password_and_no_credentials_refused(auth_connect):
    def run(*creds):
        return sl.query(auth_connect(*creds), f"SELECT count(*) AS n FROM {ORD}")

    err = sl.sql_error(lambda: run(sl.ALICE[0], "not-the-password"))
    assert err.code == "UNAUTHENTICATED", err
    err = sl.sql_error(lambda: run())
    assert err.code == "UNAUTHENTICATED", err


def test_ungranted_package_invisible(auth_connect):
    """bob may read sql/sales only: sql/stores is in neither get_objects nor SQL, and its error is the one a
    missing package gets."""
    bob = auth_connect(*sl.BOB)
    objects = _objects(bob, depth="tables")
    assert {s["db_schema_name"] for s in objects[0]["catalog_db_schemas"]} == {"sql/sales"}
    assert all(s != "sql/stores" for s, _ in _tables(objects))
    assert sl.query(bob, f"SELECT count(*) AS n FROM {ORD}").column("n")[0].as_py() == sl.ORDERS_ROWS

    hidden = sl.failing_query(bob, f"SELECT * FROM {STO}")
    missing = sl.failing_query(bob, 'SELECT * FROM "sql/nostore"."tables/stores.parquet"')
    sl.assert_refused(hidden, "NOT_FOUND", "sql/stores")
    sl.assert_refused(missing, "NOT_FOUND", "sql/nostore")
    assert hidden.message.replace("sql/stores", "X") == missing.message.replace("sql/nostore", "X")
    joined = sl.failing_query(bob, f"SELECT count(*) FROM {ORD} o JOIN {STO} s USING (store_id)")
    sl.assert_refused(joined, "NOT_FOUND", "sql/stores")
    via_function = sl.failing_query(bob, "SELECT * FROM sheaf('sheaf://sql/stores/tables/stores.parquet')")
    sl.assert_refused(via_function, "NOT_FOUND", "sql/stores")
    schema = sl.sql_error(lambda: bob.adbc_get_table_schema("tables/stores.parquet", db_schema_filter="sql/stores"))
    assert schema.code == "NOT_FOUND", schema


# --------------------------------------------------------------------------
# Read-only
# --------------------------------------------------------------------------

WRITES = [
    f"INSERT INTO {STO} VALUES (99, 'x', 'y', 'z', DATE '2024-01-01', 1.0, true)",
    'CREATE TABLE "sql/sales"."tables/new.parquet" (x INT)',
    f"DELETE FROM {STO} WHERE store_id = 1",
    f"UPDATE {STO} SET name = 'x' WHERE store_id = 1",
    f"DROP TABLE {STO}",
    # EXPLAIN ANALYZE runs what it explains: a COPY under it would write a file on the server.
    "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '/tmp/sheaf-sql-must-not-write.csv' STORED AS CSV",
]


@pytest.mark.parametrize("sql", WRITES, ids=["insert", "create", "delete", "update", "drop", "explain_analyze_copy"])
def test_writes_refused_as_read_only(conn, sql):
    for how, run in (
        ("execute", lambda: sl.query(conn, sql)),
        ("execute_update", lambda: _execute_update(conn, sql)),
    ):
        err = sl.sql_error(run)
        assert err.code in ("INVALID_ARGUMENT", "UNIMPLEMENTED"), f"{how}: {err}"
        assert "read-only" in err.message.lower() or "read only" in err.message.lower(), f"{how}: {err}"
    assert sl.query(conn, f"SELECT count(*) AS n FROM {STO}").column("n")[0].as_py() == 52
    assert not os.path.exists("/tmp/sheaf-sql-must-not-write.csv")


def _execute_update(conn, sql):
    """CommandStatementUpdate (what adbc_statement.execute_update sends)."""
    with conn.cursor() as cur:
        stmt = cur.adbc_statement
        stmt.set_sql_query(sql)
        return stmt.execute_update()


# --------------------------------------------------------------------------
# FlightInfo: revisions, endpoints, pinned tickets (pyarrow.flight, raw Flight SQL)
# --------------------------------------------------------------------------


def test_app_metadata_lists_every_revision(server, data):
    sql = (
        f'SELECT s.city, count(*) AS n FROM {ORD} o JOIN "sql/stores:v1"."tables/stores.parquet" s '
        "USING (store_id) GROUP BY s.city"
    )
    fi = sl.statement_info(server.client, sql)
    meta = sl.sql_app_metadata(fi)
    assert meta["sql"] == sql
    assert sorted(meta["revisions"]) == sorted(
        [f"sql/sales@{data.tops['sql/sales']}", f"sql/stores@{data.tops['sql/stores@v1']}"]
    )
    for r in meta["revisions"]:
        assert HEX64.match(r.split("@", 1)[1])


def test_audit_line_of_a_statement_names_its_revisions(server, data):
    sql = f'SELECT count(*) AS n FROM {ORD} o JOIN "sql/stores:v1"."tables/stores.parquet" s USING (store_id)'
    start = server.log_size()
    fi = sl.statement_info(server.client, sql)
    for endpoint in fi.endpoints:
        server.client.do_get(endpoint.ticket).read_all()
    deadline = time.monotonic() + 30
    while "rpc=DoGet" not in server.stderr(start):
        assert time.monotonic() < deadline, server.stderr(start)[-3000:]
        time.sleep(0.05)
    line = next(x for x in server.stderr(start).splitlines() if "rpc=DoGet" in x)
    for revision in (f"sql/sales@{data.tops['sql/sales']}", f"sql/stores@{data.tops['sql/stores@v1']}"):
        assert revision in line, line


def test_large_scan_has_several_endpoints(server, duck):
    """A filter over the 120,000-row table is planned as several independent partitions: several endpoints, each
    readable on its own, whose union is DuckDB's answer (and what ADBC returns)."""
    sql = f"SELECT order_id, store_id, unit_price, note FROM {ORD} WHERE quantity > 2"
    fi = sl.statement_info(server.client, sql)
    assert len(fi.endpoints) >= 2, f"{len(fi.endpoints)} endpoint(s)"
    parts = sl.read_endpoints(server.client, fi)
    for p in parts:
        assert p.schema.equals(fi.schema), f"endpoint schema {p.schema} != FlightInfo schema {fi.schema}"
    union = pa.concat_tables(parts)
    sl.assert_same_result(union, sl.duck(duck, sql), what=sql)
    # An endpoint's ticket is reusable: the same rows again.
    again = server.client.do_get(fi.endpoints[-1].ticket, sl.OPTIONS).read_all()
    assert again.equals(parts[-1])


def test_aggregate_and_sort_are_one_endpoint(server, duck):
    for sql, ordered in (
        (f"SELECT store_id, count(*) AS n FROM {ORD} GROUP BY store_id", False),
        (f"SELECT order_id, unit_price FROM {ORD} WHERE store_id = 4 ORDER BY unit_price, order_id", True),
    ):
        fi = sl.statement_info(server.client, sql)
        assert len(fi.endpoints) == 1, f"{sql}: {len(fi.endpoints)} endpoints"
        got = pa.concat_tables(sl.read_endpoints(server.client, fi))
        sl.assert_same_result(got, sl.duck(duck, sql), ordered=ordered, what=sql)


def _pinned_rows(version: int) -> pa.Table:
    n = 2_000 if version == 1 else 2_500
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "v": pa.array([f"v{version}-{i}" for i in range(n)], pa.string()),
        }
    )


def test_results_pinned_to_the_planned_revision(registry, tmp_path, flight_server):
    """A statement naming "p/q" (latest) is resolved once: after a new revision is pushed, the tickets already
    issued (raw DoGet, and ADBC partitions read with adbc_read_partition) still return the old rows, while a new
    statement reads the new revision. app_metadata names the revision each plan read."""
    sheaf = Sheaf(str(registry))
    folder = tmp_path / "pinned"
    sl.write_parquet(folder / "t.parquet", _pinned_rows(1))
    top1 = sheaf.push("sql/pinned", folder)["top_hash"]
    server = flight_server(registry)
    sql = 'SELECT id, v FROM "sql/pinned"."t.parquet"'
    fi = sl.statement_info(server.client, sql)
    assert sl.sql_app_metadata(fi)["revisions"] == [f"sql/pinned@{top1}"]
    connections = sl.Connections(server.url)
    try:
        conn = connections()
        with conn.cursor() as cur:
            partitions, _schema = cur.adbc_execute_partitions(sql)
        assert partitions

        sl.write_parquet(folder / "t.parquet", _pinned_rows(2))
        top2 = sheaf.push("sql/pinned", folder)["top_hash"]
        assert top2 != top1

        old = pa.concat_tables(sl.read_endpoints(server.client, fi)).sort_by("id")
        assert old.to_pylist() == _pinned_rows(1).to_pylist()
        read = []
        for part in partitions:
            with conn.cursor() as cur:
                cur.adbc_read_partition(part)
                read.append(cur.fetch_arrow_table())
        assert pa.concat_tables(read).sort_by("id").to_pylist() == _pinned_rows(1).to_pylist()

        fi2 = sl.statement_info(server.client, sql)
        assert sl.sql_app_metadata(fi2)["revisions"] == [f"sql/pinned@{top2}"]
        new = sl.query(conn, sql).sort_by("id")
        assert new.to_pylist() == _pinned_rows(2).to_pylist()
    finally:
        connections.close()


def test_tickets_and_prepared_handles_valid_on_another_server(data, tmp_path):
    """Tickets and prepared statement handles are self-contained: planned or prepared on one server, redeemed on
    another serving the same registry."""
    a = sl.start_server(data.registry, log_dir=tmp_path)
    b = sl.start_server(data.registry, log_dir=tmp_path)
    try:
        sql = f"SELECT order_id, unit_price FROM {ORD} WHERE store_id = 7 AND quantity > 15"
        expected = sl.flight_sql(a.client, sql)
        assert expected.num_rows > 0
        fi = sl.statement_info(a.client, sql)
        on_b = pa.concat_tables(sl.read_endpoints(b.client, fi))
        sl.assert_same_result(on_b, expected, what="a ticket of server A redeemed on B")

        handle = sl.create_prepared_statement(a.client, sql)
        fi = b.client.get_flight_info(sl.prepared_descriptor(handle), sl.OPTIONS)
        prepared = pa.concat_tables(sl.read_endpoints(b.client, fi))
        sl.assert_same_result(prepared, expected, what="a statement prepared on A executed on B")
    finally:
        a.stop()
        b.stop()


def test_full_table_roundtrip(conn, data):
    """SELECT * of the 120,000-row table returns exactly the file (types and values), whatever the endpoints."""
    got = sl.query(conn, f"SELECT * FROM {ORD}").sort_by("order_id")
    local = pq.read_table(data.orders_path)
    assert got.schema.equals(local.schema, check_metadata=False), f"{got.schema}\n!=\n{local.schema}"
    assert got.combine_chunks().equals(local.combine_chunks())


@contextlib.contextmanager
def _serving(tmp_path, package: str, root):
    """`root` pushed as `package` into a registry of its own and served: yields the server and an ADBC
    connection to it."""
    registry = tmp_path / "registry"
    Sheaf(str(registry)).push(package, root)
    server = start_server(registry, log_dir=tmp_path / "logs")
    connections = sl.Connections(server.url)
    try:
        yield server, connections()
    finally:
        connections.close()
        server.stop()


def test_dictionary_columns_travel_as_their_values(tmp_path):
    """A Parquet column stored as a dictionary (pyarrow's dictionary_encode, a pandas Categorical) is announced and
    sent as its value type, the same in FlightInfo, GetTables and the stream, so ADBC reads it (a schema that
    differed between them failed every query returning the column)."""
    import pandas as pd

    root = tmp_path / "pkg"
    (root / "t").mkdir(parents=True)
    pq.write_table(
        pa.table({"cat": pa.array(["a", "b", "a"]).dictionary_encode(), "n": [1, 2, 3]}), root / "t" / "enc.parquet"
    )
    pd.DataFrame({"c": pd.Categorical(["x", "y", "x"]), "v": [1, 2, 3]}).to_parquet(root / "t" / "pandas.parquet")
    with _serving(tmp_path, "dict/pkg", root) as (server, conn):
        got = sl.query(conn, 'SELECT * FROM "dict/pkg"."t/enc.parquet" ORDER BY n')
        assert got.column("cat").to_pylist() == ["a", "b", "a"]
        assert got.schema.field("cat").type == pa.string()
        assert sl.query(conn, 'SELECT n FROM "dict/pkg"."t/enc.parquet" WHERE cat = \'a\' ORDER BY n').column(
            "n"
        ).to_pylist() == [1, 3]
        cats = sl.query(conn, 'SELECT c, v FROM "dict/pkg"."t/pandas.parquet" ORDER BY v')
        assert cats.column("c").to_pylist() == ["x", "y", "x"]
        info = sl.statement_info(server.client, 'SELECT * FROM "dict/pkg"."t/enc.parquet"')
        assert info.schema.field("cat").type == pa.string()
        table_schema = conn.adbc_get_table_schema("t/enc.parquet", db_schema_filter="dict/pkg")
        assert table_schema.field("cat").type == pa.string()


def test_nan_rows_are_not_pruned_by_statistics(tmp_path):
    """Parquet writers leave NaN out of a float column's min and max, while SQL orders NaN above every number:
    `f > 10` keeps the NaN rows and `max(f)` is NaN whether or not the filter is pushed into the scan, in SQL and in
    a URI filter, as a full scan evaluates them (statistics would have pruned every row group)."""
    values = [float(i % 7) for i in range(1000)]
    for i in range(0, 1000, 50):
        values[i] = float("nan")
    root = tmp_path / "pkg"
    root.mkdir()
    pq.write_table(pa.table({"f": values, "i": list(range(1000))}), root / "n.parquet", row_group_size=100)
    with _serving(tmp_path, "nan/pkg", root) as (server, conn):
        t = '"nan/pkg"."n.parquet"'
        one = lambda sql: sl.query(conn, sql).column(0)[0].as_py()  # noqa: E731
        assert one(f"SELECT count(*) FROM {t} WHERE f > 10") == 20
        assert one(f"SELECT count(*) FILTER (WHERE f > 10) FROM {t}") == 20
        assert one(f"SELECT count(*) FROM {t} WHERE f = 'NaN'::double") == 20
        assert one(f"SELECT count(*) FROM {t} WHERE f < 3 AND i >= 500") == sum(
            1 for i, v in enumerate(values) if v < 3 and i >= 500
        )
        top = one(f"SELECT max(f) FROM {t}")
        assert top != top, f"max(f) is NaN, got {top}"
        got = sl.flight_uri(server.client, "sheaf://nan/pkg/n.parquet?filter=f%20%3E%2010")
        assert got.num_rows == 20
