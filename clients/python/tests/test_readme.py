"""The README's examples run as written (against the test server, which also
serves demo/weather), each in a namespace of its own, in order, in one
scratch folder (the resume example reads the checkpoint the training example
wrote), as scripts/test-docs runs them. The blocks fenced ```py no-test
(Credentials and TLS) need a server with --auth and TLS: test_auth.py runs
them."""

from __future__ import annotations

import re

from conftest import CLIENT_DIR

FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_readme_examples_run(data, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (CLIENT_DIR / "README.md").read_text(encoding="utf-8")
    blocks = FENCE.findall(text)
    assert len(blocks) >= 8
    namespaces = []
    for i, block in enumerate(blocks):
        assert "grpc://127.0.0.1:50051" in block or "sheaf.connect" not in block
        code = block.replace("grpc://127.0.0.1:50051", data.url)
        namespace: dict = {"__name__": "readme"}
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README.md python block {i + 1} failed: {type(e).__name__}: {e}\n{block}") from e
        namespaces.append(namespace)
    out = capsys.readouterr().out
    assert "unknown column" in out and "demo/weather" in out
    assert "UNKNOWN_COLUMN nope demo/weather tables/readings.parquet" in out
    assert "ALREADY_EXISTS daily" in out and "SCHEMA_MISMATCH temp_c" in out  # Writing
    assert "sheaf-python" in out and "team/means" in out  # Lineage
    resumed = [ns for ns in namespaces if "checkpoint" in ns]
    assert len(resumed) == 2 and all(ns["checkpoint"]["epoch"] == 1 for ns in resumed)
    assert all(ns["checkpoint"]["batches"] == 11 for ns in resumed)
    (files,) = [ns["files"] for ns in namespaces if "files" in ns]
    assert sorted(k for batch in files for k in batch) == [
        "tables/daily.csv",
        "tables/daily.jsonl",
        "tables/readings.parquet",
    ]
