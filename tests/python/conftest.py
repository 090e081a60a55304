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
from sheaf_testlib import BUCKET, QUILT_HOME, Sheaf, base_env, free_port, make_tree


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
        pytest.fail(f"quilt3 is required for the compatibility tests but cannot be imported: {e}. "
                    "Install it with `pip install quilt3==8.0.0`.")
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
            return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                                  env=base_env(), timeout=timeout)
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
            pytest.fail(f"moto_server is required for the S3 tests but is not next to {sys.executable} "
                        "nor on PATH; install it with `pip install 'moto[server]==5.2.5'`.")
        exe = Path(found)
    try:
        import boto3
    except ImportError as e:  # pragma: no cover
        pytest.fail(f"boto3 is required for the S3 tests: {e}")

    log = tmp_path_factory.mktemp("moto") / "moto.log"
    port = free_port()
    with open(log, "wb") as logf:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=logf, stderr=subprocess.STDOUT,
                                env=base_env())
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
                    pytest.fail(f"moto_server did not answer on {endpoint} within 30s:\n{log.read_text(errors='replace')}")
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
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield {"env": env, "endpoint": endpoint, "client": client, "bucket": BUCKET}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
