"""Fixtures for the Python client's tests: one real `sheaf serve` on loopback
over a temporary registry holding the test packages.

Run from the repository root (the `sheaf` package must be installed, see
clients/python/ci/test.sh):

    SHEAF_BIN=/path/to/sheaf python -m pytest clients/python/tests

The server binary is `$SHEAF_BIN`, else `$CARGO_TARGET_DIR/release/sheaf`,
else `<repo>/target/release/sheaf`.

Packages pushed (data generated deterministically by `testdata.py`):
- test/tables, revision tagged `v1`, then a second revision (latest);
- test/files: images/ (binary files), docs/, README.md;
- demo/weather (`serve --demo`), which the README's examples read.

Also the fixtures of the in-process fake servers of fakes.py (`fake`,
`fake_client`, `other`, `third`, `writes`, `writes_client`), which the
contract tests use instead of the real server, and `read` and `hashes`, which
the write tests (test_write.py, test_write_sessions.py) check with.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
import select
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# DataLoader workers in these tests start from a forkserver (see
# test_torch.DEFAULT_CTX); preloading the heavy modules there keeps each
# worker's start-up cheap. Importing them starts no gRPC threads.
multiprocessing.set_forkserver_preload(["torch", "pyarrow", "sheaf"])

import testdata  # noqa: E402 - after the forkserver preload above

CLIENT_DIR = Path(__file__).resolve().parents[1]
REPO = CLIENT_DIR.parents[1]
SERVE_LINE = re.compile(r"^sheaf: serving (?P<registry>\S+) on (?P<url>grpc(?:\+tls)?://127\.0\.0\.1:\d+)\s*$")

# Credentials come from the tests alone: sheaf.connect() reads SHEAF_TOKEN
# when given none (test_auth.py sets it where it tests that).
os.environ.pop("SHEAF_TOKEN", None)

# Every Flight call of the tests has a deadline, so a hung server fails a test instead of the run.
TIMEOUT = 60.0


def sheaf_bin() -> Path:
    if os.environ.get("SHEAF_BIN"):
        return Path(os.environ["SHEAF_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR")
    return (Path(target) if target else REPO / "target") / "release" / "sheaf"


def child_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("SHEAF_REGISTRY", "SHEAF_AUTH", "SHEAF_TOKEN")
    }
    env["RUST_BACKTRACE"] = "0"
    return env


def run_sheaf(registry: Path, *args: str) -> str:
    """Runs `sheaf --registry REGISTRY --json ARGS`, asserts success, returns stdout."""
    cmd = [str(sheaf_bin()), "--registry", str(registry), "--json", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


@dataclass
class Server:
    """A running `sheaf serve`."""

    proc: subprocess.Popen
    url: str
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(registry: Path, log: Path, *extra: str, listen: str = "127.0.0.1:0") -> Server:
    binary = sheaf_bin()
    if not binary.is_file():
        pytest.fail(f"sheaf binary not found at {binary}: set SHEAF_BIN or build it (cargo build --release)")
    cmd = [str(binary), "--registry", str(registry), "serve", "--listen", listen, *extra]
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf, env=child_env())
    out = b""
    deadline = time.monotonic() + 60
    while b"\n" not in out:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            pytest.fail(
                f"`{' '.join(cmd)}` did not print its listening line (exit {proc.returncode}); "
                f"stdout: {out!r}\nstderr:\n{log.read_text(errors='replace')}"
            )
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                continue
            out += chunk
    line = out.split(b"\n", 1)[0].decode()
    m = SERVE_LINE.match(line)
    if not m:
        proc.kill()
        proc.wait()
        pytest.fail(f"unexpected first line from sheaf serve: {line!r}")
    return Server(proc, m["url"], log)


@dataclass
class Data:
    """What the shared server serves."""

    server: Server
    registry: Path
    src: Path  # test/tables, first revision (tag v1)
    src2: Path  # test/tables, second revision (latest)
    files_src: Path  # test/files
    tops: dict[str, str] = field(default_factory=dict)  # "test/tables@v1", "test/tables", "test/files"

    @property
    def url(self) -> str:
        return self.server.url

    def parquet(self, name: str):
        import pyarrow.parquet as pq

        return pq.read_table(self.src / "tables" / name)


def _push(registry: Path, package: str, folder: Path, message: str) -> str:
    report = json.loads(run_sheaf(registry, "push", package, str(folder), "-m", message))
    return report["top_hash"]


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Data:
    root = tmp_path_factory.mktemp("sheaf-client")
    registry = root / "registry"
    registry.mkdir()
    src, src2, files_src = root / "tables-v1", root / "tables-v2", root / "files"
    testdata.write_tables(src)
    testdata.write_tables(src2, revision=2)
    testdata.write_files(files_src)
    tops = {}
    tops["test/tables@v1"] = _push(registry, "test/tables", src, "first")
    run_sheaf(registry, "tag", f"test/tables@{tops['test/tables@v1']}", "v1")
    time.sleep(1.1)  # revisions are named by the second they were pushed
    tops["test/tables"] = _push(registry, "test/tables", src2, "second")
    tops["test/files"] = _push(registry, "test/files", files_src, "files")
    server = start_server(registry, root / "serve.log", "--demo")  # demo/weather, for the README's examples
    try:
        yield Data(server, registry, src, src2, files_src, tops)
    finally:
        server.stop()


@pytest.fixture
def client(data):
    import sheaf

    c = sheaf.connect(data.url, timeout=TIMEOUT, read_timeout=TIMEOUT)
    yield c
    c.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(autouse=True)
def _server_log_on_failure(request):
    """When a test fails, print what the server logged during it."""
    if "data" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("data").server
    start = server.log.stat().st_size if server.log.exists() else 0
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        with open(server.log, "rb") as f:
            f.seek(start)
            print(f"\n----- sheaf serve stderr during this test -----\n{f.read().decode(errors='replace')[-20000:]}")


def pytest_sessionstart(session):
    """The tests must exercise the checked-out client: when `sheaf` is
    installed (not imported from the source tree), its files must be the
    same as clients/python/src/sheaf."""
    import sheaf

    installed = Path(sheaf.__file__).resolve().parent
    source = CLIENT_DIR / "src" / "sheaf"
    if installed == source.resolve():
        return
    stale = []
    for path in sorted(source.rglob("*")):
        # Modules generated from proto/sheaf.proto (build_proto.py) may sit in
        # the source tree for editors; the build generates its own.
        generated = path.name.endswith(("_pb2.py", "_pb2.pyi"))
        if path.is_file() and "__pycache__" not in path.parts and not generated:
            twin = installed / path.relative_to(source)
            if (
                not twin.is_file()
                or hashlib.sha256(twin.read_bytes()).digest() != hashlib.sha256(path.read_bytes()).digest()
            ):
                stale.append(str(path.relative_to(source)))
    if stale:
        raise pytest.UsageError(
            f"the installed sheaf package at {installed} differs from {source} "
            f"({', '.join(stale)}): reinstall it (pip install ./clients/python)"
        )


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


def read(client, uri: str):
    """The table (``pyarrow.Table``) a dataset URI names, read whole."""
    return client.dataset(uri).to_table()


def hashes(client, package: str) -> list[str]:
    """The top hashes of a package's revisions, newest first; none for a package that does not exist."""
    import sheaf

    try:
        return [r.top_hash for r in client.list_revisions(package)]
    except sheaf.NotFoundError:
        return []


# ---------------------------------------------------------------------------
# In-process fake servers (fakes.py), for the contract tests (imported in the
# fixtures, as sheaf is: tests_frameworks/conftest.py loads this module too)
# ---------------------------------------------------------------------------


def _fake_server(cls_name: str, *args):
    """Starts fakes.<cls_name>(*args); stops it when the test ends."""
    import fakes

    server = getattr(fakes, cls_name)(*args)
    try:
        yield server
    finally:
        fakes.stop(server)


def _client_of(server):
    import sheaf

    c = sheaf.connect(server.url, timeout=10, read_timeout=10)
    yield c
    c.close()


@pytest.fixture
def fake():
    yield from _fake_server("FakeSheaf")


@pytest.fixture
def fake_client(fake):
    yield from _client_of(fake)


@pytest.fixture
def other():
    yield from _fake_server("FakeSheaf", "b")


@pytest.fixture
def third():
    yield from _fake_server("FakeSheaf", "c")


@pytest.fixture
def writes():
    yield from _fake_server("FakeWrites")


@pytest.fixture
def writes_client(writes):
    yield from _client_of(writes)
