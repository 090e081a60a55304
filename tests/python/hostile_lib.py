"""Helpers for the hostile-client suite (test_hostile.py): classifying the
gRPC code of a pyarrow error, extracting the server's message, a server that
is restarted when a request killed it, Flight tickets built by hand
(protobuf), hostile filter texts and the suite's test data."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import flight_testlib as fl
import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest
from sheaf_testlib import FlightServer, start_server

# --------------------------------------------------------------------------
# gRPC codes as pyarrow reports them
# --------------------------------------------------------------------------

# The phrase pyarrow's C++ client puts in front of the server's message, per
# gRPC code (libarrow_flight: "Flight returned ... error, with message: " or
# "gRPC returned ... error, with message: "). The exception class alone is
# ambiguous (INVALID_ARGUMENT and RESOURCE_EXHAUSTED are both ArrowInvalid;
# get_schema raises plain OSError for Flight-specific codes).
PHRASES = [
    ("INVALID_ARGUMENT", "returned invalid argument error"),
    ("NOT_FOUND", "returned not found error"),
    ("PERMISSION_DENIED", "returned unauthorized error"),
    ("UNAUTHENTICATED", "returned unauthenticated error"),
    ("DATA_LOSS", "returned data loss error"),
    ("RESOURCE_EXHAUSTED", "returned resource exhausted error"),
    ("INTERNAL", "returned internal error"),
    ("DEADLINE_EXCEEDED", "returned timeout error"),
    ("CANCELLED", "flight cancelled call"),
    ("UNAVAILABLE", "returned unavailable error"),
    ("UNIMPLEMENTED", "returned unimplemented error"),
    ("ABORTED", "returned aborted error"),
    ("FAILED_PRECONDITION", "returned precondition failed error"),
    ("OUT_OF_RANGE", "returned out-of-range error"),
    ("ALREADY_EXISTS", "returned already exists error"),
    ("UNKNOWN", "flight rpc failed"),
]

# Every call of the suite carries a deadline: a hung server fails a test.
TIMEOUT = 60.0
OPTIONS = flight.FlightCallOptions(timeout=TIMEOUT)


def options(timeout: float) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(timeout=timeout)


def code_of(e: BaseException) -> str:
    """The gRPC code of a pyarrow Flight error ("OTHER(<type>)" if unknown)."""
    text = str(e).lower()
    for code, phrase in PHRASES:
        if phrase in text:
            return code
    if isinstance(e, flight.FlightTimedOutError):
        return "DEADLINE_EXCEEDED"
    if isinstance(e, flight.FlightCancelledError):
        return "CANCELLED"
    return f"OTHER({type(e).__name__})"


def server_message(e: BaseException) -> str:
    """The message the server put in grpc-message, without pyarrow's prefix and
    its client debug context (which repeats the message)."""
    text = str(e)
    m = re.search(r"with message: ", text)
    if not m:
        return text
    rest = text[m.end() :]
    cut = rest.find(". gRPC client debug context")
    if cut < 0:
        cut = rest.find(". Client context:")
    if cut < 0:
        cut = rest.find(". Detail:")
    return rest if cut < 0 else rest[:cut]


def short(text: str, n: int = 600) -> str:
    return text if len(text) <= n else text[:n] + f"... [{len(text)} chars]"


@dataclass
class Outcome:
    """What a call did: a value, or an error with its gRPC code and message."""

    value: object = None
    code: str | None = None
    message: str = ""
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.code is None

    def describe(self) -> str:
        if self.ok:
            v = self.value
            if isinstance(v, pa.Table):
                return f"OK ({v.num_rows} rows)"
            return f"OK ({short(repr(v), 200)})"
        return f"{self.code}: {short(self.message)}"


def attempt(fn) -> Outcome:
    try:
        return Outcome(value=fn())
    except (pa.ArrowException, OSError, flight.FlightError) as e:
        return Outcome(code=code_of(e), message=server_message(e), error=e)


# --------------------------------------------------------------------------
# A server that survives (is restarted after) the requests that kill it
# --------------------------------------------------------------------------


class Served:
    """One `sheaf serve` shared by a group of tests. `get()` returns it alive:
    if a previous request killed the process it is started again (and the
    death is remembered, so that the test that killed it fails with the exit
    status instead of every later test failing with UNAVAILABLE)."""

    def __init__(self, registry: Path, *args, log_dir: Path, env: dict | None = None):
        self.registry = registry
        self.args = args
        self.log_dir = log_dir
        self.env = env
        self.server: FlightServer | None = None
        self.deaths: list[str] = []

    def get(self) -> FlightServer:
        if self.server is not None and self.server.proc.poll() is not None:
            self.deaths.append(self.death())
            self.server.stop()
            self.server = None
        if self.server is None:
            self.server = start_server(self.registry, *self.args, log_dir=self.log_dir, env=self.env)
        return self.server

    def death(self) -> str:
        s = self.server
        rc = s.proc.poll()
        how = f"killed by signal {signal.Signals(-rc).name}" if rc is not None and rc < 0 else f"exit code {rc}"
        tail = "\n".join(s.stderr().splitlines()[-15:])
        return f"sheaf serve died ({how}); last stderr lines:\n{short(tail, 4000)}"

    def stop(self):
        if self.server is not None:
            self.server.stop(timeout=10)
            self.server = None


def assert_running(server: FlightServer, what: str = ""):
    rc = server.proc.poll()
    if rc is not None:
        how = f"killed by signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        tail = "\n".join(server.stderr().splitlines()[-15:])
        pytest.fail(
            f"the server died{' after ' + what if what else ''} ({how}); last stderr lines:\n{short(tail, 4000)}"
        )


def log_lines(server: FlightServer, mark: int = 0) -> list[str]:
    return server.stderr(mark).splitlines()


# --------------------------------------------------------------------------
# URIs and hostile filter texts
# --------------------------------------------------------------------------


def uri(package: str, path: str = "", rev: str = "", **params) -> str:
    return fl.uri(package, path, rev, **params)


def chain(term: str, op: str, n: int) -> str:
    """`term op term op ... term` with n terms (a flat chain)."""
    return op.join([term] * n)


def nest(prefix: str, inner: str, suffix: str, depth: int) -> str:
    return prefix * depth + inner + suffix * depth


# --------------------------------------------------------------------------
# Flight tickets by hand (proto/sheaf.proto), to send what no server issued
# --------------------------------------------------------------------------


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


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def pb_parse(buf: bytes) -> list[tuple[int, int, object]]:
    """[(field, wire type, value)]: varints as int, length-delimited as bytes."""
    out, i = [], 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        fieldno, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:  # pragma: no cover - not in sheaf.proto
            raise ValueError(f"wire type {wt}")
        out.append((fieldno, wt, v))
    return out


def pb_encode(fields: list[tuple[int, int, object]]) -> bytes:
    out = bytearray()
    for fieldno, wt, v in fields:
        out += _varint(fieldno << 3 | wt)
        if wt == 0:
            out += _varint(v)
        elif wt == 2:
            v = v.encode() if isinstance(v, str) else bytes(v)
            out += _varint(len(v)) + v
        else:
            out += bytes(v)
    return bytes(out)


def pb_replace(fields, fieldno: int, wt: int, *values) -> list:
    """fields without `fieldno`, then `values` of it appended."""
    return [f for f in fields if f[0] != fieldno] + [(fieldno, wt, v) for v in values]


# Ticket fields
T_PACKAGE, T_TOP_HASH, T_PATH, T_QUERY, T_SLICES, T_PARTITION, T_ENTRY_START, T_ENTRY_END = range(1, 9)
# Query fields
Q_COLUMNS, Q_FILTER, Q_LIMIT, Q_SAMPLE, Q_SEED, Q_COMPRESSION, Q_CONTENT = range(1, 8)


def edit_ticket(ticket: bytes, *, query: dict | None = None, **top) -> bytes:
    """A ticket like `ticket` with some fields replaced. `top`: package=,
    top_hash=, path=, slices=[bytes], partition=, entry_start=, entry_end=
    (values: a single value or a list for repeated fields). `query`: the
    Query's fields by the same names (columns=[...], filter=..., limit=...)."""
    names = {
        "package": (T_PACKAGE, 2),
        "top_hash": (T_TOP_HASH, 2),
        "path": (T_PATH, 2),
        "slices": (T_SLICES, 2),
        "partition": (T_PARTITION, 0),
        "entry_start": (T_ENTRY_START, 0),
        "entry_end": (T_ENTRY_END, 0),
    }
    qnames = {
        "columns": (Q_COLUMNS, 2),
        "filter": (Q_FILTER, 2),
        "limit": (Q_LIMIT, 0),
        "sample_threshold": (Q_SAMPLE, 0),
        "seed": (Q_SEED, 0),
        "compression": (Q_COMPRESSION, 2),
        "content": (Q_CONTENT, 0),
    }
    fields = pb_parse(ticket)
    for name, v in top.items():
        no, wt = names[name]
        fields = pb_replace(fields, no, wt, *(v if isinstance(v, list) else [v]))
    if query:
        q = next((f[2] for f in fields if f[0] == T_QUERY), b"")
        qf = pb_parse(q)
        for name, v in query.items():
            no, wt = qnames[name]
            qf = pb_replace(qf, no, wt, *(v if isinstance(v, list) else [v]))
        fields = pb_replace(fields, T_QUERY, 2, pb_encode(qf))
    return pb_encode(fields)


