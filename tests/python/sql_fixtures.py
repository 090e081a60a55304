"""Fixtures of the Flight SQL suites (test_sql_*.py), loaded as a pytest plugin by conftest.py: the SQL test data
(sql_lib.sql_data), a `sheaf serve` over it, ADBC connections to it and DuckDB over the same files. Module-scoped:
each suite gets its own registry and server. A suite that needs something else defines its own fixture of the same
name, which wins over these."""

from __future__ import annotations

import pytest
import sql_lib as sl


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return sl.sql_data(tmp_path_factory)


@pytest.fixture(scope="module")
def server(data):
    s = sl.serve(data)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def connect(server):
    """Opens ADBC connections to `server` (all closed at the end of the module)."""
    connections = sl.Connections(server.url)
    yield connections
    connections.close()


@pytest.fixture(scope="module")
def conn(connect):
    return connect()


@pytest.fixture(scope="module")
def duck(data):
    con = sl.duck_connection(data)
    yield con
    con.close()
