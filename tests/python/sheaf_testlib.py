"""Helpers shared by Sheaf's Python integration tests (fixtures are in conftest.py).

Run from the repository root:

    SHEAF_BIN=/path/to/sheaf python -m pytest tests/python

The binary is `$SHEAF_BIN`, else `$CARGO_TARGET_DIR/release/sheaf`, else
`<repo>/target/release/sheaf`. quilt3, moto[server], boto3 and pytest must be
installed in the interpreter running pytest; a missing one fails the tests that
need it with a clear message (nothing is skipped silently).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import select
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# quilt3 reads its config/cache/data locations when it is imported, so isolate
# it before any test module can import it. Nothing of the developer's own
# quilt3 setup is read or written.
QUILT_HOME = Path(tempfile.mkdtemp(prefix="sheaf-tests-quilt3-"))
QUILT_ENV = {
    "XDG_DATA_HOME": str(QUILT_HOME / "data"),
    "XDG_CONFIG_HOME": str(QUILT_HOME / "config"),
    "XDG_CACHE_HOME": str(QUILT_HOME / "cache"),
    "QUILT_DISABLE_USAGE_METRICS": "true",
}
os.environ.update(QUILT_ENV)

MIB = 1024 * 1024
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _find_binary() -> Path:
    if os.environ.get("SHEAF_BIN"):
        return Path(os.environ["SHEAF_BIN"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "sheaf"
    return REPO / "target" / "release" / "sheaf"


SHEAF_BIN = _find_binary()


def base_env() -> dict[str, str]:
    """The environment for child processes: no AWS settings leak in from the
    developer's shell; quilt3 is isolated; no backtraces cluttering stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "SHEAF_REGISTRY"}
    env.update(QUILT_ENV)
    env["RUST_BACKTRACE"] = "0"
    return env


# --------------------------------------------------------------------------
# Running sheaf
# --------------------------------------------------------------------------


class Sheaf:
    """Runs the sheaf binary. Calling it returns a CompletedProcess and never
    raises (a timeout gives returncode -9 and says so on stderr)."""

    def __init__(self, registry: str | None, env: dict[str, str] | None = None):
        self.registry = registry
        self.env = env or {}

    def __call__(
        self,
        *args,
        registry: str | None = None,
        json_out: bool = False,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        if not SHEAF_BIN.is_file():
            pytest.fail(f"sheaf binary not found at {SHEAF_BIN}: build it (cargo build --release) or set SHEAF_BIN")
        cmd = [str(SHEAF_BIN)]
        reg = registry if registry is not None else self.registry
        if reg is not None:
            cmd += ["--registry", str(reg)]
        if json_out:
            cmd.append("--json")
        cmd += [str(a) for a in args]
        full_env = base_env()
        full_env.update(self.env)
        full_env.update(env or {})
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, input=input)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            return subprocess.CompletedProcess(cmd, -9, out, err + f"\n[test harness] timed out after {timeout}s")

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        """Runs and asserts exit 0."""
        r = self(*args, **kw)
        assert r.returncode == 0, describe(r)
        return r

    def json(self, *args, **kw):
        """Runs with --json, asserts exit 0 and returns the parsed stdout."""
        r = self(*args, json_out=True, **kw)
        assert r.returncode == 0, describe(r)
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError as e:
            pytest.fail(f"--json output is not JSON ({e}):\n{describe(r)}")

    def push(self, package: str, directory, *extra, **kw) -> dict:
        """`push --json`, returning the report."""
        return self.json("push", package, directory, *extra, **kw)


def describe(r: subprocess.CompletedProcess) -> str:
    args = r.args if isinstance(r.args, list) else [r.args]
    return f"command: {' '.join(map(str, args))}\nexit: {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


def assert_exit(r: subprocess.CompletedProcess, code: int, *must_mention: str):
    """Asserts the exit code and that stderr is a `sheaf: error:` line naming
    every string in `must_mention`."""
    assert r.returncode == code, f"expected exit {code}\n{describe(r)}"
    if code != 0:
        assert "sheaf: error:" in r.stderr or r.stderr.lstrip().startswith('{"error"'), describe(r)
        for s in must_mention:
            assert s in r.stderr, f"error message should mention {s!r}\n{describe(r)}"


# --------------------------------------------------------------------------
# Test trees
# --------------------------------------------------------------------------

BIG_SIZE = 9 * MIB + 12_345  # two 8 MiB chunks for sha2-256-chunked
_BIG_CACHE: dict[int, bytes] = {}


def big_bytes(size: int = BIG_SIZE, seed: int = 8) -> bytes:
    """Deterministic pseudo-random bytes (cached per seed)."""
    key = (size, seed)
    if key not in _BIG_CACHE:
        _BIG_CACHE[key] = random.Random(seed).randbytes(size)
    return _BIG_CACHE[key]