def slice_msg(key: str, start: int, end: int, first_row: int = 0) -> bytes:
    return pb_encode([(1, 2, key), (2, 0, start), (3, 0, end), (4, 0, first_row)])


# --------------------------------------------------------------------------
# Test data
# --------------------------------------------------------------------------

NUMS_ROWS = 20_000
BAD_N_FROM = 15_000  # column n holds numbers before this row, words after
WIDE_ROWS = 6_000
WIDE_LONG_FROM = 4_000  # column w is empty before this row, 100 characters after
SECRET = "TOPSECRET-4f1d2c"


def nums_table() -> pa.Table:
    ids = list(range(NUMS_ROWS))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "s": pa.array([f"x{i}" for i in ids], pa.string()),
            "n": pa.array([str(i) if i < BAD_N_FROM else f"bad{i}" for i in ids], pa.string()),
            "v": pa.array([i * 0.5 for i in ids], pa.float64()),
            "f": pa.array([i % 3 == 0 for i in ids], pa.bool_()),
            "m": pa.array([None if i % 5 == 0 else i for i in ids], pa.int64()),
            "d": pa.array([19000 + i % 400 for i in ids], pa.date32()),
        }
    )


def nums_rows() -> list[dict]:
    """nums_table() as Python rows (d as datetime.date)."""
    t = nums_table()
    return t.to_pylist()


