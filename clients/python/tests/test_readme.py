"""The README's examples run as written (against the test server, which also
serves demo/weather). The blocks fenced ```py (Credentials and TLS) need a
server with --auth and TLS: test_auth.py runs them."""

from __future__ import annotations

import re

from conftest import CLIENT_DIR

FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_readme_examples_run(data, capsys):
    text = (CLIENT_DIR / "README.md").read_text(encoding="utf-8")
    blocks = FENCE.findall(text)
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        code = block.replace("grpc://127.0.0.1:50051", data.url)
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README.md python block {i + 1} failed: {type(e).__name__}: {e}\n{block}") from e
    out = capsys.readouterr().out
    assert "unknown column" in out and "demo/weather" in out
    assert namespace["checkpoint"]["epoch"] == 1 and namespace["checkpoint"]["batches"] == 11
    assert sorted(k for batch in namespace["files"] for k in batch) == \
        ["tables/daily.csv", "tables/daily.jsonl", "tables/readings.parquet"]
