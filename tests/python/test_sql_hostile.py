"""Flight SQL under hostile or unusual requests (findings of a hostile sweep), through pyarrow.flight with
hand-encoded Flight SQL messages (see sql_lib): each is answered with the right gRPC code and a message naming the
thing at fault, or served as the spec says.

- GetTables with a filter pattern too big to match: INVALID_ARGUMENT naming the pattern (table or schema);
- CancelFlightInfo under --auth cancels only for a caller who may read every package the statement reads; anyone
  else is answered as for a ticket that is not running;
- GetTables leaves out a package whose latest manifest is unparseable or missing, and lists the others;
- bulk ingest refuses the table name `_manifest` (SQL's name of a package's manifest table);
- GetSqlInfo FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT reports --sql-timeout (milliseconds, as the key defines it);
- GetSchema of GetPrimaryKeys, GetExportedKeys, GetImportedKeys and GetCrossReference answers their schemas;
- binding parameters refuses, at bind time, what no execution could use: more than one row, or values too big for
  the result tickets that carry them;
- GetSchema of a prepared statement plans it with its bound parameters.

Run from the repository root:

    SHEAF_BIN=/path/to/sheaf python -m pytest -q tests/python/test_sql_hostile.py
"""

from __future__ import annotations

import auth_lib as al
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import sql_lib as sl

ORD = f'"{sl.SALES}"."{sl.ORDERS}"'
STO = f'"{sl.STORES}"."{sl.STORES_T}"'

# CancelFlightInfoResult.status (arrow.flight.protocol.CancelStatus).
CANCELLED, CANCELLING, NOT_CANCELLABLE = 1, 2, 3
# GetSqlInfo's FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT.
STATEMENT_TIMEOUT = 100


def catalog_rows(client, message: str, body: bytes = b"", options=sl.OPTIONS) -> pa.Table:
    """A catalog command's answer: GetFlightInfo, then DoGet of its one endpoint."""
    fi = client.get_flight_info(flight.FlightDescriptor.for_command(sl.pack_any(message, body)), options)
    return pa.concat_tables([client.do_get(e.ticket, options).read_all() for e in fi.endpoints])


def cancel(client, fi: flight.FlightInfo, options) -> int:
    """CancelFlightInfo{info = fi}; the status answered."""
    action = flight.Action("CancelFlightInfo", sl._field(1, fi.serialize()))
    [result] = list(client.do_action(action, options))
    return sl.parse_fields(result.body.to_pybytes()).get(1, [0])[0]


# --------------------------------------------------------------------------
# GetTables filter patterns
# --------------------------------------------------------------------------


@pytest.mark.parametrize("field, what", [(3, "table"), (2, "schema")], ids=["table", "schema"])
def test_a_filter_pattern_too_big_to_match_is_invalid_argument(server, field, what):
    """200,000 `_` compile to a regex past its size limit: the client's pattern is at fault (INVALID_ARGUMENT naming
    which pattern, with an excerpt of it), not the server (INTERNAL)."""
    pattern = "_" * 200_000
    out = al.attempt(lambda: catalog_rows(server.client, "CommandGetTables", sl._field(field, pattern.encode())))
    assert out.code == "INVALID_ARGUMENT", out.describe()
    assert f"the {what} pattern" in out.message and "_" * 20 in out.message, out.describe()
    # A pattern that matches is still served.
    names = catalog_rows(server.client, "CommandGetTables", sl._field(field, b"%")).column("table_name").to_pylist()
    assert sl.ORDERS in names, names


# --------------------------------------------------------------------------
# CancelFlightInfo checks the caller
# --------------------------------------------------------------------------

# Millions of rows, reading sql/sales (bob may read it) and sql/stores (he may not): its DoGet streams for as long as
# the client does not read on.
MANY_ROWS = f"SELECT o.order_id, s.city FROM {STO} s CROSS JOIN {ORD} o"


def test_cancel_needs_read_access_to_every_package_the_statement_reads(data, tmp_path):
    """alice runs a statement over sql/sales and sql/stores. bob (who may read sql/sales only) cancelling it is
    answered exactly as cancelling a statement that is not running, and the statement goes on; carol (who may read
    both) cancels it. The statement is known to be running once alice has its first batch (it is registered for
    cancelling before that) and not to be over as she reads no further, so nothing here depends on timing."""
    server = sl.serve_with_auth(data, tmp_path)
    try:
        client = flight.connect(server.url)
        alice = al.bearer(al.login(client, *sl.ALICE), sl.TIMEOUT)
        bob = al.bearer(al.login(client, *sl.BOB), sl.TIMEOUT)
        carol = al.bearer(al.login(client, *sl.CAROL), sl.TIMEOUT)
        fi = sl.statement_info(client, MANY_ROWS, alice)
        # Not running yet: what anyone gets for a ticket that is not running.
        assert cancel(client, fi, bob) == NOT_CANCELLABLE
        assert cancel(client, fi, carol) == NOT_CANCELLABLE
        reader = client.do_get(fi.endpoints[0].ticket, alice)
        assert reader.read_chunk().data.num_rows > 0  # the statement runs
        assert cancel(client, fi, bob) == NOT_CANCELLABLE, "bob cancelled a statement over a package he may not read"
        assert cancel(client, fi, carol) in (CANCELLED, CANCELLING)
        # Read chunk by chunk: pyarrow's read_all turns a CANCELLED status into a simulated Ctrl-C (its
        # SignalStopHandler re-raises any ArrowCancelled as SIGINT).
        out = al.attempt(lambda: [reader.read_chunk() for _ in iter(int, 1)])
        assert out.code == "CANCELLED", out.describe()
        client.close()
    finally:
        server.stop()