def wide_table() -> pa.Table:
    ids = list(range(WIDE_ROWS))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "w": pa.array(["" if i < WIDE_LONG_FROM else ("abcdefghij" * 10) for i in ids], pa.string()),
        }
    )


def other_table() -> pa.Table:
    return pa.table({"k": pa.array(range(100), pa.int64()), "label": [f"o{i}" for i in range(100)]})


def write_cut_ipc_stream(path: Path):
    """An Arrow IPC stream of 10 batches cut in the middle of the 8th
    batch's body (checked: pyarrow fails reading it)."""
    import pyarrow.ipc as ipc

    table = pa.table({"id": pa.array(range(30_000), pa.int64()), "s": [f"r{i}" for i in range(30_000)]})
    sink = pa.BufferOutputStream()
    offsets = []
    with ipc.new_stream(sink, table.schema) as w:
        for b in table.to_batches(max_chunksize=3000):
            w.write_batch(b)
            offsets.append(sink.tell())
    data = sink.getvalue().to_pybytes()
    cut = (offsets[6] + offsets[7]) // 2
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:cut])
    try:
        ipc.open_stream(data[:cut]).read_all()
    except (pa.ArrowInvalid, OSError):
        return
    raise AssertionError("the cut IPC stream still reads")  # pragma: no cover


def csv_of(table: pa.Table) -> bytes:
    import pyarrow.csv as pacsv

    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


def write_parquet(path: Path, table: pa.Table, row_group_size: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path), row_group_size=row_group_size)


def big_table(rows: int) -> pa.Table:
    import numpy as np

    ids = np.arange(rows, dtype=np.int64)
    return pa.table({"id": ids, "g": ids * 3})


def ids_of(table: pa.Table, column: str = "id") -> list:
    return table.column(column).to_pylist()


def read_all_endpoints(client, fi: flight.FlightInfo, opts=OPTIONS) -> pa.Table:
    parts = [client.do_get(ep.ticket, opts).read_all() for ep in fi.endpoints]
    return pa.concat_tables(parts) if parts else fi.schema.empty_table()


def read_uri(client, u: str, opts=OPTIONS) -> pa.Table:
    fi = client.get_flight_info(flight.FlightDescriptor.for_command(u), opts)
    return read_all_endpoints(client, fi, opts)


def metrics(client) -> dict:
    results = list(client.do_action(flight.Action("metrics", b""), OPTIONS))
    return json.loads(results[0].body.to_pybytes())


def wait_for_exit(proc, timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        return None


class Idle:
    """Clients holding open DoGet streams that they never read. Each opens in
    its own thread (pyarrow's do_get waits for the schema message, which a
    server may send only once a scan permit is free)."""

    def __init__(self, server: FlightServer, tickets: list[flight.Ticket], timeout: float = 120):
        self.server = server
        self.release = threading.Event()
        self.opened = []
        self.errors = []
        self.threads = []
        self._lock = threading.Lock()
        for t in tickets:
            th = threading.Thread(target=self._one, args=(t, timeout), daemon=True)
            th.start()
            self.threads.append(th)

    def _one(self, ticket, timeout):
        client = flight.FlightClient(self.server.url)
        reader = None
        try:
            reader = client.do_get(ticket, options(timeout))
            with self._lock:
                self.opened.append(reader)
            self.release.wait(timeout)
        except Exception as e:  # the server may cut idle streams: that is allowed
            with self._lock:
                self.errors.append(e)
        finally:
            if reader is not None:
                try:
                    reader.cancel()
                except Exception:
                    pass
            try:
                client.close()
            except Exception:
                pass

    def wait_opened(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.opened) + len(self.errors) >= n:
                    break
            time.sleep(0.05)
        return len(self.opened)

    def close(self, join_timeout: float = 30):
        self.release.set()
        for th in self.threads:
            th.join(join_timeout)
