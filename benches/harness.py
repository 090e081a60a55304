"""Shared helpers of Sheaf's benchmarks (benches/*.py).

- The client environment: every benchmark process (the pyarrow client) and every
  pyarrow peer server runs with MIMALLOC_PURGE_DELAY=-1, so mimalloc keeps freed
  memory instead of returning it to the OS after each read (without it client-side
  figures swing 0.4-3.3 GB/s on this machine), and with glibc's malloc thresholds
  fixed (GLIBC_TUNABLES; gRPC's receive buffers come from glibc's malloc): with
  glibc's adaptive thresholds a client trimmed and re-faulted its heap on some
  reads and not others, 3k-105k page faults per read, and one unchanged Sheaf
  server measured 0.67x-1.12x the pyarrow peer from run to run (0.81x-0.89x
  with them fixed).
  Importing this module re-executes the script with that environment when it is
  missing, before pyarrow is loaded. `sheaf serve` gets no tuning of any kind.
- Deterministic data (fixed seeds), cached as Parquet under
  $SHEAF_CACHE/bench-data/ so repeated runs do not regenerate it.
- Servers in their own processes: `sheaf serve` and the pyarrow peers of
  benches/peers.py, each with its PID for /proc readings (RSS, CPU, read bytes).
- The server's `metrics` action (cumulative counters), "n/a" while a server
  does not have it.
- Timing statistics and the result files (markdown + JSON) every scenario writes;
  benches/summary.py folds the JSON files into benches/results/summary*.md/png.

Import this module before pyarrow.
"""

from __future__ import annotations

import os
import sys

CLIENT_ENV = {
    "MIMALLOC_PURGE_DELAY": "-1",
    # Allocations under 32 MiB from the heap, and the heap never trimmed.
    "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432",
    # Buffers received over Flight need not be 64-byte aligned; pyarrow compute
    # warns about that unless told to copy.
    "ACERO_ALIGNMENT_HANDLING": "reallocate",
}


def _ensure_client_env() -> None:
    if all(os.environ.get(k) == v for k, v in CLIENT_ENV.items()):
        return
    if "pyarrow" in sys.modules:
        raise RuntimeError("import harness before pyarrow (the client environment must be set first)")
    if sys.argv and sys.argv[0] and os.path.isfile(sys.argv[0]):
        # A script: start it again with the environment, so the allocator sees it from the start.
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **CLIENT_ENV})
    os.environ.update(CLIENT_ENV)  # python -c / interactive: before pyarrow loads, which is enough


if __name__ != "__main__":
    _ensure_client_env()

import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.flight as flight  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
RESULTS = BENCHES / "results"
CACHE = Path(os.environ.get("SHEAF_CACHE", str(Path.home() / ".cache" / "sheaf")))
DATA_CACHE = CACHE / "bench-data"
CALL = flight.FlightCallOptions(timeout=300)
MB = 1e6
MIB = 1 << 20
GIB = 1 << 30