# Logical key -> content. Covers: nesting, walk-order corner cases from
# quilt-format.md (B, a/b, a-b, b/x, b.txt), unicode and emoji names, names
# that need percent-encoding in file:// URLs, a dotfile and an empty file.
SMALL_FILES: dict[str, bytes] = {
    "README.md": b"# test package\n",
    "B": b"upper B\n",
    "a/b": b"a slash b\n",
    "a-b": b"a dash b\n",
    "b/x": b"b slash x\n",
    "b.txt": b"b dot txt\n",
    "nested/deeper/deepest/leaf.txt": b"leaf\n" * 10,
    "nested/sibling.csv": b"x,y\n1,2\n3,4\n",
    "empty.bin": b"",
    "ünïcödé/naïve café.txt": "crème brûlée\n".encode(),
    "日本語/ファイル.txt": "こんにちは\n".encode(),
    "emoji 😀/🚀 launch.txt": "🚀🚀🚀\n".encode(),
    "odd names/with space #1 %20 & more.txt": b"odd\n",
    ".hidden": b"dotfile\n",
}
BIG_KEY = "data/large.bin"


def make_tree(path: Path, *, big: bool = True, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Creates the standard test tree under `path`; returns {logical_key: bytes}."""
    files = dict(SMALL_FILES)
    if big:
        files[BIG_KEY] = big_bytes()
    files.update(extra or {})
    write_tree(path, files)
    return files


def write_tree(path: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    path.mkdir(parents=True, exist_ok=True)
    for key, data in files.items():
        p = path.joinpath(*key.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def read_tree(path: Path) -> dict[str, bytes]:
    """{posix relative path: bytes} for every regular file under `path`."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(path).as_posix()] = p.read_bytes()
    return out


# --------------------------------------------------------------------------
# quilt format helpers (independent of both sheaf and quilt3)
# --------------------------------------------------------------------------


def chunked_hash(data: bytes) -> str:
    """quilt3's sha2-256-chunked, computed here independently."""
    chunk = 8 * MIB
    while -(-len(data) // chunk) > 10_000:
        chunk *= 2
    digests = b"".join(hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, len(data), chunk))
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def top_hash_of(header: dict, entries: list[dict]) -> str:
    """Top hash of a manifest given its header and entry lines."""
    h = hashlib.sha256(canonical(header))
    for e in entries:
        h.update(
            canonical(
                {"hash": e["hash"], "logical_key": e["logical_key"], "meta": e.get("meta") or {}, "size": e["size"]}
            )
        )
    return h.hexdigest()


def write_manifest(
    registry: Path,
    header: dict,
    lines: list[dict],
    *,
    name: str | None = None,
    timestamp: int | None = None,
    latest: bool = True,
) -> str:
    """Writes a hand-made manifest into a local registry (as quilt3 would lay it
    out) and, when `name` is given, the package's pointers. Returns its top hash."""
    entries = [rec for rec in lines if "physical_keys" in rec or "hash" in rec]
    top = top_hash_of(header, entries)
    text = "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in [header, *lines])
    mdir = registry / ".quilt" / "packages"
    mdir.mkdir(parents=True, exist_ok=True)
    (mdir / top).write_text(text, encoding="utf-8")
    if name:
        ndir = registry / ".quilt" / "named_packages" / name
        ndir.mkdir(parents=True, exist_ok=True)
        ts = timestamp if timestamp is not None else int(time.time())
        while (ndir / str(ts)).exists():
            ts += 1
        (ndir / str(ts)).write_text(top)
        if latest:
            (ndir / "latest").write_text(top)
    return top


def blob_path(registry: Path, hash_value_b64: str) -> Path:
    return registry / ".sheaf" / "blobs" / base64.b64decode(hash_value_b64).hex()


# --------------------------------------------------------------------------
# quilt3
# --------------------------------------------------------------------------


def file_url(path: Path) -> str:
    return Path(path).resolve().as_uri()


# --------------------------------------------------------------------------
# moto (S3)
# --------------------------------------------------------------------------

BUCKET = "sheaf-test"


def terminate(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM `proc` if it still runs, then wait (SIGKILL after `timeout`)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range: ports in
    that range are taken by every outgoing connection, so one picked there
    (by binding port 0) may be gone before the server a test starts on it
    binds it ("Address already in use"). Never the same port twice per process."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(500):
        port = _PORT_RNG.randrange(max(1024, low - 16384), low)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_PORTS_GIVEN: set[int] = set()
# Its own generator: tests that seed `random` get the same draws whatever ports were picked.
_PORT_RNG = random.Random()


# --------------------------------------------------------------------------
# Arrow Flight (`sheaf serve`), read with pyarrow as the client
# --------------------------------------------------------------------------

# Servers started by the tests and still running; conftest dumps the stderr of
# each into the report of a failed test.
LIVE_SERVERS: list[FlightServer] = []

SERVE_LINE = re.compile(r"^sheaf: serving (?P<registry>\S+) on (?P<url>grpc://127\.0\.0\.1:\d+)\s*$")


def pyarrow_flight():
    """pyarrow.flight, or a test failure saying how to install it."""
    try:
        import pyarrow.flight as flight
    except ImportError as e:  # pragma: no cover - environment problem
        pytest.fail(
            f"pyarrow is required for the Flight tests but cannot be imported: {e}. "
            "Install it with `pip install -r tests/python/requirements.txt`."
        )
    return flight


class FlightServer:
    """A running `sheaf serve`: its URL, its log and a pyarrow client."""

    def __init__(self, proc: subprocess.Popen, url: str, first_line: str, log_path: Path, registry: str):
        self.proc = proc
        self.url = url
        self.first_line = first_line
        self.log_path = log_path
        self.registry = registry
        self.stdout_head = first_line  # everything read from stdout at start-up
        self.json = None  # the start-up JSON object under --json
        self._clients = []
        self.client = self.connect()

    def connect(self, url: str | None = None):
        """A new pyarrow FlightClient (closed when the server stops)."""
        flight = pyarrow_flight()
        client = flight.FlightClient(url or self.url)
        self._clients.append(client)
        return client

    def stderr(self, start: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")
        except OSError as e:
            return f"[cannot read {self.log_path}: {e}]"

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then wait (kill after `timeout`). Returns the exit code."""
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients.clear()
        if self in LIVE_SERVERS:
            LIVE_SERVERS.remove(self)
        terminate(self.proc, timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode


def start_server(
    registry,
    *args,
    json_out: bool = False,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
    listen: str = "127.0.0.1:0",
    timeout: float = 60,
) -> FlightServer:
    """Starts `sheaf --registry REGISTRY [--json] serve --listen LISTEN ARGS...`
    and waits for the first stdout line, which names the bound port."""
    if not SHEAF_BIN.is_file():
        pytest.fail(f"sheaf binary not found at {SHEAF_BIN}: build it (cargo build --release) or set SHEAF_BIN")
    cmd = [str(SHEAF_BIN), "--registry", str(registry)]
    if json_out:
        cmd.append("--json")
    cmd += ["serve", "--listen", listen, *map(str, args)]
    full_env = base_env()
    full_env.setdefault("RUST_LOG", "info")
    full_env["NO_COLOR"] = "1"  # plain logs in the failure reports
    full_env.update(env or {})
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="sheaf-serve-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    fd, log_name = tempfile.mkstemp(prefix="serve-", suffix=".stderr", dir=log_dir)
    os.close(fd)
    log_path = Path(log_name)
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf, env=full_env)
    out = b""
    deadline = time.monotonic() + timeout

    def complete() -> bool:
        if b"\n" not in out:
            return False
        if not json_out:
            return True
        try:  # --json: a whole JSON document (it may span several lines)
            json.JSONDecoder().raw_decode(out.decode(errors="replace").lstrip())
            return True
        except ValueError:
            return False

    while not complete():
        remaining = deadline - time.monotonic()
        chunk = None
        if remaining > 0:
            ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.5))
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            out += chunk
        if not chunk:  # timed out or end of output
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            pytest.fail(
                f"`{' '.join(cmd)}` did not print its listening line within {timeout}s "
                f"(exit {proc.returncode}).\nstdout so far: {out!r}\nstderr:\n"
                f"{log_path.read_text(errors='replace')}"
            )
    line = out.split(b"\n", 1)[0].decode()
    if json_out:
        doc, _ = json.JSONDecoder().raw_decode(out.decode().lstrip())
        url = doc.get("listening") if isinstance(doc, dict) else None
        if not url:
            proc.kill()
            proc.wait()
            pytest.fail(f'--json serve\'s first output is not {{"listening": ...}}: {out!r}')
        server_json = doc
    else:
        m = SERVE_LINE.match(line)
        if not m:
            proc.kill()
            proc.wait()
            pytest.fail(
                f"serve's first line should be `sheaf: serving <registry> on grpc://127.0.0.1:PORT`, "
                f"got {line!r}\nstderr:\n{log_path.read_text(errors='replace')}"
            )
        url = m["url"]
        server_json = None
    server = FlightServer(proc, url, out.split(b"\n", 1)[0].decode(), log_path, str(registry))
    server.stdout_head = out.decode(errors="replace")
    server.json = server_json
    LIVE_SERVERS.append(server)
    return server
