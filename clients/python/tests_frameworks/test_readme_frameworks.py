"""The README's examples for TensorFlow, numpy/JAX, Hugging Face and Ray run as
written (against the test server, which also serves demo/weather), in order,
in one scratch folder. They are fenced ```python no-test, which
scripts/test-docs and tests/test_readme.py skip: their venv has none of these
frameworks."""

from __future__ import annotations

import json
import re

from conftest import CLIENT_DIR

HEADING = "## TensorFlow, numpy and JAX, Hugging Face, Ray"
FENCE = re.compile(r"```python no-test\n(.*?)```", re.DOTALL)


def section(text: str) -> str:
    """The README's section for these frameworks (up to the next ## heading)."""
    start = text.find(HEADING + "\n")
    assert start >= 0, f"README.md has no section {HEADING!r}"
    end = text.find("\n## ", start + len(HEADING))
    return text[start : end if end >= 0 else len(text)]


def run_blocks(text: str, url: str) -> list[dict]:
    namespaces = []
    for i, block in enumerate(FENCE.findall(section(text))):
        code = block.replace("grpc://127.0.0.1:50051", url)
        namespace: dict = {"__name__": "readme"}
        try:
            exec(compile(code, f"README.md frameworks block {i + 1}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README.md frameworks block {i + 1} failed: {type(e).__name__}: {e}\n{block}") from e
        namespaces.append(namespace)
    return namespaces


def test_readme_framework_examples_run(data, ray_cluster, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespaces = run_blocks((CLIENT_DIR / "README.md").read_text(encoding="utf-8"), data.url)
    assert len(namespaces) == 4
    out = capsys.readouterr().out
    assert "87 batches left in epoch 1" in out
    assert "dtype=tf.string" in out and "Value('string')" in out
    assert "10 100000" in out
    numpy_ns, _, hf_ns, _ = namespaces
    assert numpy_ns["checkpoint"]["epoch"] == 1
    saved = json.loads((tmp_path / "tf-checkpoint.json").read_text())
    assert saved["epoch"] == 1 and saved["batches"] == 11
    assert hf_ns["state"]["epoch"] == 3
