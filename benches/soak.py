#!/usr/bin/env python3
"""Soak: many clients against one `sheaf serve` for minutes, checking that no
request fails, that memory stays bounded and comes back after a spike, and
that file descriptors and threads do not leak (issue 10, "Load").

    python benches/soak.py                      # 64 clients, 10 minutes of load
    python benches/soak.py --quick              # CI: 16 clients, 1 minute, small data
    python benches/soak.py --seconds 90 --clients 32 --data small
    python benches/soak.py --serve-arg=--cache-mib=0   # flags for `sheaf serve`

One server process (SHEAF_BIN, default $CARGO_TARGET_DIR/release/sheaf, copied
first so a rebuild during the run changes nothing) on 127.0.0.1 with its
default flags, over a fresh local registry holding:

- bench/soak/table.parquet: harness.narrow_table (id, x, y, k, name), 8 row
  groups (1M rows; 200k with small data);
- bench/spike/table.parquet: a larger narrow table for the spike (4M rows; 1M);
- soak/w0..w3: written by the clients (DoPut) during the run.

Clients are threads of this process, each with its own connection (pyarrow
FlightClient), picking operations at random (fixed seed per client):

| op | what | checked |
|---|---|---|
| full | GetFlightInfo + every DoGet of the table (all columns or a projection) | rows, sum of id |
| sample | `sample=0.1&seed=S`, S in 0..31 | rows and sum of id, computed here with the README's formula |
| filter | `filter=k < T`, T in 1..1000 (1000 distinct tickets: cache churn) | rows, sum of id |
| partitions | `partitions=4`, every endpoint | 4 endpoints, rows, sum of id |
| action | list_packages, list_revisions, browse, resolve, list_tables | one JSON result; resolve's hash |
| slow | an uncached read taken 3 batches at a time with sleeps of 0.5-2 s, then to the end | rows, sum of id |
| cancel | DoGet of a sample or projection ticket, one batch, then `cancel()` | not an error |
| write | DoPut of 2,000 rows to soak/wN (unpinned, shared by clients), every third read back | result rows, read back |

Cancelled tickets are ones the other ops read and check, so a truncated stream
left in the cache would show. About 2% of operations also drop the connection
and open a new one. Every call has a deadline (120 s), every client loop a bound in operations and in time.

Timeline (D = --minutes or --seconds of load; before each quiet period the
clients finish what they are doing, "draining"): warm-up load (0.2 D); quiet 1
(5 s; 3 s under 2 minutes; clients paused, connections open): the fd and thread
levels "after warm-up"; load (0.3 D); quiet 2 (15 s; 8 s under 2 minutes): RSS
before the spike; spike: --spike-clients concurrent uncached reads of the large
table (all columns, a distinct column order each, nothing else running); quiet
3 (as long as quiet 2): RSS after the spike; load (0.5 D); quiet 4 (connections
still open): fd and thread levels at the end; then every client closes its
connection and the levels are read again against the fresh server's. End levels
are read once fds and threads are back at the reference level, or steady for
12 s (idle threads of tokio's blocking pool exit after 10 s), at most 30 s.
The whole run takes D plus about 1 minute (40 s under 2 minutes).

Every ~0.5 s (0.1 s during the spike) it records the server's RSS (VmRSS), peak (VmHWM), open fds
(/proc/PID/fd, sockets counted apart), threads (/proc/PID/status) and CPU. It
writes benches/results/soak[.quick].json (config, operation counts, every error
with its type, gRPC code and message, the samples), soak[.quick].md (tables)
and soak[.quick].png (RSS over time, with fds and threads); --out moves them.

Exit status 1 if any request failed (a deliberately cancelled read is not a
failure), a check failed, the server died, or the fds or threads at the end
exceed the level after warm-up (connections open) or the fresh server's level
(connections closed) by more than max(16, 25%) fds or max(8, 25%) threads.
Nothing is timed against a goal: latencies and RSS are reported, not asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import argparse  # noqa: E402
import collections  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
from fractions import Fraction  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.flight as flight  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

CALL_TIMEOUT = 120.0
CALL = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
SAMPLE_FRACTION = 0.1
SAMPLE_SEEDS = 32
WRITE_PACKAGES = 4
WRITE_ROWS = 2000
RECONNECT_P = 0.02
SAMPLE_EVERY = 0.5
COLUMNS = ["id", "x", "y", "k", "name"]

SIZES = {
    "small": dict(rows=200_000, spike_rows=1_000_000),
    "full": dict(rows=1_000_000, spike_rows=4_000_000),
}
# Operation weights: each client draws its next operation with these odds.
WEIGHTS = {"full": 3, "sample": 3, "filter": 3, "partitions": 2, "action": 5, "slow": 1, "cancel": 1, "write": 1}
ACTIONS = ["list_packages", "list_revisions", "browse", "resolve", "list_tables"]


# --------------------------------------------------------------------------
# Expected answers, computed here
# --------------------------------------------------------------------------


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Expected:
    """Rows and sum of `id` (= row position) of every read the clients make."""

    def __init__(self, table: pa.Table):
        n = table.num_rows
        self.rows = n
        self.id_sum = n * (n - 1) // 2
        pos = np.arange(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            hp = _splitmix64(pos)
            threshold = np.uint64(int(Fraction(SAMPLE_FRACTION) * (1 << 64)))
            self.sample = {}
            for s in range(SAMPLE_SEEDS):
                keep = _splitmix64(np.uint64(s) ^ hp) < threshold
                self.sample[s] = (int(np.count_nonzero(keep)), int(pos[keep].sum()))
        k = table.column("k").to_numpy()
        ids = np.arange(n, dtype=np.int64)
        counts = np.cumsum(np.bincount(k, minlength=1001))
        sums = np.cumsum(np.bincount(k, weights=ids.astype(np.float64), minlength=1001))
        # k < T for T in 1..1000: the rows with k <= T-1.
        self.filter = {t: (int(counts[t - 1]), int(round(sums[t - 1]))) for t in range(1, 1001)}


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

_CODE_WORDS = {
    "not found": "NOT_FOUND",
    "invalid argument": "INVALID_ARGUMENT",
    "internal": "INTERNAL",
    "unavailable": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
    "timed out": "DEADLINE_EXCEEDED",
    "cancelled": "CANCELLED",
    "unauthenticated": "UNAUTHENTICATED",
    "unauthorized": "PERMISSION_DENIED",
    "aborted": "ABORTED",
    "already exists": "ALREADY_EXISTS",
    "resource exhausted": "RESOURCE_EXHAUSTED",
    "data loss": "DATA_LOSS",
    "permission denied": "PERMISSION_DENIED",
    "unimplemented": "UNIMPLEMENTED",
    "out of range": "OUT_OF_RANGE",
    "failed precondition": "FAILED_PRECONDITION",
    "unknown": "UNKNOWN",
}
_CLASS_CODES = {
    "FlightInternalError": "INTERNAL",
    "FlightTimedOutError": "DEADLINE_EXCEEDED",
    "FlightCancelledError": "CANCELLED",
    "FlightUnauthenticatedError": "UNAUTHENTICATED",
    "FlightUnauthorizedError": "PERMISSION_DENIED",
    "FlightUnavailableError": "UNAVAILABLE",
    "ArrowKeyError": "NOT_FOUND",
    "ArrowInvalid": "INVALID_ARGUMENT",
    "ArrowNotImplementedError": "UNIMPLEMENTED",
}
_RETURNED = re.compile(
    r"(?:Flight|gRPC) returned (.+?) error, with message: (.*?)"
    r"(?:\. Detail: .*?)?(?:\. gRPC client debug context: .*|\. Client context: .*)?$",
    re.S,
)


class Mismatch(Exception):
    """A response that arrived without an error but is wrong."""


def classify(e: BaseException) -> dict:
    text = str(e)
    m = _RETURNED.search(text)
    if isinstance(e, Mismatch):
        code, message = "-", text
    elif m:
        code = _CODE_WORDS.get(m.group(1).strip().lower(), m.group(1).strip().upper().replace(" ", "_"))
        message = m.group(2).strip()
    else:
        code, message = _CLASS_CODES.get(type(e).__name__, "-"), text
    return {"type": type(e).__name__, "code": code, "message": message[:2000], "raw": text[:4000]}


def norm(message: str) -> str:
    """A message with hashes, numbers and addresses folded, to group errors."""
    s = re.sub(r"[0-9a-f]{12,64}", "<hash>", message)
    s = re.sub(r"\d+", "N", s)
    return s[:300]


# --------------------------------------------------------------------------
# Shared state
# --------------------------------------------------------------------------


class State:
    def __init__(self, load_seconds: float):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.running = False  # clients may start operations
        self.inflight = 0
        self.stop = threading.Event()  # clients close their connection and exit
        self.phase = "start"
        self.t0 = time.monotonic()
        self.phases: list[dict] = []
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.bytes: collections.Counter = collections.Counter()
        self.rows: collections.Counter = collections.Counter()
        self.errors: list[dict] = []
        self.ops_total = 0
        self.capped = 0
        self.hard_deadline = time.monotonic() + load_seconds + 900

    def now(self) -> float:
        return time.monotonic() - self.t0

    def begin(self, name: str) -> None:
        with self.lock:
            if self.phases and self.phases[-1]["end"] is None:
                self.phases[-1]["end"] = round(self.now(), 2)
            self.phases.append({"name": name, "start": round(self.now(), 2), "end": None})
            self.phase = name
        h.progress(f"phase: {name}")

    def close_phase(self) -> None:
        with self.lock:
            if self.phases and self.phases[-1]["end"] is None:
                self.phases[-1]["end"] = round(self.now(), 2)

    def enter(self) -> bool:
        """A client asks to start an operation: True when load is on."""
        with self.cond:
            if not self.running or self.stop.is_set():
                return False
            self.inflight += 1
            return True

    def leave(self) -> None:
        with self.cond:
            self.inflight -= 1
            self.cond.notify_all()

    def resume(self) -> None:
        with self.cond:
            self.running = True

    def pause(self, timeout: float = 180) -> int:
        """Stops new operations and waits for those in flight; returns how many
        were still running at the timeout (0 normally)."""
        with self.cond:
            self.running = False
            self.cond.wait_for(lambda: self.inflight == 0, timeout=timeout)
            return self.inflight

    def ok(self, op: str, seconds: float, rows: int = 0, nbytes: int = 0, outcome: str = "ok") -> None:
        with self.lock:
            self.counts[op][outcome] += 1
            self.latency[op].append(seconds)
            self.rows[op] += rows
            self.bytes[op] += nbytes
            self.ops_total += 1

    def error(self, op: str, client: int, e: BaseException, what: str) -> None:
        err = {
            "t": round(self.now(), 2),
            "phase": self.phase,
            "op": op,
            "client": client,
            "request": what[:500],
            **classify(e),
        }
        with self.lock:
            self.counts[op]["error"] += 1
            self.ops_total += 1
            self.errors.append(err)
        if len(self.errors) <= 20:
            h.progress(f"ERROR {op} (client {client}): {err['type']} {err['code']}: {err['message'][:300]}")


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def quote(v) -> str:
    return urllib.parse.quote(str(v), safe="")


def get_info(client: flight.FlightClient, uri: str) -> flight.FlightInfo:
    return client.get_flight_info(flight.FlightDescriptor.for_command(uri), CALL)


def drain(reader, rows: int = 0, id_sum: int = 0, nbytes: int = 0) -> tuple[int, int, int]:
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return rows, id_sum, nbytes
        b = chunk.data
        if b is None:
            continue
        rows += b.num_rows
        nbytes += b.nbytes
        if b.num_rows and "id" in b.schema.names:
            id_sum += pc.sum(b.column("id")).as_py() or 0


def read_uri(client: flight.FlightClient, uri: str, endpoints: int | None = None) -> tuple[int, int, int]:
    fi = get_info(client, uri)
    if endpoints is not None and len(fi.endpoints) != endpoints:
        raise Mismatch(f"{uri}: {len(fi.endpoints)} endpoints, expected {endpoints}")
    rows = id_sum = nbytes = 0
    for ep in fi.endpoints:
        rows, id_sum, nbytes = drain(client.do_get(ep.ticket, CALL), rows, id_sum, nbytes)
    return rows, id_sum, nbytes


def check(uri: str, got: tuple[int, int, int], want: tuple[int, int]) -> None:
    if (got[0], got[1]) != want:
        raise Mismatch(f"{uri}: {got[0]} rows with sum(id) {got[1]}, expected {want[0]} rows with sum(id) {want[1]}")


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------


class Client(threading.Thread):
    def __init__(self, cid: int, url: str, st: State, exp: Expected, top: str, max_ops: int, seed: int):
        super().__init__(name=f"soak-client-{cid}", daemon=True)
        self.cid = cid
        self.url = url
        self.st = st
        self.exp = exp
        self.top = top
        self.max_ops = max_ops
        self.rng = random.Random(seed * 1000 + cid)
        self.conn: flight.FlightClient | None = None
        self.writes = 0
        self.nonce = 0
        self.ops = 0
        self.crashed: str | None = None

    def connect(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = flight.FlightClient(self.url)

    def run(self) -> None:
        try:
            self.connect()
            ops, weights = zip(*WEIGHTS.items(), strict=False)
            while not self.st.stop.is_set() and time.monotonic() < self.st.hard_deadline:
                if self.ops >= self.max_ops:
                    with self.st.lock:
                        self.st.capped += 1
                    break
                if not self.st.enter():
                    time.sleep(0.05)
                    continue
                try:
                    op = self.rng.choices(ops, weights)[0]
                    self.one(op)
                    self.ops += 1
                    if self.rng.random() < RECONNECT_P:
                        t = time.monotonic()
                        self.connect()
                        self.st.ok("reconnect", time.monotonic() - t)
                finally:
                    self.st.leave()
        except BaseException:  # noqa: BLE001 - a bug of this script; reported
            self.crashed = traceback.format_exc()
        finally:
            if self.conn is not None:
                try:
                    self.conn.close()
                except Exception:
                    pass
                self.conn = None

    def one(self, op: str) -> None:
        what = op
        self._what = op
        t = time.monotonic()
        try:
            what, rows, nbytes, outcome = getattr(self, "op_" + op)()
        except Exception as e:  # noqa: BLE001 - every failure is recorded
            self.st.error(op, self.cid, e, self._what)
            return
        self.st.ok(op, time.monotonic() - t, rows, nbytes, outcome)

    def _uri(self, params: str = "") -> str:
        u = "sheaf://bench/soak/table.parquet"
        self._what = u + (("?" + params) if params else "")
        return self._what

    def op_full(self):
        cols = self.rng.choice([None, "id,x,name", "id,k"])
        uri = self._uri(f"columns={cols}" if cols else "")
        got = read_uri(self.conn, uri)
        check(uri, got, (self.exp.rows, self.exp.id_sum))
        return uri, got[0], got[2], "ok"

    def op_sample(self):
        s = self.rng.randrange(SAMPLE_SEEDS)
        uri = self._uri(f"columns=id,k,name&sample={SAMPLE_FRACTION}&seed={s}")
        got = read_uri(self.conn, uri)
        check(uri, got, self.exp.sample[s])
        return uri, got[0], got[2], "ok"

    def op_filter(self):
        t = self.rng.randint(1, 1000)
        uri = self._uri("columns=id,x,k&filter=" + quote(f"k < {t}"))
        got = read_uri(self.conn, uri)
        check(uri, got, self.exp.filter[t])
        return uri, got[0], got[2], "ok"

    def op_partitions(self):
        uri = self._uri("partitions=4")
        got = read_uri(self.conn, uri, endpoints=4)
        check(uri, got, (self.exp.rows, self.exp.id_sum))
        return uri, got[0], got[2], "ok"

    def op_action(self):
        name = self.rng.choice(ACTIONS)
        pkg = self.rng.choice(["bench/soak", f"soak/w{self.rng.randrange(WRITE_PACKAGES)}"])
        body = {
            "list_packages": {},
            "list_revisions": {"package": pkg},
            "browse": {"ref": pkg},
            "resolve": {"ref": "bench/soak"},
            "list_tables": {"ref": pkg},
        }[name]
        self._what = f"DoAction {name} {json.dumps(body)}"
        results = list(self.conn.do_action(flight.Action(name, json.dumps(body).encode()), CALL))
        if len(results) != 1:
            raise Mismatch(f"{self._what}: {len(results)} results, expected 1")
        value = json.loads(results[0].body.to_pybytes().decode("utf-8"))
        if name == "resolve" and value.get("top_hash") != self.top:
            raise Mismatch(f"{self._what}: top_hash {value.get('top_hash')}, expected {self.top}")
        return self._what, 0, results[0].body.size, "ok"

    def op_slow(self):
        # A distinct always-true filter: never cached, so the stream reads storage while its reader sleeps.
        self.nonce += 1
        uri = self._uri("columns=id,x&filter=" + quote(f"id <> -{self.cid * 1_000_000 + self.nonce}"))
        fi = get_info(self.conn, uri)
        rows = id_sum = nbytes = 0
        for i, ep in enumerate(fi.endpoints):
            reader = self.conn.do_get(ep.ticket, CALL)
            if i == 0:
                for _ in range(3):
                    try:
                        b = reader.read_chunk().data
                    except StopIteration:
                        break
                    rows += b.num_rows
                    nbytes += b.nbytes
                    id_sum += pc.sum(b.column("id")).as_py() or 0
                    time.sleep(self.rng.uniform(0.5, 2.0))
            rows, id_sum, nbytes = drain(reader, rows, id_sum, nbytes)
        check(uri, (rows, id_sum, nbytes), (self.exp.rows, self.exp.id_sum))
        return uri, rows, nbytes, "ok"

    def op_cancel(self):
        if self.rng.random() < 0.5:
            uri = self._uri(f"columns=id,k,name&sample={SAMPLE_FRACTION}&seed={self.rng.randrange(SAMPLE_SEEDS)}")
        else:
            uri = self._uri("columns=id,x,name")
        fi = get_info(self.conn, uri)
        reader = self.conn.do_get(fi.endpoints[0].ticket, CALL)
        try:
            b = reader.read_chunk().data
            rows, nbytes = b.num_rows, b.nbytes
        except StopIteration:
            rows, nbytes = 0, 0
        reader.cancel()  # deliberate: whatever the stream does next is not an error
        return uri, rows, nbytes, "cancelled"

    def op_write(self):
        self.writes += 1
        pkg = f"soak/w{self.cid % WRITE_PACKAGES}"
        path = f"c{self.cid:02d}/part-{self.writes % 4}.parquet"
        target = f"sheaf://{pkg}/{path}?message=" + quote(f"soak client {self.cid} write {self.writes}")
        self._what = f"DoPut {target}"
        base = self.cid * 1_000_000_000 + self.writes * 10_000
        ids = np.arange(base, base + WRITE_ROWS, dtype=np.int64)
        table = pa.table(
            {"id": ids, "v": pa.array(ids * 0.5), "s": pa.array([f"c{self.cid}-{i}" for i in range(WRITE_ROWS)])}
        )
        writer, reader = self.conn.do_put(flight.FlightDescriptor.for_command(target), table.schema, CALL)
        try:
            writer.write_table(table, max_chunksize=500)
            writer.done_writing()
            buf = reader.read()
        finally:
            writer.close()
        if buf is None:
            raise Mismatch(f"{self._what}: no PutResult")
        res = json.loads(buf.to_pybytes())
        if res.get("rows") != WRITE_ROWS or res.get("package") != pkg:
            raise Mismatch(f"{self._what}: result {res}")
        if self.writes % 3 == 0:
            got = read_uri(self.conn, res["uri"])
            want = (WRITE_ROWS, int(ids.sum()))
            check(res["uri"], got, want)
        return self._what, WRITE_ROWS, table.nbytes, "ok"


# --------------------------------------------------------------------------
# The server: /proc readings and its log
# --------------------------------------------------------------------------


def proc_levels(pid: int) -> dict | None:
    out = {}
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(val.split()[0]) * 1024
        elif key == "Threads":
            out["threads"] = int(val.split()[0])
    fds = sockets = 0
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            fds += 1
            try:
                if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    sockets += 1
            except OSError:
                pass
    except OSError:
        return None
    out["fds"] = fds
    out["sockets"] = sockets
    out["cpu"] = h.proc_cpu_seconds(pid)
    return out


class Sampler(threading.Thread):
    def __init__(self, srv: h.Server, st: State, until: float):
        super().__init__(name="soak-sampler", daemon=True)
        self.srv = srv
        self.st = st
        self.until = until
        self.samples: list[dict] = []
        self.halt = threading.Event()
        self.server_exit: int | None = None

    def run(self) -> None:
        while not self.halt.is_set() and time.monotonic() < self.until:
            lv = proc_levels(self.srv.pid)
            code = self.srv.proc.poll()
            if lv is None or code is not None:
                self.server_exit = code if code is not None else self.srv.proc.wait()
                h.progress(f"server exited with {self.server_exit}")
                self.st.stop.set()
                return
            with self.st.lock:
                lv.update(
                    t=round(self.st.now(), 2),
                    phase=self.st.phase,
                    ops=self.st.ops_total,
                    errors=len(self.st.errors),
                    inflight=self.st.inflight,
                )
            self.samples.append(lv)
            # Faster during the spike, which can be short.
            self.halt.wait(0.1 if lv["phase"] == "spike" else SAMPLE_EVERY)

    def window(self, since: float, until: float | None = None) -> list[dict]:
        return [s for s in self.samples if s["t"] >= since and (until is None or s["t"] <= until)]


LOG_LINE = re.compile(r"^\S+\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s+(.*)$")


def log_summary(path: Path) -> dict:
    """Counts of the server's log lines by level and the distinct WARN/ERROR
    messages (fields with numbers and hashes folded), plus panics."""
    levels: collections.Counter = collections.Counter()
    distinct: dict[str, dict] = {}
    panics: list[str] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        m = LOG_LINE.match(line.strip())
        if "panicked" in line:
            panics.append(line[:2000])
        if not m:
            continue
        level, rest = m.groups()
        levels[level] += 1
        if level in ("WARN", "ERROR"):
            key = level + " " + norm(re.sub(r"elapsed_ms=\S+", "", rest))
            d = distinct.setdefault(key, {"level": level, "count": 0, "example": rest[:2000]})
            d["count"] += 1
    return {
        "levels": dict(levels),
        "warn_error": sorted(distinct.values(), key=lambda d: -d["count"])[:40],
        "panics": panics[:20],
        "lines": len(lines),
    }


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def median_of(samples: list[dict], key: str) -> float | None:
    vals = [s[key] for s in samples if key in s]
    return statistics.median(vals) if vals else None


def sleep_until(t_end: float, st: State) -> None:
    while not st.stop.is_set():
        left = t_end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


def quiet(st: State, sampler: Sampler, name: str, seconds: float) -> list[dict]:
    st.begin("draining")  # no new operations; those running finish (a slow read takes seconds)
    left = st.pause()
    if left:
        h.progress(f"{left} operation(s) still running after 180 s; starting {name} anyway")
    st.begin(name)
    t_from = st.now()
    sleep_until(time.monotonic() + seconds, st)
    return sampler.window(t_from)


def spike(st: State, url: str, n: int, rows: int) -> dict:
    """`n` concurrent reads of the large table, each a distinct column order
    (so none is answered from the cache)."""
    orders = list(itertools.permutations(COLUMNS))
    random.Random(7).shuffle(orders)
    done = {"ok": 0, "error": 0, "seconds": []}
    lock = threading.Lock()

    def reader(i: int) -> None:
        uri = f"sheaf://bench/spike/table.parquet?columns={','.join(orders[i % len(orders)])}"
        t = time.monotonic()
        conn = flight.FlightClient(url)
        try:
            got = read_uri(conn, uri)
            if got[0] != rows:
                raise Mismatch(f"{uri}: {got[0]} rows, expected {rows}")
            st.ok("spike", time.monotonic() - t, got[0], got[2])
            with lock:
                done["ok"] += 1
                done["seconds"].append(time.monotonic() - t)
        except Exception as e:  # noqa: BLE001
            st.error("spike", -1 - i, e, uri)
            with lock:
                done["error"] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + CALL_TIMEOUT + 60
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    hung = sum(t.is_alive() for t in threads)
    if hung:
        st.error(
            "spike", -1, RuntimeError(f"{hung} spike readers still running after {CALL_TIMEOUT + 60:.0f} s"), "spike"
        )
    return done


def settle(pid: int, want_fds: float, want_threads: float, seconds: float) -> tuple[dict | None, float]:
    """Waits (at most `seconds`) for the server's fds and threads to drop to
    the reference levels (idle threads exit after a while, closed connections
    are torn down), or until they have not changed for 12 s; returns the last
    reading and the time taken. The checks then allow a margin above the
    reference."""
    t = time.monotonic()
    lv = proc_levels(pid)
    last, since = None, t
    while lv is not None and time.monotonic() - t < seconds:
        if lv["fds"] <= want_fds and lv["threads"] <= want_threads:
            break
        if (lv["fds"], lv["threads"]) != last:
            last, since = (lv["fds"], lv["threads"]), time.monotonic()
        elif time.monotonic() - since >= 12:
            break  # steady for longer than an idle thread lives: this is the level
        time.sleep(SAMPLE_EVERY)
        lv = proc_levels(pid)
    return lv, time.monotonic() - t


def margin_fds(level: float) -> float:
    return max(16, 0.25 * level)


def margin_threads(level: float) -> float:
    return max(8, 0.25 * level)


def build_data(scratch: Path, cfg: dict) -> tuple[Path, Expected, int]:
    table = h.narrow_table(cfg["rows"], seed=11)
    src = scratch / "src" / "soak"
    src.mkdir(parents=True)
    pq.write_table(table, src / "table.parquet", row_group_size=-(-cfg["rows"] // 8), write_page_index=True)
    exp = Expected(table)
    spike_path = h.dataset("narrow", cfg["spike_rows"])
    return src, exp, pq.ParquetFile(spike_path).metadata.num_rows


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="CI: 16 clients, 1 minute, small data, 8 spike readers; writes soak.quick.*",
    )
    ap.add_argument("--clients", type=int, help="concurrent clients (default 64; 16 with --quick)")
    ap.add_argument("--minutes", type=float, help="minutes of load (default 10; 1 with --quick)")
    ap.add_argument("--seconds", type=float, help="seconds of load (overrides --minutes; for quick local runs)")
    ap.add_argument("--data", choices=sorted(SIZES), help="table sizes (default full; small with --quick)")
    ap.add_argument(
        "--spike-clients", type=int, help="concurrent large reads in the spike (default 32; 8 with --quick)"
    )
    ap.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra flag for `sheaf serve`, repeatable (e.g. --serve-arg=--cache-mib=0)",
    )
    ap.add_argument("--seed", type=int, default=1, help="seed of the clients' choices")
    ap.add_argument(
        "--out",
        help="markdown file to write (default benches/results/soak[.quick].md; "
        ".json and .png with the same stem are written next to it)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (registry, server log)")
    o = ap.parse_args()
    o.clients = o.clients or (16 if o.quick else 64)
    o.load_seconds = o.seconds if o.seconds else 60 * (o.minutes if o.minutes else (1 if o.quick else 10))
    o.data = o.data or ("small" if o.quick else "full")
    o.spike_clients = o.spike_clients if o.spike_clients is not None else (8 if o.quick else 32)
    if o.clients < 1 or o.load_seconds <= 0:
        ap.error("--clients and the duration must be positive")
    return o


def main() -> int:
    o = parse_args()
    h.check_sheaf_binary()
    cfg = SIZES[o.data]
    D = o.load_seconds
    q_short = 3.0 if D < 120 else 5.0
    q_after = 8.0 if D < 120 else 15.0
    scratch = h.scratch_dir("soak")
    # Run a private copy of the binary: a rebuild during the run cannot swap it.
    facts = h.binary_facts()
    if not os.environ.get("SHEAF_BENCH_BIN_ORIGIN"):
        os.environ["SHEAF_BENCH_BIN_ORIGIN"] = f"{facts['sheaf_bin']}|{facts['sheaf_bin_mtime']}"
    (scratch / "bin").mkdir()
    shutil.copy2(h.sheaf_bin(), scratch / "bin" / "sheaf")
    os.environ["SHEAF_BIN"] = str(scratch / "bin" / "sheaf")
    md_path = Path(o.out) if o.out else h.RESULTS / f"soak{'.quick' if o.quick else ''}.md"
    failures: list[str] = []
    srv = None
    try:
        h.progress(
            f"soak: {o.clients} clients, {D:.0f} s of load, {o.data} data, spike of {o.spike_clients}; "
            f"scratch {scratch}"
        )
        src, exp, spike_rows = build_data(scratch, cfg)
        registry = scratch / "registry"
        top = h.push(registry, "bench/soak", src)
        h.push(
            registry,
            "bench/spike",
            h.package_dir(scratch, "spike", {"table.parquet": h.dataset("narrow", cfg["spike_rows"])}),
        )
        srv = h.start_sheaf(registry, scratch / "logs", *o.serve_arg)
        h.progress(f"server pid {srv.pid} at {srv.url}")
        # The write packages exist before the clients list them.
        seed_table = pa.table({"id": pa.array([0], pa.int64())})
        for w in range(WRITE_PACKAGES):
            wr, rd = srv.client.do_put(
                flight.FlightDescriptor.for_command(f"sheaf://soak/w{w}/seed.parquet"), seed_table.schema, CALL
            )
            wr.write_table(seed_table)
            wr.done_writing()
            rd.read()
            wr.close()
        srv.client.close()  # the harness's own connection: the fresh level below is without clients
        srv._clients.clear()
        time.sleep(1.0)
        fresh = proc_levels(srv.pid)
        metrics_conn = flight.FlightClient(srv.url)
        m0 = h.sheaf_metrics(metrics_conn)
        metrics_conn.close()

        st = State(D)
        sampler = Sampler(srv, st, until=time.monotonic() + D + 1200)
        st.begin("fresh server")
        sampler.start()
        max_ops = int(D * 25) + 100
        clients = [Client(i, srv.url, st, exp, top, max_ops, o.seed) for i in range(o.clients)]

        # Warm-up load.
        t_load = time.monotonic()
        st.begin("warm-up")
        st.resume()
        for c in clients:
            c.start()
        sleep_until(t_load + 0.2 * D, st)
        warm = quiet(st, sampler, "quiet 1 (after warm-up)", q_short)
        # Load.
        st.begin("load")
        st.resume()
        sleep_until(time.monotonic() + 0.3 * D, st)
        before = quiet(st, sampler, "quiet 2 (before spike)", q_after)
        # Spike, then quiet.
        st.begin("spike")
        t_spike = st.now()
        spike_done = {}
        if not st.stop.is_set():
            h.progress(f"spike: {o.spike_clients} concurrent reads of {spike_rows:,} rows")
            spike_done = spike(st, srv.url, o.spike_clients, spike_rows)
        spike_samples = sampler.window(t_spike)
        after = quiet(st, sampler, "quiet 3 (after spike)", q_after)
        # Load to the end.
        st.begin("load (after spike)")
        st.resume()
        sleep_until(time.monotonic() + 0.5 * D, st)
        quiet(st, sampler, "quiet 4 (end, connections open)", q_short)
        # Idle threads (tokio's blocking pool keeps them 10 s) may take a while to exit.
        end_open, end_settle_s = settle(srv.pid, median_of(warm, "fds") or 0, median_of(warm, "threads") or 0, 30)
        # Clients close their connections and exit.
        st.begin("closing")
        st.stop.set()
        join_by = time.monotonic() + CALL_TIMEOUT + 30
        for c in clients:
            c.join(timeout=max(0.1, join_by - time.monotonic()))
        hung = [c.cid for c in clients if c.is_alive()]
        for c in clients:
            if c.crashed:
                failures.append(f"client {c.cid} crashed (a bug of soak.py): {c.crashed.strip().splitlines()[-1]}")
        if hung:
            failures.append(f"clients {hung} did not stop")
        st.begin("closed")
        closed, settle_s = settle(srv.pid, fresh["fds"], fresh["threads"], 30)
        time.sleep(1.0)
        st.close_phase()
        sampler.halt.set()
        sampler.join(timeout=5)
        server_died = sampler.server_exit is not None
        if server_died:
            failures.append(f"the server exited during the run (status {sampler.server_exit})")
        metrics_conn = None if server_died else flight.FlightClient(srv.url)
        m1 = h.sheaf_metrics(metrics_conn) if metrics_conn else None
        if metrics_conn:
            metrics_conn.close()
        # SIGTERM, timed (reported, not asserted).
        t_term = time.monotonic()
        shutdown = {"status": None, "seconds": None}
        if srv.proc.poll() is None:
            srv.proc.terminate()
            try:
                shutdown["status"] = srv.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                srv.kill()
                shutdown["status"] = "killed after 30 s"
            shutdown["seconds"] = round(time.monotonic() - t_term, 2)
        logs = log_summary(srv.err_path)
        hwm_final = max((s.get("VmHWM", 0) for s in sampler.samples), default=0)

        # ---------------------------------------------------------------- verdict
        warm_lv = {k: median_of(warm, k) for k in ("fds", "sockets", "threads", "VmRSS")}
        end_lv = {k: (end_open or {}).get(k) for k in ("fds", "sockets", "threads", "VmRSS")}
        leak = {
            "fresh": {k: fresh[k] for k in ("fds", "sockets", "threads", "VmRSS")},
            "after_warmup_open": warm_lv,
            "end_open": end_lv,
            "end_closed": {k: closed[k] for k in ("fds", "sockets", "threads", "VmRSS")} if closed else None,
            "settle_seconds": {"end_open": round(end_settle_s, 1), "end_closed": round(settle_s, 1)},
            "max": {k: max((s[k] for s in sampler.samples), default=None) for k in ("fds", "sockets", "threads")},
        }
        checks = []
        if warm_lv["fds"] is not None and end_lv["fds"] is not None:
            checks.append(
                (
                    "fds at the end vs after warm-up (connections open)",
                    end_lv["fds"],
                    warm_lv["fds"],
                    margin_fds(warm_lv["fds"]),
                )
            )
            checks.append(
                (
                    "threads at the end vs after warm-up (connections open)",
                    end_lv["threads"],
                    warm_lv["threads"],
                    margin_threads(warm_lv["threads"]),
                )
            )
        if closed:
            checks.append(
                ("fds after every client closed vs fresh server", closed["fds"], fresh["fds"], margin_fds(fresh["fds"]))
            )
            checks.append(
                (
                    "threads after every client closed vs fresh server",
                    closed["threads"],
                    fresh["threads"],
                    margin_threads(fresh["threads"]),
                )
            )
        leak["checks"] = [
            {"what": w, "got": g, "level": lvl, "limit": lvl + mg, "ok": g <= lvl + mg} for w, g, lvl, mg in checks
        ]
        for c in leak["checks"]:
            if not c["ok"]:
                failures.append(f"leak: {c['what']}: {c['got']:.0f} > {c['level']:.0f} + margin = {c['limit']:.0f}")
        unexpected = [e for e in st.errors]
        if unexpected:
            by_code = collections.Counter(e["code"] for e in unexpected)
            failures.append(
                f"{len(unexpected)} request(s) failed: " + ", ".join(f"{k} {v}" for k, v in by_code.most_common())
            )
        if logs["panics"]:
            failures.append(f"the server log shows {len(logs['panics'])} panic(s)")

        # The second halves of the quiet periods around the spike (the server trims freed memory when idle).
        rss_before = median_of(before[len(before) // 2 :] or before, "VmRSS")
        rss_peak = max((s["VmRSS"] for s in spike_samples + after[:2]), default=None)
        # A peak between two samples still shows in VmHWM, when it rose during the spike.
        hwm_before = max((s["VmHWM"] for s in before), default=0)
        hwm_after = max((s["VmHWM"] for s in after[:2]), default=0)
        if rss_peak is not None and hwm_after > hwm_before:
            rss_peak = max(rss_peak, hwm_after)
        tail = after[len(after) // 2 :] or after
        rss_after = median_of(tail, "VmRSS")
        spike_info = {
            "clients": o.spike_clients,
            "rows_each": spike_rows,
            "ok": spike_done.get("ok"),
            "errors": spike_done.get("error"),
            "seconds": round(max(spike_done.get("seconds") or [0]), 2),
            "rss_before": rss_before,
            "rss_peak": rss_peak,
            "rss_after": rss_after,
            "rss_end": end_lv["VmRSS"],
            "vmhwm": hwm_final,
            "retained_share": (
                (rss_after - rss_before) / (rss_peak - rss_before)
                if rss_before and rss_peak and rss_after and rss_peak > rss_before
                else None
            ),
            "quiet_after_seconds": q_after,
        }
        load_rss = {
            name: median_of([s for s in sampler.samples if s["phase"] == name], "VmRSS")
            for name in ("warm-up", "load", "load (after spike)")
        }
        result = {
            "scenario": "soak",
            "quick": o.quick,
            "machine": h.machine(),
            "binary": h.binary_facts(),
            "config": {
                "clients": o.clients,
                "load_seconds": D,
                "data": o.data,
                "rows": cfg["rows"],
                "spike_rows": spike_rows,
                "spike_clients": o.spike_clients,
                "serve_args": o.serve_arg,
                "weights": WEIGHTS,
                "reconnect_p": RECONNECT_P,
                "call_timeout": CALL_TIMEOUT,
                "sample_every": SAMPLE_EVERY,
                "seed": o.seed,
                "max_ops_per_client": max_ops,
                "server_cmd": srv.cmd,
            },
            "ok": not failures,
            "failures": failures,
            "ops": {op: dict(c) for op, c in sorted(st.counts.items())},
            "latency": {op: lat_stats(v) for op, v in sorted(st.latency.items())},
            "rows": dict(st.rows),
            "bytes": dict(st.bytes),
            "clients_capped": st.capped,
            "phases": st.phases,
            "spike": spike_info,
            "leak": leak,
            "rss_under_load": load_rss,
            "metrics": h.metrics_delta(m0, m1),
            "shutdown": shutdown,
            "server_log": logs,
            "errors": st.errors[:5000],
            "errors_total": len(st.errors),
            "error_groups": group_errors(st.errors),
            "samples": sampler.samples,
        }
        write_outputs(md_path, result)
    finally:
        if srv is not None:
            srv.stop()
        if not o.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            h.progress(f"kept {scratch}")
    if failures:
        h.progress("FAILED: " + "; ".join(failures))
        return 1
    h.progress("soak passed: no failed request, no fd or thread growth")
    return 0


def lat_stats(v: list[float]) -> dict:
    if not v:
        return {}
    s = sorted(v)
    return {"n": len(s), "p50": s[len(s) // 2], "p95": s[min(len(s) - 1, int(len(s) * 0.95))], "max": s[-1]}


def group_errors(errors: list[dict]) -> list[dict]:
    groups: dict[tuple, dict] = {}
    for e in errors:
        key = (e["op"], e["type"], e["code"], norm(e["message"]))
        g = groups.setdefault(
            key,
            {
                "op": e["op"],
                "type": e["type"],
                "code": e["code"],
                "count": 0,
                "first_t": e["t"],
                "message": e["message"],
                "request": e["request"],
            },
        )
        g["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["count"])


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def mb(n) -> str:
    return "n/a" if n is None else f"{n / 1e6:,.0f} MB"


def num(n) -> str:
    return "n/a" if n is None else f"{n:,.0f}"


def write_outputs(md_path: Path, r: dict) -> None:
    md_path.parent.mkdir(parents=True, exist_ok=True)
    js = md_path.with_suffix(".json")
    png = md_path.with_suffix(".png")
    plot_note = plot(png, r)
    c, m, sp, lk = r["config"], r["machine"], r["spike"], r["leak"]
    lines = [
        f"# Soak: {c['clients']} clients, {c['load_seconds'] / 60:g} min of load ({'quick' if r['quick'] else 'full'})",
        "",
        f"{m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, load average {m['loadavg']} "
        f"at the end; pyarrow {m['pyarrow']}; sheaf {r['binary']['sheaf_bin']} ({r['binary']['sheaf_bin_mtime']}, "
        f"commit {r['binary']['commit']}). `benches/soak.py`; nothing here is a timing assertion.",
        "",
        f"**Result: {'passed' if r['ok'] else 'FAILED'}**" + ("" if r["ok"] else ": " + "; ".join(r["failures"])),
        "",
        f"Table: {c['rows']:,} rows (bench/soak, 8 row groups); spike table {c['spike_rows']:,} rows. "
        f"Server flags: {' '.join(c['serve_args']) or 'defaults'}. Every call's deadline {c['call_timeout']:.0f} s.",
        "",
        "## Operations",
        "",
    ]
    rows = []
    for op, cnt in r["ops"].items():
        lat = r["latency"].get(op, {})
        rows.append(
            [
                op,
                num(cnt.get("ok", 0)),
                num(cnt.get("cancelled", 0)),
                num(cnt.get("error", 0)),
                f"{lat['p50'] * 1000:.0f}" if lat else "-",
                f"{lat['p95'] * 1000:.0f}" if lat else "-",
                f"{lat['max'] * 1000:.0f}" if lat else "-",
                num(r["rows"].get(op, 0)),
                mb(r["bytes"].get(op, 0)),
            ]
        )
    tot = {k: sum(v.get(k, 0) for v in r["ops"].values()) for k in ("ok", "cancelled", "error")}
    rows.append(["**total**", num(tot["ok"]), num(tot["cancelled"]), num(tot["error"]), "", "", "", "", ""])
    lines += h.md_table(
        ["op", "ok", "cancelled (deliberate)", "errors", "p50 ms", "p95 ms", "max ms", "rows", "Arrow bytes received"],
        rows,
    )
    if r["metrics"]:
        mt = r["metrics"]
        lines += [
            "",
            f"Server counters over the run (`metrics`): {num(mt.get('do_get'))} DoGet "
            f"({num(mt.get('do_get_cached'))} from the cache), {num(mt.get('do_put'))} DoPut commits, "
            f"{mb(mt.get('bytes_sent'))} sent, {mb(mt.get('bytes_read'))} read from storage, "
            f"{num(mt.get('rows_scanned'))} rows scanned.",
        ]
    if r["clients_capped"]:
        lines += [
            "",
            f"{r['clients_capped']} client(s) stopped at their operation cap "
            f"({c['max_ops_per_client']:,}) before the end.",
        ]
    lines += ["", "## Errors", ""]
    if r["error_groups"]:
        lines += h.md_table(
            ["op", "count", "type", "code", "first at s", "message (first of the group)", "request"],
            [
                [
                    g["op"],
                    g["count"],
                    g["type"],
                    g["code"],
                    g["first_t"],
                    "`" + g["message"][:600].replace("|", "\\|").replace("\n", " ") + "`",
                    "`" + g["request"][:200].replace("|", "\\|") + "`",
                ]
                for g in r["error_groups"][:30]
            ],
        )
    else:
        lines += ["None."]
    lines += [
        "",
        "## Memory around the spike",
        "",
        f"{sp['clients']} concurrent uncached reads of {sp['rows_each']:,} rows (all columns, a distinct column "
        f"order each) with nothing else running, between two quiet periods; {sp['ok']} ok, {sp['errors']} "
        f"failed, the slowest took {sp['seconds']} s. RSS before and after: medians of the second halves "
        f"of quiet 2 and quiet 3 ({sp['quiet_after_seconds']:.0f} s each, clients paused); peak: the highest "
        "sample (every 0.1 s) or VmHWM if it rose during the spike.",
        "",
        *h.md_table(
            [
                "RSS before",
                "RSS at peak",
                "RSS after",
                "share of the spike kept",
                "RSS at the end (quiet 4)",
                "VmHWM (whole run)",
            ],
            [
                [
                    mb(sp["rss_before"]),
                    mb(sp["rss_peak"]),
                    mb(sp["rss_after"]),
                    f"{sp['retained_share']:.0%}" if sp["retained_share"] is not None else "n/a",
                    mb(sp["rss_end"]),
                    mb(sp["vmhwm"]),
                ]
            ],
        ),
        "",
        "RSS under load (median): " + ", ".join(f"{k} {mb(v)}" for k, v in r["rss_under_load"].items()) + ".",
    ]
    lines += ["", "## File descriptors and threads", ""]
    lv_rows = []
    for label, key in (
        ("fresh server (no client)", "fresh"),
        ("after warm-up, clients paused (quiet 1)", "after_warmup_open"),
        ("end, clients paused (quiet 4)", "end_open"),
        ("end, every client closed", "end_closed"),
    ):
        v = lk.get(key) or {}
        lv_rows.append([label, num(v.get("fds")), num(v.get("sockets")), num(v.get("threads")), mb(v.get("VmRSS"))])
    lv_rows.append(["highest sample", num(lk["max"]["fds"]), num(lk["max"]["sockets"]), num(lk["max"]["threads"]), "-"])
    lines += h.md_table(["when", "open fds", "of which sockets", "threads", "RSS"], lv_rows)
    ss = lk["settle_seconds"]
    lines += [
        "",
        "The end levels are read once fds and threads are back at the reference level, or steady for "
        "12 s (idle threads of tokio's blocking pool exit after 10 s), at most 30 s: waited "
        f"{ss['end_open']} s with connections open, {ss['end_closed']} s after they closed. Limits: the "
        "reference plus max(16, 25%) fds, max(8, 25%) threads.",
    ]
    lines += [
        "",
        *h.md_table(
            ["leak check", "got", "level", "limit", "ok"],
            [
                [x["what"], num(x["got"]), num(x["level"]), num(x["limit"]), "yes" if x["ok"] else "**no**"]
                for x in lk["checks"]
            ],
        ),
    ]
    sd = r["shutdown"]
    lines += ["", f"SIGTERM at the end: exit status {sd['status']} after {sd['seconds']} s."]
    lg = r["server_log"]
    lines += [
        "",
        "## Server log",
        "",
        "Lines by level: " + (", ".join(f"{k} {v:,}" for k, v in sorted(lg["levels"].items())) or "none") + ".",
    ]
    if lg["panics"]:
        lines += ["", "Panics:", "", *[f"- `{p[:500]}`" for p in lg["panics"][:10]]]
    if lg["warn_error"]:
        lines += [
            "",
            *h.md_table(
                ["level", "count", "message (first of its kind)"],
                [
                    [d["level"], d["count"], "`" + d["example"][:600].replace("|", "\\|") + "`"]
                    for d in lg["warn_error"][:20]
                ],
            ),
        ]
    lines += [
        "",
        "## Phases",
        "",
        *h.md_table(["phase", "from s", "to s"], [[p["name"], p["start"], p["end"]] for p in r["phases"]]),
    ]
    lines += ["", f"![RSS, fds and threads over time]({png.name})" if not plot_note else f"Plot: {plot_note}"]
    md_path.write_text("\n".join(lines) + "\n")
    js.write_text(json.dumps(r, indent=1, default=str))
    print("\n".join(lines))
    h.progress(f"wrote {md_path}, {js.name}" + ("" if plot_note else f", {png.name}"))


def plot(png: Path, r: dict) -> str | None:
    """RSS over time (top), open fds and threads (bottom), phases shaded.
    Returns why there is no plot, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        return f"not drawn ({e}; benches/run installs benches/requirements.txt)"
    s = r["samples"]
    if not s:
        return "not drawn (no samples)"
    t = [x["t"] for x in s]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    a1.plot(t, [x["VmRSS"] / 1e6 for x in s], color="tab:blue", lw=1.2, label="RSS (VmRSS)")
    a1.plot(t, [x["VmHWM"] / 1e6 for x in s], color="tab:blue", lw=0.8, ls=":", label="peak RSS (VmHWM)")
    from matplotlib.patches import Patch

    colours = {
        "warm-up": "#fff2cc",
        "quiet (clients paused)": "#dae8fc",
        "spike": "#f8cecc",
        "clients closed": "#e6e6e6",
    }
    for p in r["phases"]:
        key = (
            "quiet (clients paused)"
            if p["name"].startswith("quiet")
            else "clients closed"
            if p["name"] in ("closing", "closed")
            else p["name"]
        )
        if key in colours and p["end"] is not None:
            for ax in (a1, a2):
                ax.axvspan(p["start"], max(p["end"], p["start"] + 0.3), color=colours[key], lw=0, zorder=0)
    sp = r["spike"]
    if sp.get("rss_before") and sp.get("rss_peak") and sp.get("rss_after"):
        a1.text(
            0.99,
            0.03,
            f"spike of {sp['clients']} large reads: RSS {sp['rss_before'] / 1e6:.0f} MB before, "
            f"{sp['rss_peak'] / 1e6:.0f} MB at peak, {sp['rss_after'] / 1e6:.0f} MB after",
            transform=a1.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            bbox=dict(boxstyle="round", fc="white", ec="grey", lw=0.5),
        )
    a1.set_ylabel("server RSS, MB")
    a1.set_ylim(bottom=0)
    handles, _ = a1.get_legend_handles_labels()
    handles += [Patch(color=c, label=k) for k, c in colours.items()]
    a1.legend(handles=handles, loc="upper left", fontsize=8)
    c = r["config"]
    a1.set_title(
        f"sheaf serve under {c['clients']} clients, {c['load_seconds'] / 60:g} min of load "
        f"({sum(v.get('ok', 0) + v.get('cancelled', 0) for v in r['ops'].values()):,} operations, "
        f"{r['errors_total']} errors)",
        fontsize=10,
    )
    a2.plot(t, [x["fds"] for x in s], color="tab:green", lw=1.2, label="open fds")
    a2.plot(t, [x["sockets"] for x in s], color="tab:green", lw=0.8, ls=":", label="of which sockets")
    a2.plot(t, [x["threads"] for x in s], color="tab:red", lw=1.2, label="threads")
    a2.set_ylabel("count")
    a2.set_xlabel("seconds since the clients started")
    a2.set_ylim(bottom=0)
    a2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return None


if __name__ == "__main__":
    sys.exit(main())
