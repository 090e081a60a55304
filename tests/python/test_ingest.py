"""Flight SQL bulk ingest with the real ADBC Flight SQL driver: `adbc_ingest`
writes a table as one revision through a write session (modes create,
append, replace), and answers the rows written."""

from __future__ import annotations

import adbc_driver_flightsql.dbapi as adbc
import flight_testlib as fl
import pyarrow as pa
import pytest
from flight_testlib import assert_same


@pytest.fixture
def server(registry, flight_server):
    return flight_server(registry, "--demo")


def table(lo: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(lo, lo + n), pa.int64()), "x": [i / 2 for i in range(lo, lo + n)]})


@pytest.mark.filterwarnings("ignore:Cannot disable autocommit")
def test_adbc_ingest_creates_appends_and_replaces(server):
    c = server.client
    with adbc.connect(server.url) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("features", table(0, 1000), mode="create", db_schema_name="ing/est") == 1000
        conn.commit()
        first = fl.action(c, "resolve", {"ref": "ing/est"})["top_hash"]
        assert_same(fl.read(c, f"sheaf://ing/est@{first}/features"), table(0, 1000))
        # create again: the table exists.
        with pytest.raises(adbc.Error, match="ALREADY_EXISTS|AlreadyExists"):
            cur.adbc_ingest("features", table(0, 1), mode="create", db_schema_name="ing/est")
        assert cur.adbc_ingest("features", table(1000, 500), mode="append", db_schema_name="ing/est") == 500
        assert fl.read(c, "sheaf://ing/est/features").column("id").to_pylist() == list(range(1500))
        assert cur.adbc_ingest("features", table(7, 3), mode="replace", db_schema_name="ing/est") == 3
        assert fl.read(c, "sheaf://ing/est/features").column("id").to_pylist() == [7, 8, 9]
        # append to a table that does not exist; a table named without a schema.
        with pytest.raises(adbc.Error, match="NOT_FOUND|NotFound"):
            cur.adbc_ingest("missing", table(0, 1), mode="append", db_schema_name="ing/est")
    # A table of no rows: ADBC sends no message at all; the answer says so.
    with adbc.connect(server.url) as conn, conn.cursor() as cur:
        with pytest.raises(adbc.Error, match="no messages.*ingest at least one row"):
            cur.adbc_ingest("nothing", table(0, 0), mode="create", db_schema_name="ing/est")
    # A catalog other than Sheaf's one is refused by name, nothing written.
    with adbc.connect(server.url) as conn, conn.cursor() as cur:
        with pytest.raises(adbc.Error, match='no catalog "elsewhere"') as e:
            cur.adbc_ingest("t2", table(0, 1), mode="create", catalog_name="elsewhere", db_schema_name="ing/est")
        assert "InvalidArgument" in str(e.value), e.value
        assert cur.adbc_ingest("t2", table(0, 1), mode="create", catalog_name="sheaf", db_schema_name="ing/est") == 1
    # A table named without a schema (a new cursor: ADBC keeps a cursor's ingest options).
    with adbc.connect(server.url) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("ing/other/t.parquet", table(0, 10), mode="create_append") == 10
    assert fl.read(c, "sheaf://ing/other/t.parquet").num_rows == 10
    # Appending to a single-file table would replace it: refused, the table and its history unchanged.
    before = fl.action(c, "list_revisions", {"package": "ing/other"})
    for mode in ("append", "create_append"):
        with adbc.connect(server.url) as conn, conn.cursor() as cur:
            with pytest.raises(adbc.Error, match="single Parquet file") as e:
                cur.adbc_ingest("ing/other/t.parquet", table(10, 5), mode=mode)
            assert "FailedPrecondition" in str(e.value), e.value
    assert fl.read(c, "sheaf://ing/other/t.parquet").column("id").to_pylist() == list(range(10))
    assert fl.action(c, "list_revisions", {"package": "ing/other"}) == before
    revisions = fl.action(c, "list_revisions", {"package": "ing/est"})
    assert [r["message"] for r in revisions] == ["bulk ingest into t2"] + ["bulk ingest into features"] * 3, revisions
    lineage = fl.action(c, "browse", {"ref": "ing/est"})["user_meta"]["sheaf"]["lineage"]
    assert lineage["writer"]["tool"] == "flight-sql ingest"
