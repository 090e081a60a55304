"""Fixtures for Sheaf's Python integration tests; helpers live in sheaf_testlib.

Run from the repository root:

    SHEAF_BIN=/path/to/sheaf python -m pytest tests/python

See sheaf_testlib for how the binary is found and how quilt3 is isolated.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

# Imported first: isolates quilt3 (XDG_* and metrics) before anything imports it.
from sheaf_testlib import (
    BUCKET,
    LIVE_SERVERS,
    QUILT_HOME,
    Sheaf,
    base_env,
    free_port,
    make_tree,
    start_server,
    terminate,
    write_tree,
)

# The Flight SQL suites' fixtures (data, server, connect, conn, duck).
pytest_plugins = ["sql_fixtures"]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(QUILT_HOME, ignore_errors=True)


@pytest.fixture
def registry(tmp_path) -> Path:
    """An empty local registry folder."""
    path = tmp_path / "registry"
    path.mkdir()
    return path


@pytest.fixture
def sheaf(registry) -> Sheaf:
    """Runs sheaf against the `registry` fixture unless `registry=` is given."""
    return Sheaf(str(registry))


@pytest.fixture
def tree(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """The standard tree (with the >8 MiB file) in a fresh folder."""
    root = tmp_path / "tree"
    return root, make_tree(root)


@pytest.fixture
def small_tree(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """The standard tree without the big file."""
    root = tmp_path / "small_tree"
    return root, make_tree(root, big=False)


@pytest.fixture(scope="session")
def quilt3():
    """The quilt3 module, isolated in a temporary XDG home."""
    try:
        import quilt3 as q
    except ImportError as e:  # pragma: no cover - environment problem
        pytest.fail(
            f"quilt3 is required for the compatibility tests but cannot be imported: {e}. "
            "Install it with `pip install quilt3==8.0.0`."
        )
    return q


@pytest.fixture(scope="session")
def quilt3_cli(quilt3):
    """A function running the `quilt3` command (next to sys.executable)."""
    exe = Path(sys.executable).parent / "quilt3"
    if not exe.exists():
        found = shutil.which("quilt3")
        if not found:
            pytest.fail(f"the quilt3 command is not next to {sys.executable} nor on PATH")
        exe = Path(found)

    def run(*args, timeout=300):
        try:
            return subprocess.run(
                [str(exe), *map(str, args)], capture_output=True, text=True, env=base_env(), timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, -9, "", f"timed out after {timeout}s")

    return run


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """A moto S3 server on a free loopback port with bucket `sheaf-test`.
    Yields the environment sheaf needs to reach it."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        found = shutil.which("moto_server")
        if not found:
            pytest.fail(
                f"moto_server is required for the S3 tests but is not next to {sys.executable} "
                "nor on PATH; install it with `pip install 'moto[server]==5.2.5'`."
            )
        exe = Path(found)
    try:
        import boto3
    except ImportError as e:  # pragma: no cover
        pytest.fail(f"boto3 is required for the S3 tests: {e}")

    log = tmp_path_factory.mktemp("moto") / "moto.log"
    port = free_port()
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=logf, stderr=subprocess.STDOUT, env=base_env()
        )
    endpoint = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                opener.open(endpoint + "/", timeout=1).read()
                break
            except urllib.error.HTTPError:
                break  # it answers, whatever it thinks of the request
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"moto_server did not answer on {endpoint} within 30s:\n{log.read_text(errors='replace')}"
                    )
                time.sleep(0.1)
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield {"env": env, "endpoint": endpoint, "client": client, "bucket": BUCKET}
    finally:
        terminate(proc, 10)


# --------------------------------------------------------------------------
# Arrow Flight (`sheaf serve`)
# --------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture(autouse=True)
def _dump_server_logs(request):
    """When a test fails, print what every running `sheaf serve` logged during
    it (shown under "Captured stdout teardown")."""
    if not LIVE_SERVERS:
        yield
        return
    marks = {id(s): s.log_size() for s in LIVE_SERVERS}
    yield
    rep = getattr(request.node, "rep_call", None) or getattr(request.node, "rep_setup", None)
    if rep is not None and rep.failed:
        for s in list(LIVE_SERVERS):
            print(f"\n----- stderr of sheaf serve at {s.url} (registry {s.registry}) during this test -----")
            print(s.stderr(marks.get(id(s), 0))[-20000:])