# --------------------------------------------------------------------------
# GetTables with a broken package
# --------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["unparseable", "missing"])
def test_get_tables_leaves_out_a_package_whose_manifest_cannot_be_read(data, tmp_path, damage):
    """sql/stores's latest manifest does not parse (or is gone): GetTables still lists sql/sales's tables, without
    sql/stores's."""
    registry = sl.copy_folder(data.registry, tmp_path / "registry")
    latest = (registry / ".quilt/named_packages" / sl.STORES / "latest").read_text().strip()
    manifest = registry / ".quilt/packages" / latest
    assert manifest.is_file(), manifest
    if damage == "unparseable":
        manifest.write_text("{not json\n")
    else:
        manifest.unlink()
    server = sl.start_server(registry, log_dir=tmp_path / "serve-logs")
    try:
        got = catalog_rows(server.client, "CommandGetTables")
        rows = set(zip(got.column("db_schema_name").to_pylist(), got.column("table_name").to_pylist(), strict=True))
        assert (sl.SALES, sl.ORDERS) in rows and (sl.SALES, sl.ITEMS) in rows, rows
        assert not {s for s, _ in rows if s == sl.STORES}, rows
        # With the schemas asked for (include_schema = 5) too.
        got = catalog_rows(server.client, "CommandGetTables", bytes([5 << 3, 1]))
        assert (sl.SALES, sl.ORDERS) in set(
            zip(got.column("db_schema_name").to_pylist(), got.column("table_name").to_pylist(), strict=True)
        )
    finally:
        server.stop()


# --------------------------------------------------------------------------
# Bulk ingest into `_manifest`
# --------------------------------------------------------------------------


def ingest(client, table: str, schema: str | None, rows: pa.Table):
    """DoPut of a CommandStatementIngest{table = 2, schema = 3}; the DoPutUpdateResult's fields."""
    body = sl._field(2, table.encode()) + (sl._field(3, schema.encode()) if schema is not None else b"")
    descriptor = flight.FlightDescriptor.for_command(sl.pack_any("CommandStatementIngest", body))
    writer, reader = client.do_put(descriptor, rows.schema, sl.OPTIONS)
    writer.write_table(rows)
    writer.done_writing()
    answer = reader.read()
    writer.close()
    return sl.parse_fields(answer.to_pybytes())


@pytest.mark.parametrize(
    "table, schema",
    [("_manifest", sl.STORES), ("/_manifest/", sl.STORES), (f"{sl.STORES}/_manifest", None)],
    ids=["schema", "slashes", "no_schema"],
)
def test_ingest_refuses_the_manifest_table_name(data, tmp_path, table, schema):
    """`_manifest` is what SQL calls a package's manifest table: a table ingested under that name could never be
    read back. Refused with INVALID_ARGUMENT naming it, and nothing is written."""
    registry = sl.copy_folder(data.registry, tmp_path / "registry")
    server = sl.start_server(registry, log_dir=tmp_path / "serve-logs")
    try:
        client = server.client
        before = catalog_rows(client, "CommandGetTables", sl._field(2, sl.STORES.encode()))
        out = al.attempt(lambda: ingest(client, table, schema, pa.table({"secret_col": [1, 2, 3]})))
        assert out.code == "INVALID_ARGUMENT", out.describe()
        assert "_manifest" in out.message and "reserved" in out.message, out.describe()
        after = catalog_rows(client, "CommandGetTables", sl._field(2, sl.STORES.encode()))
        assert after.column("table_name").to_pylist() == before.column("table_name").to_pylist()
        assert after.column("table_name").to_pylist().count("_manifest") == 1
        assert "secret_col" not in sl.flight_sql(client, f'SELECT * FROM "{sl.STORES}"."_manifest"').schema.names
        # Another name is ingested as before.
        assert ingest(client, "tables/extra.parquet", sl.STORES, pa.table({"x": [1, 2, 3]}))[1] == [3]
    finally:
        server.stop()


# --------------------------------------------------------------------------
# GetSqlInfo: the statement timeout
# --------------------------------------------------------------------------