# --------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mem_total_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def busy_processes(limit: int = 4) -> list[str]:
    """The processes using the most CPU right now (other builds on a shared
    machine), as `command (cpu%)`, so a table can say what ran beside it."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    me = {"ps", "python", "python3", "sheaf"}
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) != 2:
            continue
        pcpu, comm = float(parts[0]), parts[1].strip()
        if pcpu < 5 or comm in me:
            continue
        rows.append(f"{comm} ({pcpu:.0f}%)")
        if len(rows) >= limit:
            break
    return rows


def machine() -> dict:
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_total_gib(), 1),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "loadavg": loadavg(),
    }


# --------------------------------------------------------------------------
# Statistics and formatting
# --------------------------------------------------------------------------


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)

    def add(self, v: float) -> None:
        self.values.append(v)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def min(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    def map(self, f) -> Samples:
        return Samples([f(v) for v in self.values])

    def to_json(self) -> dict:
        return {"median": self.median, "min": self.min, "max": self.max, "n": len(self.values), "values": self.values}


def fmt_range(s: Samples, digits: int = 2) -> str:
    """`median (min-max)`."""
    if not s.values:
        return "n/a"
    if len(s.values) == 1:
        return f"{s.median:.{digits}f}"
    return f"{s.median:.{digits}f} ({s.min:.{digits}f}-{s.max:.{digits}f})"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    if n >= 10 * 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def fmt_rate(rows_per_s: float) -> str:
    if rows_per_s >= 1e6:
        return f"{rows_per_s / 1e6:.1f} M"
    if rows_per_s >= 1e3:
        return f"{rows_per_s / 1e3:.1f} k"
    return f"{rows_per_s:.0f}"


def fmt_ratio(r: float | None) -> str:
    if r is None or r != r:
        return "n/a"
    return f"{r:.2f}x"


def md_table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc readings of a server process
# --------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status_bytes(pid: int, key: str) -> int | None:
    """VmRSS / VmHWM / ... of a process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rchar(pid: int | str = "self") -> int | None:
    """Bytes the process asked for through read()-like system calls (files and
    sockets) since it started, from /proc/PID/io."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------
# Servers in their own processes
# --------------------------------------------------------------------------


def sheaf_bin() -> Path:
    if os.environ.get("SHEAF_BIN"):
        return Path(os.environ["SHEAF_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR", str(CACHE / "target"))
    return Path(target) / "release" / "sheaf"


def server_env() -> dict[str, str]:
    """Environment for `sheaf serve`: the user's, without the client's allocator
    settings or malloc tunables (the server must do well with its own defaults)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MIMALLOC_") and k not in ("GLIBC_TUNABLES", "ACERO_ALIGNMENT_HANDLING")
    }
    env["NO_COLOR"] = "1"
    return env


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark process dies, so no
    server outlives a crashed or interrupted run."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Server:
    """A Flight server in its own process. Its stdout and stderr go to files in
    `log_dir`; start-up waits for a line matching `url_re` (group 1: the URL)."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], url_re: str, log_dir: Path, timeout: float = 120
    ):
        self.name = name
        self.cmd = cmd
        log_dir.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        fd, out_name = tempfile.mkstemp(prefix=stem + "-", suffix=".stdout", dir=log_dir)
        os.close(fd)
        self.out_path = Path(out_name)
        self.err_path = self.out_path.with_suffix(".stderr")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        pattern = re.compile(url_re)
        self.url = None
        while self.url is None:
            m = pattern.search(self.out_path.read_text(errors="replace"))
            if m:
                self.url = m.group(1)
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"{name}: `{' '.join(cmd)}` did not print its URL "
                    f"(exit {self.proc.returncode}).\nstdout: {self.out_path.read_text()}\n"
                    f"stderr: {self.err_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.01)
        self._clients: list[flight.FlightClient] = []
        self.client = self.connect() if self.url.startswith("grpc") else None

    def connect(self) -> flight.FlightClient:
        c = flight.FlightClient(self.url)
        self._clients.append(c)
        return c

    def rss(self) -> int | None:
        return proc_status_bytes(self.pid, "VmRSS")

    def hwm(self) -> int | None:
        return proc_status_bytes(self.pid, "VmHWM")

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    def rchar(self) -> int | None:
        return proc_rchar(self.pid)

    def stderr_tail(self, n: int = 3000) -> str:
        try:
            return self.err_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 20) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients.clear()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_sheaf(registry: Path, log_dir: Path, *args: str) -> Server:
    cmd = [str(sheaf_bin()), "--registry", registry.resolve().as_uri(), "serve", "--listen", "127.0.0.1:0", *args]
    return Server("sheaf", cmd, server_env(), r"serving \S+ on (grpc://\S+)", log_dir)


def start_peer(mode: str, files: list[Path], log_dir: Path) -> Server:
    """A pyarrow peer of benches/peers.py (same interpreter, client environment)."""
    cmd = [sys.executable, str(BENCHES / "peers.py"), mode, *map(str, files)]
    env = {**os.environ, **CLIENT_ENV}
    return Server(f"peer-{mode}", cmd, env, r"serving on (\S+://\S+)", log_dir)


_HELP: dict[str, str] = {}


def sheaf_serve_has(flag: str) -> bool:
    """Whether this `sheaf serve` knows a flag (the harness runs against older
    and newer binaries alike)."""
    b = str(sheaf_bin())
    if b not in _HELP:
        r = subprocess.run([b, "serve", "--help"], capture_output=True, text=True, env=server_env(), timeout=60)
        _HELP[b] = r.stdout
    return flag in _HELP[b]


def push(registry: Path, package: str, src: Path) -> str:
    """`sheaf push` of a folder into a local registry; returns the top hash."""
    r = subprocess.run(
        [str(sheaf_bin()), "--registry", registry.resolve().as_uri(), "push", package, str(src)],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=1800,
    )
    if r.returncode != 0:
        raise RuntimeError(f"sheaf push failed ({r.returncode}): {r.stderr}")
    return r.stdout.strip().splitlines()[-1]


def sheaf_metrics(client: flight.FlightClient) -> dict | None:
    """The server's cumulative counters (DoAction `metrics`), or None while the
    server does not offer them."""
    try:
        results = list(client.do_action(flight.Action("metrics", b""), CALL))
        return json.loads(bytes(results[0].body).decode("utf-8"))
    except Exception:
        return None


def metrics_delta(before: dict | None, after: dict | None) -> dict | None:
    if before is None or after is None:
        return None
    return {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], (int, float))}


def check_sheaf_binary() -> None:
    b = sheaf_bin()
    if not b.is_file():
        sys.exit(f"sheaf binary not found at {b}: run benches/run (it builds it) or set SHEAF_BIN")


def binary_facts() -> dict:
    """The binary measured: benches/run_all.py runs a private copy (so a binary
    replaced during the run cannot mix two builds in one table) and names the
    original in SHEAF_BENCH_BIN_ORIGIN ("path|mtime")."""
    b = sheaf_bin()
    try:
        mtime = datetime.datetime.fromtimestamp(b.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
    except OSError:
        mtime = "?"
    if os.environ.get("SHEAF_BENCH_BIN_ORIGIN"):
        b, mtime = os.environ["SHEAF_BENCH_BIN_ORIGIN"].split("|", 1)
    commit = "?"
    try:
        r = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if r.returncode == 0:
            commit = r.stdout.strip()
            d = subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            if d.stdout.strip():
                commit += " (+ uncommitted changes)"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"sheaf_bin": str(b), "sheaf_bin_mtime": mtime, "commit": commit}


# --------------------------------------------------------------------------
# Reading with the pyarrow client (the same code for every server)
# --------------------------------------------------------------------------


def descriptor(target: str) -> flight.FlightDescriptor:
    """A Sheaf URI travels as a CMD descriptor; a peer's file as a PATH descriptor."""
    if target.startswith("sheaf://"):
        return flight.FlightDescriptor.for_command(target)
    return flight.FlightDescriptor.for_path(target)


