"""Flight SQL answers kept in the DoGet stream cache: a statement's ticket pins every revision it reads, so the
answer of a deterministic statement is the ticket's for good and a second DoGet of it is sent from memory, like a
URI read's. Statements calling functions whose value changes between runs (`random()`, `now()`) are run again every
time, and a kept answer is sent only to a caller allowed to read every revision it came from."""

from __future__ import annotations

import datetime as dt
import json

import auth_lib as al
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import sql_lib as sl

ORD = f'"{sl.SALES}"."{sl.ORDERS}"'
STORES_V1 = f'"{sl.STORES}:v1"."{sl.STORES_T}"'


def cached_do_gets(client, options=sl.OPTIONS) -> int:
    """The server's count of DoGets sent from its cache (the `metrics` action)."""
    [result] = list(client.do_action(flight.Action("metrics", b"{}"), options))
    return json.loads(result.body.to_pybytes())["do_get_cached"]


def redeem(client, fi: flight.FlightInfo, options=sl.OPTIONS) -> pa.Table:
    parts = sl.read_endpoints(client, fi, options)
    return pa.concat_tables(parts) if parts else fi.schema.empty_table()


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT store_id, count(*) AS n, sum(quantity) AS q FROM {ORD} GROUP BY store_id ORDER BY store_id",
        # Several endpoints (a filtered scan of the table's row groups): each is kept on its own.
        f"SELECT order_id, store_id FROM {ORD} WHERE quantity > 3",
        f"SELECT s.city, count(*) AS n FROM {ORD} o JOIN {STORES_V1} s ON o.store_id = s.store_id GROUP BY 1",
    ],
)
def test_a_deterministic_statement_is_sent_from_the_cache_the_second_time(server, sql):
    client = server.client
    fi = sl.statement_info(client, sql)
    first = redeem(client, fi)
    before = cached_do_gets(client)
    second = redeem(client, fi)
    assert cached_do_gets(client) - before == len(fi.endpoints), "the second reading was not sent from the cache"
    assert second.equals(first)
    # Planned again, the statement names the same revisions, so its tickets are the same bytes.
    again = sl.statement_info(client, sql)
    assert [e.ticket.ticket for e in again.endpoints] == [e.ticket.ticket for e in fi.endpoints]
    before = cached_do_gets(client)
    assert redeem(client, again).equals(first)
    assert cached_do_gets(client) - before == len(fi.endpoints)


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT random() AS r, count(*) AS n FROM {ORD}",
        f"SELECT count(*) AS n, max(order_id) AS m FROM {ORD} WHERE random() < 2",
        "SELECT now() AS t",
        "SELECT current_date AS d, 1 AS one",
    ],
)
def test_statements_whose_functions_change_between_runs_are_run_again(server, sql):
    client = server.client
    fi = sl.statement_info(client, sql)
    redeem(client, fi)
    before = cached_do_gets(client)
    redeem(client, fi)
    assert cached_do_gets(client) == before, f"{sql} was answered from the cache"


def test_now_and_current_date_answer_the_time_of_the_reading(server):
    """DataFusion folds `now()` and `current_date` into constants while planning; a SQL session that never started
    its clock failed such statements with INTERNAL."""
    before = dt.datetime.now(dt.UTC)
    got = sl.flight_sql(server.client, "SELECT now() AS t, current_date AS d")
    after = dt.datetime.now(dt.UTC)
    # An instant in UTC.
    t = got.column("t").cast(pa.timestamp("ns", "UTC"))[0].as_py()
    d = got.column("d")[0].as_py()
    assert before - dt.timedelta(seconds=1) <= t <= after + dt.timedelta(seconds=1), (before, t, after)
    assert d in (before.date(), after.date()), (d, before)


def test_random_values_are_fresh_on_every_reading(server):
    client = server.client
    fi = sl.statement_info(client, "SELECT random() AS r")
    values = {redeem(client, fi).column("r")[0].as_py() for _ in range(3)}
    assert len(values) == 3, values


def test_a_kept_answer_is_never_sent_to_a_caller_who_may_not_read_its_revisions(data, tmp_path):
    """bob reads sql/sales only; alice (analysts) reads sql/*. alice's answer of a join with sql/stores is kept; bob
    redeeming her ticket is refused exactly as when nothing was kept, and gets no rows."""
    server = sl.serve_with_auth(data, tmp_path)
    try:
        client = flight.connect(server.url)
        alice = al.bearer(al.login(client, *sl.ALICE), sl.TIMEOUT)
        bob = al.bearer(al.login(client, *sl.BOB), sl.TIMEOUT)
        sql = f"SELECT s.city, count(*) AS n FROM {ORD} o JOIN {STORES_V1} s ON o.store_id = s.store_id GROUP BY 1"
        fi = sl.statement_info(client, sql, alice)
        expected = redeem(client, fi, alice)
        assert expected.num_rows > 0
        # bob redeeming alice's tickets is refused before anything was kept...
        before_kept = al.attempt(lambda: redeem(client, fi, bob))
        # ...and after alice's second reading came from the cache.
        before = cached_do_gets(client, alice)
        assert redeem(client, fi, alice).equals(expected)
        assert cached_do_gets(client, alice) - before == len(fi.endpoints)
        after_kept = al.attempt(lambda: redeem(client, fi, bob))
        for outcome in (before_kept, after_kept):
            assert not outcome.ok, f"bob read alice's answer: {outcome.describe()}"
            assert outcome.code == "NOT_FOUND" and "sql/stores" in outcome.message, outcome.describe()
        assert after_kept.code == before_kept.code and after_kept.message == before_kept.message
        client.close()
    finally:
        server.stop()