def sql_info(client, info: int) -> object:
    """GetSqlInfo of one key (CommandGetSqlInfo{info = 1}, packed): its value."""
    got = catalog_rows(client, "CommandGetSqlInfo", sl._field(1, sl._varint(info))).to_pylist()
    assert [r["info_name"] for r in got] == [info], got
    return got[0]["value"]


def test_statement_timeout_is_the_configured_sql_timeout(data, tmp_path, server):
    """FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT is an int32 of milliseconds (0: no timeout): --sql-timeout 2s reports
    2000; the default (300 s) 300000."""
    assert sql_info(server.client, STATEMENT_TIMEOUT) == 300_000
    timed = sl.start_server(data.registry, "--sql-timeout", "2s", log_dir=tmp_path / "serve-logs")
    try:
        assert sql_info(timed.client, STATEMENT_TIMEOUT) == 2_000
    finally:
        timed.stop()


# --------------------------------------------------------------------------
# GetSchema of the key commands
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, body",
    [
        ("CommandGetPrimaryKeys", sl._field(3, sl.ORDERS.encode())),
        ("CommandGetExportedKeys", sl._field(3, sl.ORDERS.encode())),
        ("CommandGetImportedKeys", sl._field(3, sl.ORDERS.encode())),
        ("CommandGetCrossReference", sl._field(3, sl.ORDERS.encode()) + sl._field(6, sl.STORES_T.encode())),
    ],
)
def test_get_schema_of_key_commands(server, message, body):
    """GetSchema answers the fixed schema GetFlightInfo serves (and DoGet's empty answer has)."""
    descriptor = flight.FlightDescriptor.for_command(sl.pack_any(message, body))
    out = al.attempt(lambda: server.client.get_schema(descriptor, sl.OPTIONS))
    assert out.ok, out.describe()
    fi = server.client.get_flight_info(descriptor, sl.OPTIONS)
    assert out.value.schema.equals(fi.schema), f"{out.value.schema} != {fi.schema}"
    assert "key_sequence" in fi.schema.names
    rows = server.client.do_get(fi.endpoints[0].ticket, sl.OPTIONS).read_all()
    assert rows.num_rows == 0 and rows.schema.equals(fi.schema)


# --------------------------------------------------------------------------
# Binding parameters
# --------------------------------------------------------------------------


def bind(client, handle: bytes, batch: pa.RecordBatch) -> bytes:
    """DoPut of parameters to a prepared statement; the handle answered (DoPutPreparedStatementResult)."""
    writer, reader = client.do_put(sl.prepared_descriptor(handle), batch.schema, sl.OPTIONS)
    writer.write_batch(batch)
    writer.done_writing()
    answer = reader.read()
    writer.close()
    return sl.parse_fields(answer.to_pybytes())[1][0]


def execute(client, handle: bytes) -> list:
    fi = client.get_flight_info(sl.prepared_descriptor(handle), sl.OPTIONS)
    return pa.concat_tables(sl.read_endpoints(client, fi)).to_pylist()


@pytest.mark.parametrize(
    "values, names",
    [
        (["x", "y"], ("one row", "2 rows")),
        ([], ("one row", "0 rows")),
        (["x" * 2_000_000], ("parameters", "bytes")),
    ],
    ids=["two_rows", "no_row", "too_big"],
)
def test_bind_refuses_parameters_no_execution_can_use(server, values, names):
    """Refused when bound (INVALID_ARGUMENT naming the problem), not later by the execution ("bad parameters in the
    handle") or by the DoGet request limit ("length limit exceeded"); one row of a fitting size binds and runs."""
    client = server.client
    handle = sl.create_prepared_statement(client, "SELECT length($1) AS n")
    batch = pa.record_batch({"a": pa.array(values, pa.string())})
    out = al.attempt(lambda: bind(client, handle, batch))
    assert out.code == "INVALID_ARGUMENT", out.describe()
    for name in names:
        assert name in out.message, out.describe()
    bound = bind(client, handle, pa.record_batch({"a": pa.array(["x" * 100_000])}))
    assert execute(client, bound) == [{"n": 100_000}]


def test_get_schema_of_a_prepared_statement_plans_it_with_its_parameters(server):
    """GetSchema of a prepared statement with parameters bound answers the schema its execution has (`$1` is the
    bound value's type), as GetFlightInfo does."""
    client = server.client
    handle = sl.create_prepared_statement(client, "SELECT $1 AS v, $2 AS w")
    bound = bind(client, handle, pa.record_batch({"a": pa.array([7], pa.int64()), "b": pa.array(["x"])}))
    schema = client.get_schema(sl.prepared_descriptor(bound), sl.OPTIONS).schema
    fi = client.get_flight_info(sl.prepared_descriptor(bound), sl.OPTIONS)
    assert schema.equals(fi.schema), f"{schema} != {fi.schema}"
    assert schema.field("v").type == pa.int64() and schema.field("w").type in (pa.string(), pa.large_string()), schema
    assert execute(client, bound) == [{"v": 7, "w": "x"}]
