"""`sheaf get` (the Rust client) holds each endpoint's stream to its plan: a
server whose stream ends short of the endpoint's exact rows, or whose batches
have another schema than the plan's, gives a broken answer, and `sheaf get`
fails with exit code 4 naming the endpoint, writing no file. A fake Flight
server (pyarrow) misbehaves where a real one never would."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from sheaf_testlib import Sheaf, describe

PLANNED = 1000
SCHEMA = pa.schema([pa.field("id", pa.int64())])
TOP = "ab" * 32


class Misbehaving(flight.FlightServerBase):
    """Plans every table as one endpoint of PLANNED rows of SCHEMA; DoGet of
    `short.parquet` ends after 400 rows, of `schema.parquet` sends int32 ids,
    and of `ok.parquet` keeps its plan."""

    def get_flight_info(self, context, descriptor):
        uri = descriptor.command.decode()
        path = uri.rsplit("/", 1)[-1]
        meta = {"partition": 0, "first_row": 0, "table_rows": PLANNED, "rows": PLANNED}
        endpoint = flight.FlightEndpoint(path.encode(), [], app_metadata=json.dumps(meta).encode())
        pinned = {"package": "q/fake", "top_hash": TOP, "path": path, "pinned_uri": f"sheaf://q/fake@{TOP}/{path}"}
        return flight.FlightInfo(
            SCHEMA, descriptor, [endpoint], PLANNED, -1, ordered=True, app_metadata=json.dumps(pinned).encode()
        )

    def do_get(self, context, ticket):
        kind = ticket.ticket.decode()
        if kind == "short.parquet":
            return flight.RecordBatchStream(pa.table({"id": pa.array(range(400), pa.int64())}))
        if kind == "schema.parquet":
            return flight.RecordBatchStream(pa.table({"id": pa.array(range(PLANNED), pa.int32())}))
        return flight.RecordBatchStream(pa.table({"id": pa.array(range(PLANNED), pa.int64())}))


@pytest.fixture
def fake():
    server = Misbehaving("grpc://127.0.0.1:0")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield f"grpc://127.0.0.1:{server.port}"
    server.shutdown()


def test_a_stream_contradicting_its_plan_fails_sheaf_get(fake, tmp_path):
    sheaf = Sheaf(str(tmp_path / "unused-registry"))
    out = tmp_path / "ok.parquet"
    r = sheaf("get", "sheaf://q/fake/ok.parquet", "--server", fake, "--out", str(out))
    assert r.returncode == 0, describe(r)
    assert pq.read_table(out).num_rows == PLANNED
    for path, why in (
        ("short.parquet", f"400 rows, where the plan has {PLANNED}"),
        ("schema.parquet", "a batch of schema"),
    ):
        out = tmp_path / path
        r = sheaf("get", f"sheaf://q/fake/{path}", "--server", fake, "--out", str(out))
        assert r.returncode == 4, describe(r)
        for part in (f"sheaf://q/fake@{TOP}/{path} (endpoint 0)", why, "the answer is broken"):
            assert part in r.stderr, describe(r)
        assert not out.exists()