@pytest.fixture
def flight_server(request, tmp_path):
    """Starts `sheaf --registry REGISTRY serve --listen 127.0.0.1:0 ARGS...`;
    call as flight_server(registry, *args, json_out=False). Returns a
    sheaf_testlib.FlightServer (`.client` is a pyarrow FlightClient). Every
    server is stopped with SIGTERM at teardown; on failure its stderr is printed."""
    servers = []

    def start(registry, *args, **kw):
        kw.setdefault("log_dir", tmp_path / "serve-logs")
        server = start_server(registry, *args, **kw)
        servers.append(server)
        return server

    yield start
    failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
    for server in servers:
        code = server.stop()
        if failed:
            print(f"\n----- sheaf serve at {server.url} exited {code}; stderr -----\n{server.stderr()[-20000:]}")


@pytest.fixture(scope="session")
def flight_data(tmp_path_factory):
    """One server (with --demo) over a registry holding every kind of table:
    t/tables (types.parquet, a 3-part Parquet folder, CSV, TSV, JSON lines,
    Arrow IPC file and stream), t/big (a >64 MiB Parquet table, a single 24 MB
    IPC batch, a 5 MiB binary cell) and t/blob (a 5 MiB file)."""
    import flight_testlib as fl

    root = tmp_path_factory.mktemp("flight")
    registry = root / "registry"
    registry.mkdir()
    sheaf = Sheaf(str(registry))

    src = root / "tables"
    fl.write_parquet(src / "data" / "types.parquet", fl.types_table(), row_group_size=2000)
    for key, table in fl.parts_tables().items():
        fl.write_parquet(src / key, table, row_group_size=400)
    write_tree(
        src,
        {
            "parts/_SUCCESS": b"",
            "parts/notes.txt": b"not a part\n",
            "csv/data.csv": fl.csv_text(20_000, ",").encode(),
            "csv/data.tsv": fl.csv_text(3_000, "\t").encode(),
            "json/data.jsonl": fl.jsonl_text(5_000).encode(),
            "README.md": b"# t/tables\n",
        },
    )
    fl.write_ipc_file(src / "ipc" / "data.arrow", fl.ipc_table())
    fl.write_ipc_stream(src / "ipc" / "data.arrows", fl.ipc_table())

    big = root / "big"
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(range(4_000_000), pa.int64())
    fl.write_parquet(
        big / "big" / "numbers.parquet",
        pa.table({"id": ids, "f": pc.multiply(ids.cast(pa.float64()), 0.5), "g": pc.multiply(ids, 3)}),
        row_group_size=400_000,
    )
    one = pa.table({"id": pa.array(range(3_000_000), pa.int64())})
    fl.write_ipc_file(big / "big" / "one_batch.arrow", one, max_chunksize=None)
    cell = fl.big_cell_table()
    fl.write_parquet(big / "big" / "cell.parquet", cell)

    blob_src = root / "blob"
    write_tree(blob_src, {"blob.bin": fl.blob_bytes(), "small.txt": b"small\n"})

    sheaf.push("t/tables", src, "-m", "tables")
    sheaf.push("t/big", big, "-m", "big")
    sheaf.push("t/blob", blob_src, "-m", "blob")
    server = start_server(registry, "--demo", log_dir=root / "serve-logs")
    try:
        demo = root / "demo"
        sheaf.json("install", "demo/weather", "--dest", demo)
        data = fl.FlightData(server=server, registry=registry, src=src, big=big, blob_src=blob_src, demo=demo)
        for pkg in ("t/tables", "t/big", "t/blob", "demo/weather"):
            data.tops[pkg] = sheaf.json("log", pkg)[0]["top_hash"]
        yield data
    finally:
        server.stop()