def timed_read(fn) -> dict:
    """Runs `fn()` (a read returning a table) in this process: its seconds,
    rows, batches (chunks of the first column), and this process's CPU-seconds
    and minor page faults during it. The table is dropped before returning."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    table = fn()
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "seconds": seconds,
        "rows": table.num_rows,
        "batches": table.column(0).num_chunks if table.num_columns else 0,
        "client_cpu": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
        "client_faults": r1.ru_minflt - r0.ru_minflt,
    }
    del table
    return out


def round_order(items: list, round_no: int) -> list:
    """`items` in a new order for round `round_no` (seeded, so runs repeat).
    Unlike a rotation of one fixed order, no item always follows the same
    other: a read leaves the client's allocator in a state that helps or
    hurts the read after it."""
    order = list(items)
    random.Random(round_no).shuffle(order)
    return order


class ReaderProcess:
    """A client process of its own reading one target again and again
    (benches/read_once.py --repeat), so what other readers leave in a client's
    allocator does not change its reads. `read()` returns seconds, rows,
    batches, client_cpu and client_faults of one read."""

    def __init__(self, url: str, target: str, parallel: int = 1):
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCHES / "read_once.py"), "--repeat", url, target, str(parallel)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **CLIENT_ENV},
            preexec_fn=_die_with_parent,
        )

    def read(self) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write("read\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"read_once.py --repeat exited ({self.proc.wait()}); its stderr is above")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> ReaderProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def read_in_fresh_client(url: str, target: str) -> dict:
    """`read_all` of `target` by a new client process (benches/read_once.py):
    seconds, rows, batches, client_cpu and client_faults of that one read."""
    r = subprocess.run(
        [sys.executable, str(BENCHES / "read_once.py"), url, target],
        capture_output=True,
        text=True,
        env={**os.environ, **CLIENT_ENV},
        timeout=600,
    )
    if r.returncode != 0:
        raise RuntimeError(f"read_once.py {url} {target} failed ({r.returncode}): {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def read_all(client: flight.FlightClient, target: str, parallel: int = 1) -> pa.Table:
    """GetFlightInfo, then every endpoint's DoGet (in order, or `parallel` at a
    time), as one table."""
    info = client.get_flight_info(descriptor(target), CALL)
    if parallel <= 1 or len(info.endpoints) <= 1:
        tables = [client.do_get(ep.ticket, CALL).read_all() for ep in info.endpoints]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(parallel) as pool:
            tables = list(pool.map(lambda ep: client.do_get(ep.ticket, CALL).read_all(), info.endpoints))
    if not tables:
        return info.schema.empty_table()
    return pa.concat_tables(tables)


def stream_rows(client: flight.FlightClient, target: str) -> int:
    """Reads every endpoint batch by batch without keeping anything; returns rows."""
    info = client.get_flight_info(descriptor(target), CALL)
    rows = 0
    for ep in info.endpoints:
        reader = client.do_get(ep.ticket, CALL)
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            rows += chunk.data.num_rows
    return rows


# --------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------

DATA_VERSION = 1  # bump when a generator changes, so cached files are remade
LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def vocabulary(rng: np.random.Generator, n: int, lo: int, hi: int) -> pa.Array:
    """`n` distinct-ish random lowercase words of `lo`..`hi` characters."""
    lengths = rng.integers(lo, hi + 1, n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = LETTERS[rng.integers(0, 26, int(offsets[-1]))]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data.tobytes()))


def narrow_table(rows: int, seed: int = 1) -> pa.Table:
    """Numeric and string columns (the shape of flight-facts.md's table):
    id int64 (0..rows), x float64, y float32, k int32, name string (words of
    4-16 letters from 20,000)."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(rng, 20_000, 4, 16)
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "x": pa.array(rng.standard_normal(rows)),
            "y": pa.array(rng.random(rows, dtype=np.float32)),
            "k": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
            "name": vocab.take(pa.array(rng.integers(0, len(vocab), rows))),
        }
    )


