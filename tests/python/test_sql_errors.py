"""Flight SQL errors: each refused statement gets the right gRPC code and a message naming the thing at fault
(package, table, revision, tag, column, function), through the ADBC driver (sql_lib.grpc_code reads the code back
from what the driver raises) and, for a few, through pyarrow.flight directly. Also the limits: `--sql-timeout`
ends a slow query with DEADLINE_EXCEEDED, `--sql-memory-mib` either lets a big query spill or refuses it with
RESOURCE_EXHAUSTED, and the server keeps answering.

Run from the repository root:

    SHEAF_BIN=/path/to/sheaf python -m pytest -q tests/python/test_sql_errors.py
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import threading
import time

import adbc_driver_manager
import auth_lib
import pyarrow.flight as flight
import pytest
import sql_lib as sl
from sheaf_testlib import Sheaf, start_server

ORD = '"sql/sales"."tables/orders.parquet"'
STO = '"sql/stores"."tables/stores.parquet"'


def _still_answers(conn):
    got = sl.query(conn, f"SELECT count(*) AS n FROM {ORD} WHERE store_id = 1")
    assert got.column("n")[0].as_py() > 0


# --------------------------------------------------------------------------
# Names that do not exist
# --------------------------------------------------------------------------


def test_unknown_package(conn):
    err = sl.failing_query(conn, 'SELECT * FROM "sql/nope"."tables/orders.parquet"')
    sl.assert_refused(err, "NOT_FOUND", "sql/nope")


def test_unknown_table_names_table_and_revision(conn, data):
    err = sl.failing_query(conn, 'SELECT * FROM "sql/sales"."tables/nope.parquet"')
    sl.assert_refused(err, "NOT_FOUND", "tables/nope.parquet", "sql/sales")
    top = data.tops["sql/sales"]
    assert any(top[:n] in err.message for n in range(7, 65)), f"the message should name the revision {top}: {err}"


def test_non_table_entry_is_not_a_table(conn):
    """README.md is an entry of the package but not a table."""
    err = sl.failing_query(conn, 'SELECT * FROM "sql/sales"."README.md"')
    sl.assert_refused(err, ("NOT_FOUND", "INVALID_ARGUMENT"), "README.md")


def test_unknown_revision_hash_prefix(conn):
    err = sl.failing_query(conn, 'SELECT * FROM "sql/stores@deadbeef00"."tables/stores.parquet"')
    sl.assert_refused(err, "NOT_FOUND", "deadbeef00")


def test_unknown_tag(conn):
    err = sl.failing_query(conn, 'SELECT * FROM "sql/stores:no-such-tag"."tables/stores.parquet"')
    sl.assert_refused(err, "NOT_FOUND", "no-such-tag")


def test_unknown_column(conn):
    err = sl.failing_query(conn, f"SELECT order_id, no_such_col FROM {ORD}")
    sl.assert_refused(err, "INVALID_ARGUMENT", "no_such_col")
    err = sl.failing_query(conn, f"SELECT count(*) FROM {ORD} WHERE shop_id = 3")
    sl.assert_refused(err, "INVALID_ARGUMENT", "shop_id")


def test_unknown_function(conn):
    err = sl.failing_query(conn, f"SELECT frobnicate(order_id) FROM {ORD}")
    sl.assert_refused(err, "INVALID_ARGUMENT", "frobnicate")


@pytest.mark.parametrize(
    "sql",
    ["SELEC 1", f"SELECT FROM WHERE {ORD}", f"SELECT order_id FROM {ORD} WHERE (", f"SELECT 'unterminated FROM {ORD}"],
    ids=["typo", "no_columns", "open_paren", "unterminated_string"],
)
def test_bad_sql(conn, sql):
    err = sl.failing_query(conn, sql)
    sl.assert_refused(err, "INVALID_ARGUMENT")
    assert err.message, err


@pytest.mark.parametrize(
    ("sql", "hint"),
    [
        (f"SELECT count(*) FROM {ORD} TABLESAMPLE SYSTEM (0)", "sample="),
        ("SHOW TABLES", "GetTables"),
        (f"DESCRIBE {ORD}", "GetTables"),
        (";", "empty"),
        (f"SELECT note[1] FROM {ORD}", "element and field access"),
        (f"SELECT * FROM {ORD} LIMIT $1", "LIMIT and OFFSET take numbers"),
    ],
    ids=["tablesample", "show_tables", "describe", "empty", "element_access", "limit_parameter"],
)
def test_unsupported_statements_say_what_to_use(conn, sql, hint):
    """Statements DataFusion would ignore part of (TABLESAMPLE) or that Sheaf answers another way (SHOW, DESCRIBE)
    are refused with INVALID_ARGUMENT pointing at the way that works."""
    err = sl.failing_query(conn, sql)
    sl.assert_refused(err, "INVALID_ARGUMENT", hint)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "+".join(["1"] * 10_000) + " AS x",
        f"SELECT count(*) FROM {ORD} WHERE " + " OR ".join(f"order_id = {i}" for i in range(3_000)),
        "SELECT " + "(SELECT " * 300 + "1" + ")" * 300,
    ],
    ids=["operator_chain", "or_chain", "nested_subqueries"],
)
def test_deeply_nested_statement_is_refused(conn, sql):
    """A statement nesting expressions thousands deep (which would overflow a thread's stack in the planner) is
    refused with INVALID_ARGUMENT saying how deep is allowed, and the server keeps answering."""
    err = sl.failing_query(conn, sql)
    sl.assert_refused(err, "INVALID_ARGUMENT")
    assert "levels deep" in err.message or "recursion" in err.message.lower(), err
    _still_answers(conn)


def _doubling_ctes(levels: int) -> str:
    ctes = ["c0 AS (SELECT 1 AS x)"]
    ctes += [f"c{i} AS (SELECT * FROM c{i - 1} UNION ALL SELECT * FROM c{i - 1})" for i in range(1, levels + 1)]
    return f"WITH {', '.join(ctes)} SELECT count(*) FROM c{levels}"


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT " + ", ".join(f"{i} AS c{i}" for i in range(30_000)), "a SELECT lists 30000 items"),
        (_doubling_ctes(15), "common table expression c9 expands"),
        ("SELECT 1 WHERE 1 IN (" + ",".join(["(1+1)"] * 20_000) + ")", "more than 50000 expressions"),
    ],
    ids=["wide_select", "doubling_ctes", "many_expressions"],
)
def test_statements_too_costly_to_plan_are_refused(conn, sql, named):
    """Planning has no natural bound: two statements of 30,000 select items froze the whole server (new
    connections timed out) and 15 levels of doubling CTEs took 21 s and 300 MB to plan. Such statements are
    refused before planning, naming the limit."""
    err = sl.failing_query(conn, sql)
    sl.assert_refused(err, "INVALID_ARGUMENT", named)
    _still_answers(conn)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT length(lpad('x', 300000000)) AS n",
        "SELECT length(rpad('x', 300000000, 'yz')) AS n",
        f"SELECT max(length(repeat(product, 20000))) AS n FROM {ORD}",
    ],
    ids=["lpad", "rpad", "repeat_column"],
)
def test_string_functions_that_would_build_past_the_memory_limit_are_refused(data, tmp_path, sql):
    """repeat(), lpad() and rpad() build their results outside the memory pool: under --sql-memory-mib 16 they
    held 1.2-2.4 GB. A batch whose results would pass the limit is RESOURCE_EXHAUSTED naming the function;
    small uses still answer."""
    server = start_server(data.registry, "--sql-memory-mib", "16", log_dir=tmp_path)
    connections = sl.Connections(server.url)
    try:
        conn = connections()
        err = sl.failing_query(conn, sql)
        sl.assert_refused(err, "RESOURCE_EXHAUSTED", "memory")
        assert any(f"{name}()" in err.message for name in ("lpad", "rpad", "repeat")), err
        got = sl.query(conn, f"SELECT lpad(product, 12, '*') AS p, repeat('ab', 3) AS r FROM {ORD} LIMIT 3")
        assert [len(v) for v in got.column("p").to_pylist()] == [12, 12, 12]
        assert got.column("r").to_pylist() == ["ababab"] * 3
        assert server.proc.poll() is None
    finally:
        connections.close()
        server.stop()


@pytest.mark.parametrize(
    "sql",
    [
        "WITH a AS (SELECT 1 AS x) INSERT INTO t SELECT * FROM a",
        "WITH a AS (SELECT 1 AS x) DELETE FROM t",
        f"SELECT store_id INTO copy_of_orders FROM {ORD}",
    ],
    ids=["with_insert", "with_delete", "select_into"],
)
def test_writes_inside_queries_are_refused_as_writes(conn, sql):
    err = sl.failing_query(conn, sql)
    assert "read-only" in err.message, err


def test_table_function_under_explain_and_lateral(conn):
    """EXPLAIN of a statement reading sheaf(...), and LATERAL sheaf(...), answered INTERNAL ("was not
    planned"): the URIs under them are now resolved like any other."""
    uri = "sheaf://sql/stores/tables/stores.parquet"
    plan = sl.query(conn, f"EXPLAIN SELECT count(*) FROM sheaf('{uri}')")
    assert plan.num_rows > 0
    err = sl.failing_query(conn, "EXPLAIN SELECT * FROM sheaf('sheaf://no/such/t.parquet')")
    sl.assert_refused(err, "NOT_FOUND", "no/such")
    got = sl.query(conn, f"SELECT count(*) AS n FROM LATERAL sheaf('{uri}')")
    assert got.column("n")[0].as_py() > 0


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM orders", 'SELECT * FROM "tables/orders.parquet"'],
    ids=["bare_name", "path_without_package"],
)
def test_unqualified_table(conn, sql):
    """A table without its package: INVALID_ARGUMENT explaining that tables are "owner/name"."path"."""
    err = sl.failing_query(conn, sql)
    sl.assert_refused(err, "INVALID_ARGUMENT", "owner/name")


def test_schema_that_is_not_a_package_name(conn):
    err = sl.failing_query(conn, 'SELECT * FROM "sales"."tables/orders.parquet"')
    sl.assert_refused(err, ("INVALID_ARGUMENT", "NOT_FOUND"), "sales")


def test_table_function_errors(conn):
    err = sl.failing_query(conn, "SELECT * FROM sheaf('sheaf://sql/nope/t.parquet')")
    sl.assert_refused(err, "NOT_FOUND", "sql/nope")
    err = sl.failing_query(conn, "SELECT * FROM sheaf('sheaf://sql/sales/tables/orders.parquet?bogus=1')")
    sl.assert_refused(err, "INVALID_ARGUMENT", "bogus")
    err = sl.failing_query(conn, "SELECT * FROM sheaf('sheaf://sql/sales/tables/orders.parquet?columns=nope_col')")
    sl.assert_refused(err, ("INVALID_ARGUMENT", "NOT_FOUND"), "nope_col")


def test_codes_seen_by_pyarrow_flight(server):
    """The same codes with pyarrow.flight (no ADBC mapping in between)."""
    cases = [
        ('SELECT * FROM "sql/nope"."t.parquet"', "NOT_FOUND", "sql/nope"),
        (f"SELECT no_such_col FROM {ORD}", "INVALID_ARGUMENT", "no_such_col"),
        ("SELEC 1", "INVALID_ARGUMENT", ""),
    ]
    for sql, code, name in cases:
        out = auth_lib.attempt(lambda sql=sql: sl.flight_sql(server.client, sql))
        assert out.code == code, f"{sql}: {out.describe()}"
        assert name in out.message, f"{sql}: {out.describe()}"


def test_malformed_flight_sql_messages_are_invalid_argument(server):
    """A Flight SQL message whose body does not decode (a truncated varint here) is the client's fault:
    INVALID_ARGUMENT naming the message, in GetFlightInfo, GetSchema, DoGet and DoAction alike; the server answers
    the next statement."""
    garbage = b"\x08\xff\xff"  # field 1, a varint cut short
    options = flight.FlightCallOptions(timeout=30)
    command = flight.FlightDescriptor.for_command(sl.pack_any("CommandStatementQuery", garbage))
    calls = {
        "GetFlightInfo": lambda: server.client.get_flight_info(command, options),
        "GetSchema": lambda: server.client.get_schema(command, options),
        "DoGet": lambda: server.client.do_get(
            flight.Ticket(sl.pack_any("TicketStatementQuery", garbage)), options
        ).read_all(),
        "DoAction": lambda: list(
            server.client.do_action(
                flight.Action("CreatePreparedStatement", sl.pack_any("ActionCreatePreparedStatementRequest", garbage)),
                options,
            )
        ),
    }
    for call, run in calls.items():
        out = auth_lib.attempt(run)
        assert out.code == "INVALID_ARGUMENT", f"{call}: {out.describe()}"
        assert "malformed Flight SQL" in out.message and "Statement" in out.message, f"{call}: {out.describe()}"
    ok = auth_lib.attempt(lambda: sl.flight_sql(server.client, f"SELECT count(*) AS n FROM {STO}", options))
    assert ok.ok and ok.value.column("n")[0].as_py() == 52, ok.describe()


def test_values_meeting_the_data_badly_are_invalid_argument(conn, tmp_path):
    """Errors of the statement meeting the data are the client's, INVALID_ARGUMENT naming the cause: a regular
    expression that does not compile (constant, found while planning), and a CSV column whose values change type
    after the rows its type was inferred from (found while reading, in a scan shared between partitions)."""
    err = sl.failing_query(conn, f"SELECT count(*) FROM {ORD} WHERE regexp_like(note, '(')")
    sl.assert_refused(err, "INVALID_ARGUMENT", "unclosed group")
    root, registry = tmp_path / "t", tmp_path / "reg"
    root.mkdir()
    rows = ["a,b", *(f"{i},x{i}" for i in range(20_000)), "oops,y"]
    (root / "t.csv").write_text("\n".join(rows) + "\n")
    assert Sheaf(str(registry)).push("csv/t", root)["top_hash"]
    server = start_server(registry, log_dir=tmp_path)
    connections = sl.Connections(server.url)
    try:
        err = sl.failing_query(connections(), 'SELECT sum(a) AS s FROM "csv/t"."t.csv"')
        sl.assert_refused(err, "INVALID_ARGUMENT", "t.csv", "oops")
    finally:
        connections.close()
        server.stop()


# An Arrow IPC stream of one row whose compressed buffer declares 80 GiB once decompressed (a client's edit of the
# parameters a ticket or a prepared statement's handle carries back): decoded as is, it aborted the server.
BOMB_PARAMETERS = bytes.fromhex(
    "ffffffff700000001000000000000a000c000600050008000a000000000104000c000000080008000000040008000000040000000100"
    "000014000000100014000800060007000c00000010001000000000000105100000001800000004000000000000000100000070000000"
    "040004000400000000000000ffffffff9800000014000000000000000c0016000600050008000c000c0000000003040018000000180000"
    "001400000000000a0018000c00040008000a0000004c000000100000000100000000000000000000000300000000000000000000000000"
    "0000000000000000000000000000080000000000000008000000000000000a0000000000000000000000010000000100000000000000"
    "0000000000000000000000000a00000061616161616161613561000000000000ffffffff00000000"
)


def test_parameters_edited_in_a_ticket_or_handle_are_refused(server):
    """Parameters come back from the client inside tickets and prepared statements' handles: an edited stream is
    INVALID_ARGUMENT naming the parameters, never decoded blindly (no abort, no panic); the server goes on."""
    options = flight.FlightCallOptions(timeout=30)
    statement = sl._field(1, b"SELECT $1 AS v") + sl._field(3, BOMB_PARAMETERS) + b"\x28\x01"  # partitions = 1
    ticket = flight.Ticket(sl.pack_any("TicketStatementQuery", sl._field(1, statement)))
    handle = sl._field(1, b"SELECT $1 AS v") + sl._field(2, BOMB_PARAMETERS)
    command = flight.FlightDescriptor.for_command(sl.pack_any("CommandPreparedStatementQuery", sl._field(1, handle)))
    for call, run in {
        "DoGet of a ticket": lambda: server.client.do_get(ticket, options).read_all(),
        "GetFlightInfo of a handle": lambda: server.client.get_flight_info(command, options),
    }.items():
        out = auth_lib.attempt(run)
        assert out.code == "INVALID_ARGUMENT" and "parameters" in out.message, f"{call}: {out.describe()}"
    assert server.proc.poll() is None, "the server died"
    assert "panicked" not in server.log_path.read_text()
    ok = auth_lib.attempt(lambda: sl.flight_sql(server.client, f"SELECT count(*) AS n FROM {STO}", options))
    assert ok.ok, ok.describe()


def test_revision_caller_may_not_read(data, tmp_path):
    """bob may read sql/sales only: a pinned revision of sql/stores answers like a missing package."""
    server = sl.serve_with_auth(data, tmp_path)
    connections = sl.Connections(server.url)
    try:
        bob = connections(*sl.BOB)
        v1 = data.tops["sql/stores@v1"][:12]
        hidden = sl.failing_query(bob, f'SELECT * FROM "sql/stores@{v1}"."tables/stores.parquet"')
        sl.assert_refused(hidden, "NOT_FOUND", "sql/stores")
        missing = sl.failing_query(bob, f'SELECT * FROM "sql/nostore@{v1}"."tables/stores.parquet"')
        assert hidden.message.replace("sql/stores", "X") == missing.message.replace("sql/nostore", "X")
        by_tag = sl.failing_query(bob, 'SELECT * FROM "sql/stores:v1"."tables/stores.parquet"')
        sl.assert_refused(by_tag, "NOT_FOUND", "sql/stores")
        missing = sl.failing_query(bob, 'SELECT * FROM "sql/nostore:v1"."tables/stores.parquet"')
        assert by_tag.message.replace("sql/stores", "X") == missing.message.replace("sql/nostore", "X")
        _still_answers(bob)
    finally:
        connections.close()
        server.stop()


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------

SLOW = (
    f"SELECT count(*) AS n FROM {ORD} a CROSS JOIN {ORD} b "
    "WHERE a.unit_price + b.unit_price > 999.5 AND a.note LIKE b.product"
)
# Hours of work if nothing stops it: one regular expression per pair of 120,000 x 120,000 rows, and the plan
# yields no batch before the end (a count).
NEVER_YIELDS = (
    f"SELECT count(*) AS n FROM {ORD} a CROSS JOIN {ORD} b WHERE regexp_like(coalesce(a.note, ''), b.product)"
)
# Many hours of work too, as a 3-way cross join.
THREE_WAY = (
    f"SELECT count(*) AS n FROM {ORD} a CROSS JOIN {ORD} b CROSS JOIN {ORD} c "
    "WHERE a.unit_price + b.unit_price + c.unit_price > 1499.9"
)
# The client's own deadline, far beyond the server's 1 s: hitting it means the server did not end the query (its
# message then does not name --sql-timeout). pyarrow.flight's deadline is used: the ADBC driver's fetch timeout
# option did not end a DoGet that the server never answered.
CLIENT_DEADLINE = flight.FlightCallOptions(timeout=60)
TIMEOUT_MESSAGE = re.compile(r"sql-timeout|\b1 ?s\b|1 second")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def assert_goes_idle(pid: int, what: str, *, window: float = 2.0, busy: float = 0.5, within: float = 30.0):
    """The process stops computing: some `window` seconds in which it uses under `busy` CPU-seconds, found within
    `within` seconds (a behaviour check, generous for a loaded machine: a query left running uses a whole core)."""
    deadline = time.monotonic() + within
    used = None
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(window)
        used = cpu_seconds(pid) - before
        if used < busy:
            return
    pytest.fail(f"{what}: the server kept computing ({used:.2f} CPU-s in the last {window} s, {within} s after)")


def _stops_on_sigterm(server, grace: float = 2.0):
    """SIGTERM ends the server within its --shutdown-grace (plus 15 s of slack for a loaded machine) even while a
    computation is still running."""
    server.proc.terminate()
    try:
        server.proc.wait(timeout=grace + 15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {grace + 15} s of SIGTERM (--shutdown-grace {grace:g}s)")


TIMEOUT_CASES = {
    # (statement, whether the server must go idle after the timeout)
    # ~26 s of work here: the idle check only shows nothing lingers past the plan's natural end.
    "cross_join": (SLOW, True),
    # A CPU-bound plan (an aggregate over a nested-loop join whose filter rejects the pairs) computes inside one poll:
    # aborting its task alone would wait for it to yield (hours). The query's stop flag, checked in every join's
    # filter and output, ends it.
    "never_yields": (NEVER_YIELDS, True),
    "three_way": (THREE_WAY, True),
}


@pytest.mark.parametrize(("sql", "must_go_idle"), TIMEOUT_CASES.values(), ids=TIMEOUT_CASES.keys())
def test_sql_timeout(data, tmp_path, sql, must_go_idle):
    """--sql-timeout 1s: a statement that would run for long ends with DEADLINE_EXCEEDED naming the limit (not the
    client's own deadline); the server answers plain Flight reads and the next statement, and stops computing the
    plan (where the plan can be interrupted) or at least stops on SIGTERM."""
    server = start_server(data.registry, "--sql-timeout", "1s", "--shutdown-grace", "2s", log_dir=tmp_path)
    connections = sl.Connections(server.url)
    try:
        out = auth_lib.attempt(lambda: sl.flight_sql(server.client, sql, CLIENT_DEADLINE))
        assert out.code == "DEADLINE_EXCEEDED", out.describe()
        assert TIMEOUT_MESSAGE.search(out.message), (
            f"the server's message should name the limit; got {out.describe()} (the client's 60 s deadline ended the "
            "call if no server message)"
        )
        if must_go_idle:
            assert_goes_idle(server.proc.pid, "after the query timed out")
        other = flight.FlightCallOptions(timeout=30)
        plain = auth_lib.attempt(
            lambda: sl.flight_uri(server.client, "sheaf://sql/stores/tables/stores.parquet", other)
        )
        assert plain.ok, f"a plain read after the timeout: {plain.describe()}"
        _still_answers(connections())
        assert server.proc.poll() is None
        connections.close()
        _stops_on_sigterm(server)
    finally:
        connections.close()
        server.stop()


def test_sql_timeout_through_adbc(data, tmp_path):
    """The same through ADBC: the driver raises OperationalError with status TIMEOUT and the server's message. (The
    statement runs in a thread given 60 s: the driver's own timeout options did not end an unanswered DoGet.)"""
    server = start_server(data.registry, "--sql-timeout", "1s", log_dir=tmp_path)
    connections = sl.Connections(server.url)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(sl.failing_query, connections(), THREE_WAY)
            try:
                err = future.result(timeout=60)
            except concurrent.futures.TimeoutError:
                server.stop()  # ends the driver's call
                pytest.fail("no answer within 60 s from a server with --sql-timeout 1s")
        assert isinstance(err.error, adbc_driver_manager.OperationalError), err
        assert err.error.status_code == adbc_driver_manager.AdbcStatusCode.TIMEOUT, err
        sl.assert_refused(err, "DEADLINE_EXCEEDED")
        assert TIMEOUT_MESSAGE.search(err.message), f"the message should name the limit: {err}"
    finally:
        connections.close()
        server.stop()


MEMORY_HEAVY = [
    (
        "high_cardinality_group_by",
        f"SELECT note, product, customer_id, count(*) AS n, sum(unit_price) AS s FROM {ORD} "
        "GROUP BY note, product, customer_id",
        False,
    ),
    ("sort_everything", f"SELECT * FROM {ORD} ORDER BY note DESC NULLS LAST, product, order_id", True),
    ("distinct_wide", f"SELECT DISTINCT order_id, product, note, order_ts FROM {ORD}", False),
]


@pytest.mark.parametrize(("sql", "ordered"), [(s, o) for _, s, o in MEMORY_HEAVY], ids=[n for n, _, _ in MEMORY_HEAVY])
def test_sql_memory_limit(data, tmp_path, sql, ordered):
    """--sql-memory-mib 4: a query needing more either succeeds (spilled; then its answer is DuckDB's) or is
    refused with RESOURCE_EXHAUSTED naming memory; never a crashed server."""
    server = start_server(data.registry, "--sql-memory-mib", "4", log_dir=tmp_path)
    connections = sl.Connections(server.url)
    duck = sl.duck_connection(data)
    try:
        conn = connections()
        try:
            got = sl.query(conn, sql)
        except adbc_driver_manager.Error as e:
            err = sl.SqlError(sl.grpc_code(e), sl.server_text(e), e)
            sl.assert_refused(err, "RESOURCE_EXHAUSTED")
            assert "memory" in err.message.lower(), err
        else:
            sl.assert_same_result(got, sl.duck(duck, sql), ordered=ordered, what=sql)
        assert server.proc.poll() is None, "the server died"
        _still_answers(conn)
    finally:
        duck.close()
        connections.close()
        server.stop()


def test_sql_max_queries_queue(data, tmp_path):
    """--sql-max-queries 1: statements sent at once wait for their turn and all answer correctly."""
    server = start_server(data.registry, "--sql-max-queries", "1", log_dir=tmp_path)
    connections = sl.Connections(server.url)
    duck = sl.duck_connection(data)
    try:
        sqls = [
            f"SELECT store_id, count(*) AS n, sum(quantity) AS q FROM {ORD} WHERE category = '{c}' GROUP BY store_id"
            for c in ("books", "toys", "food", "garden")
        ]
        conns = [connections() for _ in sqls]
        with concurrent.futures.ThreadPoolExecutor(len(sqls)) as pool:
            results = list(pool.map(sl.query, conns, sqls))
        for sql, got in zip(sqls, results, strict=True):
            sl.assert_same_result(got, sl.duck(duck, sql), what=sql)
    finally:
        duck.close()
        connections.close()
        server.stop()


def _start_long_read(server, fi):
    """Reads fi's endpoints in a thread (60 s client deadline); returns the thread and where its Outcome goes."""
    out: dict = {}

    def run():
        out["outcome"] = auth_lib.attempt(lambda: sl.read_endpoints(server.client, fi, CLIENT_DEADLINE))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_long_query_does_not_block_others(data, tmp_path):
    """While one statement computes for long, other statements (and plain reads) are answered."""
    server = start_server(data.registry, log_dir=tmp_path)
    try:
        fi = sl.statement_info(server.client, NEVER_YIELDS)
        _start_long_read(server, fi)
        time.sleep(2)  # let it start computing
        other = flight.FlightCallOptions(timeout=30)
        plain = auth_lib.attempt(
            lambda: sl.flight_uri(server.client, "sheaf://sql/stores/tables/stores.parquet", other)
        )
        assert plain.ok, plain.describe()
        small = auth_lib.attempt(lambda: sl.flight_sql(server.client, f"SELECT count(*) AS n FROM {STO}", other))
        assert small.ok, f"a small statement while a long one runs: {small.describe()}"
        assert small.value.column("n")[0].as_py() == 52
    finally:
        server.stop()


def test_cancel_flight_info(data, tmp_path):
    """CancelFlightInfo on a running statement: status CANCELLED (or CANCELLING), its DoGet ends with CANCELLED, the
    computation stops, the server answers the next statement and still stops on SIGTERM."""
    server = start_server(data.registry, "--shutdown-grace", "2s", log_dir=tmp_path)
    connections = sl.Connections(server.url)
    try:
        fi = sl.statement_info(server.client, NEVER_YIELDS)
        thread, out = _start_long_read(server, fi)
        time.sleep(2)
        # CancelFlightInfoRequest{info = 1}; CancelFlightInfoResult{status = 1}: 1 = CANCELLED, 2 = CANCELLING.
        action = flight.Action("CancelFlightInfo", sl._field(1, fi.serialize()))
        results = list(server.client.do_action(action, flight.FlightCallOptions(timeout=30)))
        assert len(results) == 1
        status = sl.parse_fields(results[0].body.to_pybytes()).get(1, [0])[0]
        assert status in (1, 2), f"CancelFlightInfo answered status {status}"
        thread.join(60)
        assert not thread.is_alive(), "the cancelled DoGet did not end"
        assert out["outcome"].code == "CANCELLED", out["outcome"].describe()
        assert_goes_idle(server.proc.pid, "after CancelFlightInfo")
        _still_answers(connections())
        connections.close()
        _stops_on_sigterm(server)
    finally:
        connections.close()
        server.stop()


def test_stopped_query_gives_back_its_turn(data, tmp_path):
    """--sql-max-queries 1: a statement computing without yielding that times out, then one whose client goes away,
    each give back the only turn and stop computing: the next statement is answered (it would wait for a turn and
    time out while the first still computed)."""
    server = start_server(data.registry, "--sql-max-queries", "1", "--sql-timeout", "3s", log_dir=tmp_path)
    try:
        other = flight.FlightCallOptions(timeout=30)
        small = f"SELECT count(*) AS n FROM {STO}"
        timed_out = auth_lib.attempt(lambda: sl.flight_sql(server.client, NEVER_YIELDS, CLIENT_DEADLINE))
        assert timed_out.code == "DEADLINE_EXCEEDED", timed_out.describe()
        after = auth_lib.attempt(lambda: sl.flight_sql(server.client, small, other))
        assert after.ok, f"the next statement after a timed-out one: {after.describe()}"
        assert after.value.column("n")[0].as_py() == 52
        # The client gives up after 1 s (its own deadline): the server sees the call go away.
        gone = auth_lib.attempt(lambda: sl.flight_sql(server.client, NEVER_YIELDS, flight.FlightCallOptions(timeout=1)))
        assert not gone.ok, gone.describe()
        assert_goes_idle(server.proc.pid, "after the client went away")
        after = auth_lib.attempt(lambda: sl.flight_sql(server.client, small, other))
        assert after.ok, f"the next statement after one whose client went away: {after.describe()}"
    finally:
        server.stop()


@pytest.mark.parametrize("pin", ["", "x", "../" * 30, "0" * 63 + "g"], ids=["empty", "short", "path", "not_hex"])
def test_forged_ticket_pins_are_refused(server, pin):
    """A result ticket is the client's to keep, so its pins are checked: a schema pinned to anything but a 64-hex
    top hash is refused as a bad ticket (INVALID_ARGUMENT naming the schema), and the server keeps answering."""
    sql = f"SELECT count(*) FROM {ORD}"
    pins = sl._field(1, sl._field(1, b"sql/sales") + sl._field(2, f"sql/sales@{pin}".encode()))
    statement = sl._field(1, sql.encode()) + sl._field(2, pins) + bytes([5 << 3, 1])  # partitions = 1
    ticket = flight.Ticket(sl.pack_any("TicketStatementQuery", sl._field(1, statement)))
    out = auth_lib.attempt(lambda: server.client.do_get(ticket, sl.OPTIONS).read_all())
    assert out.code == "INVALID_ARGUMENT", out.describe()
    assert "sql/sales" in out.message and "bad ticket" in out.message, out.describe()
    assert sl.flight_sql(server.client, sql).num_rows == 1
