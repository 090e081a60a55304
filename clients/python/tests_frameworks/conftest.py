"""Fixtures for the framework adapters' suite (TensorFlow, numpy/JAX, Hugging
Face datasets, Ray Data): the main suite's server fixtures, loaded from
clients/python/tests/conftest.py by path (one real `sheaf serve` on loopback
over a temporary registry holding the test packages), plus one local Ray
cluster for the module that needs it.

Run by clients/python/ci/test-frameworks.sh, in its own venv
(requirements-frameworks.txt): these frameworks are too heavy for the main one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # testdata.py, imported by the main conftest

_spec = importlib.util.spec_from_file_location("sheaf_main_conftest", TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
main = importlib.util.module_from_spec(_spec)
sys.modules["sheaf_main_conftest"] = main
_spec.loader.exec_module(main)

# Fixtures and hooks, re-exported so pytest registers them for this folder.
data = main.data
client = main.client
_server_log_on_failure = main._server_log_on_failure
pytest_runtest_makereport = main.pytest_runtest_makereport
pytest_sessionstart = main.pytest_sessionstart
TIMEOUT = main.TIMEOUT
CLIENT_DIR = main.CLIENT_DIR


def pytest_configure(config):
    # Ray spawns its processes (fork+exec) after JAX is imported, which JAX warns about;
    # Ray Data reads its own deprecated settings. Neither is about the code under test.
    config.addinivalue_line("filterwarnings", "ignore:os.fork\\(\\) was called:RuntimeWarning")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="session")
def ray_cluster():
    """One small local Ray cluster for the session (starting one takes ~10 s on 2 cores)."""
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    logging.getLogger("ray").setLevel(logging.WARNING)  # a failing test's captured log stays readable
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()