def wide_table(rows: int, seed: int = 2) -> pa.Table:
    """Ten columns, sorted on `ts` (int64 microseconds, strictly increasing):
    ts, id, user (string, 20,000 values), country (string, 200 values), amount,
    price (float64), qty, status (int32), score (float32), session (int64)."""
    rng = np.random.default_rng(seed)
    users = vocabulary(rng, 20_000, 6, 14)
    countries = vocabulary(rng, 200, 2, 12)
    ts = 1_700_000_000_000_000 + np.cumsum(rng.integers(1, 2_000, rows, dtype=np.int64))
    return pa.table(
        {
            "ts": pa.array(ts),
            "id": pa.array(rng.integers(0, 2**62, rows, dtype=np.int64)),
            "user": users.take(pa.array(rng.integers(0, len(users), rows))),
            "country": countries.take(pa.array(rng.zipf(1.5, rows) % len(countries))),
            "amount": pa.array(np.round(rng.exponential(50.0, rows), 2)),
            "price": pa.array(rng.standard_normal(rows) * 10 + 100),
            "qty": pa.array(rng.integers(1, 100, rows, dtype=np.int32)),
            "status": pa.array(rng.integers(0, 5, rows, dtype=np.int32)),
            "score": pa.array(rng.random(rows, dtype=np.float32)),
            "session": pa.array(rng.integers(0, rows // 10 + 1, rows, dtype=np.int64)),
        }
    )


GENERATORS = {"narrow": narrow_table, "wide": wide_table}


def dataset(kind: str, rows: int) -> Path:
    """The Parquet file of a generated table (pyarrow's default writer settings
    plus the page index), made once and cached."""
    DATA_CACHE.mkdir(parents=True, exist_ok=True)
    path = DATA_CACHE / f"{kind}-{rows}-v{DATA_VERSION}.parquet"
    if not path.exists():
        progress(f"generating {kind} table, {rows:,} rows -> {path}")
        table = GENERATORS[kind](rows)
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, write_page_index=True)
        tmp.rename(path)
        for old in DATA_CACHE.glob(f"{kind}-*-v*.parquet"):
            if not old.name.endswith(f"-v{DATA_VERSION}.parquet"):
                old.unlink(missing_ok=True)
    return path


def package_dir(scratch: Path, name: str, files: dict[str, Path]) -> Path:
    """A folder holding `files` (logical name -> source), hard-linked when possible."""
    d = scratch / "src" / name
    d.mkdir(parents=True, exist_ok=True)
    for logical, src in files.items():
        dst = d / logical
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return d


def arrow_bytes(path: Path) -> tuple[int, int]:
    """(rows, Arrow in-memory bytes) of a Parquet file as pyarrow reads it."""
    t = pq.read_table(path)
    return t.num_rows, t.nbytes


# --------------------------------------------------------------------------
# Scenario output
# --------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the summary table. `ratio` is oriented so the goal reads
    naturally (see `goal`); `status` is met / short / info."""

    what: str
    sheaf: str
    baseline: str
    ratio: str
    goal: str = "-"
    status: str = "info"


@dataclass
class Result:
    scenario: str  # "1".."7"
    name: str  # file stem: flight_read, transfer, ...
    title: str
    quick: bool
    params: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)  # markdown lines
    notes: list[str] = field(default_factory=list)
    plot: dict = field(default_factory=dict)

    def paths(self, out: str | None) -> tuple[Path, Path]:
        md = Path(out) if out else RESULTS / f"{self.name}{'.quick' if self.quick else ''}.md"
        return md, md.with_suffix(".json")

    def write(self, out: str | None = None) -> Path:
        md, js = self.paths(out)
        md.parent.mkdir(parents=True, exist_ok=True)
        m = machine()
        lines = [
            f"# {self.scenario}. {self.title} ({'quick' if self.quick else 'full'})",
            "",
            f"{m['date']}, {m['cores']} cores ({m['cpu']}), {m['memory_gib']:.0f} GiB, "
            f"load average {m['loadavg']} at the end; pyarrow {m['pyarrow']}; "
            f"sheaf {binary_facts()['sheaf_bin']} ({binary_facts()['sheaf_bin_mtime']}).",
            "",
            *md_table(
                ["what", "Sheaf", "baseline", "ratio", "goal", "status"],
                [[r.what, r.sheaf, r.baseline, r.ratio, r.goal, r.status] for r in self.rows],
            ),
            "",
            *self.detail,
        ]
        if self.notes:
            lines += ["", "Notes:", "", *[f"- {n}" for n in self.notes]]
        md.write_text("\n".join(lines) + "\n")
        js.write_text(
            json.dumps(
                {
                    "scenario": self.scenario,
                    "name": self.name,
                    "title": self.title,
                    "quick": self.quick,
                    "machine": m,
                    "binary": binary_facts(),
                    "params": self.params,
                    "rows": [r.__dict__ for r in self.rows],
                    "detail": self.detail,
                    "notes": self.notes,
                    "plot": self.plot,
                },
                indent=1,
                default=float,
            )
        )
        print("\n".join(lines))
        progress(f"wrote {md} and {js.name}")
        return md


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sheaf-bench-{prefix}-"))


def start_scenario(description: str, sizes: dict[str, dict]):
    """What every scenario script does first: parse the common flags, check
    the server binary, and pick its sizes (`sizes["quick"]` or `["full"]`).
    Returns (options, sizes)."""
    opts = common_args(description).parse_args()
    check_sheaf_binary()
    return opts, sizes["quick" if opts.quick else "full"]


def common_args(description: str):
    import argparse

    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and few rounds (for CI); asserts no timing")
    ap.add_argument(
        "--out",
        help="markdown file to write (default benches/results/NAME[.quick].md; "
        "a .json with the same stem is written next to it)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (registry, server logs)")
    return ap
