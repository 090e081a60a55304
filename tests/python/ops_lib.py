"""HTTP helpers for the operators' endpoint of `sheaf serve --metrics-listen`:
plain GETs, /metrics parsed by the Prometheus project's OpenMetrics parser,
waiting for /readyz."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

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
