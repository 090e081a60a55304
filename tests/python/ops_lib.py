"""Helpers for `sheaf serve` as operators run it: starting and stopping it
with settings from a file, the environment and flags, and the HTTP endpoint
of --metrics-listen (plain GETs, /metrics parsed by the Prometheus project's
OpenMetrics parser, waiting for /readyz)."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from sheaf_testlib import SHEAF_BIN, base_env, terminate

#: No proxy, whatever the environment says: these are loopback addresses.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 10) -> tuple[int, str, str]:
    """(status, content type, body) of GET `url`, error statuses included."""
    try:
        with HTTP.open(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    status, content_type, text = http_get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("application/openmetrics-text"), (status, content_type)
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_ready(base: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_get(f"{base}/readyz")[0] == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"{base}/readyz never answered 200")


def run_serve(tmp_path, *args, env=None, config: str | None = None, registry=None, timeout=30):
    """Starts `sheaf serve ARGS` (with `--config FILE` when `config` is
    given) and returns (process, first stdout line, stderr path)."""
    cmd = [str(SHEAF_BIN)]
    if registry is not None:
        cmd += ["--registry", str(registry)]
    cmd += ["serve", *map(str, args)]
    if config is not None:
        path = tmp_path / f"sheaf-{time.monotonic_ns()}.toml"
        path.write_text(config)
        cmd += ["--config", str(path)]
    full = base_env()
    full.update({"NO_COLOR": "1", "RUST_LOG": "info"})
    full.update(env or {})
    log = tmp_path / f"serve-{time.monotonic_ns()}.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=full)
    line = proc.stdout.readline().decode()
    return proc, line, log


def stop(proc):
    terminate(proc, 20)
