#!/usr/bin/env python3
"""Runs every benchmark scenario, then writes benches/results/summary[.quick].md
and .png (benches/summary.py). Called by benches/run; usable on its own:

    python benches/run_all.py [--quick] [--only 1,3]

Each scenario is its own process (benches/<name>.py) writing
benches/results/<name>[.quick].md and .json. Scenario 7 runs the client
benchmarks of the other components when their scripts exist
(benches/dataloader.py, benches/spark_read.py); a missing one is reported as
"not run (client not built)". A scenario that fails is reported in the summary
and makes the run exit 1 after the summary is written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

SCENARIOS = [
    ("1", "flight_read"),
    ("2", "transfer"),
    ("3", "selective"),
    ("4", "ttfb"),
    ("5", "concurrency"),
    ("6", "push_hash"),
    ("8", "tls"),
    ("9", "scale"),
    ("10", "replicas"),
]
# Scenarios that need longer than the default limit in a full run (scale: trees of
# 10k, 100k and 1M files, each step once per tool; about an hour here).
FULL_LIMITS = {"scale": 3 * 3600}
CLIENTS = [
    ("dataloader", "PyTorch DataLoader over Sheaf vs local Parquet"),
    ("cache_random", "Python client: cached re-read vs wire read, random access vs local pyarrow"),
    ("spark_read", "Spark read through the connector vs spark.read.parquet"),
    ("write_python", "Python client write vs pq.write_table to a local file"),
    ("spark_write", "Spark write through the connector vs df.write.parquet"),
    ("sql", "Flight SQL through ADBC vs DuckDB on the same local Parquet"),
]


def run(cmd: list[str], timeout: float) -> tuple[int, float]:
    h.progress("$ " + " ".join(cmd))
    t0 = time.monotonic()
    try:
        # Own process group, so a timeout ends the scenario and the servers it started.
        p = subprocess.Popen(cmd, cwd=h.ROOT, start_new_session=True)
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 15)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
            h.progress(f"timed out after {timeout:.0f} s")
            code = 124
    except OSError as e:
        h.progress(f"cannot run: {e}")
        code = 127
    return code, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    opts = ap.parse_args()
    only = set(opts.only.split(",")) if opts.only else None
    suffix = ".quick" if opts.quick else ""
    flag = ["--quick"] if opts.quick else []
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    h.check_sheaf_binary()
    facts = h.binary_facts()
    pinned = Path(tempfile.mkdtemp(prefix="sheaf-bench-bin-"))
    shutil.copy2(h.sheaf_bin(), pinned / "sheaf")
    os.environ["SHEAF_BENCH_BIN_ORIGIN"] = f"{facts['sheaf_bin']}|{facts['sheaf_bin_mtime']}"
    os.environ["SHEAF_BIN"] = str(pinned / "sheaf")
    try:
        code = run_scenarios(opts, only, suffix, flag)
    finally:
        shutil.rmtree(pinned, ignore_errors=True)
    sys.exit(code)


def run_scenarios(opts, only, suffix, flag) -> int:
    run_info = {
        "started": h.machine(),
        "busy_at_start": h.busy_processes(),
        "binary": h.binary_facts(),
        "command": "benches/run" + (" --quick" if opts.quick else ""),
        "scenarios": {},
        "clients": {},
    }
    limit = 600 if opts.quick else 1800
    t_start = time.monotonic()
    for num, name in SCENARIOS:
        if only and num not in only:
            continue
        out = h.RESULTS / f"{name}{suffix}.md"
        out.with_suffix(".json").unlink(missing_ok=True)
        code, secs = run(
            [sys.executable, str(h.BENCHES / f"{name}.py"), *flag, "--out", str(out)],
            limit if opts.quick else FULL_LIMITS.get(name, limit),
        )
        ok = code == 0 and out.with_suffix(".json").exists()
        run_info["scenarios"][num] = {"name": name, "exit": code, "seconds": round(secs, 1), "ok": ok}
    if not only or "7" in only:
        for name, title in CLIENTS:
            script = h.BENCHES / f"{name}.py"
            out = h.RESULTS / f"{name}{suffix}.md"
            if not script.exists():
                run_info["clients"][name] = {"title": title, "status": "not run (client not built)"}
                continue
            out.unlink(missing_ok=True)
            code, secs = run([sys.executable, str(script), *flag, "--out", str(out)], limit)
            run_info["clients"][name] = {
                "title": title,
                "exit": code,
                "seconds": round(secs, 1),
                "status": "ran" if code == 0 and out.exists() else f"failed (exit {code})",
                "md": out.name,
            }
    run_info["ended"] = h.machine()
    run_info["busy_at_end"] = h.busy_processes()
    run_info["seconds"] = round(time.monotonic() - t_start, 1)
    run_path = h.RESULTS / f"run{suffix}.json"
    if only:
        # A partial run updates the record of the last run: the other scenarios' results are still its.
        try:
            prev = json.loads(run_path.read_text())
        except (OSError, ValueError):
            prev = None
        if prev:
            prev["scenarios"].update(run_info["scenarios"])
            if "7" in only:
                prev["clients"] = run_info["clients"]
            prev.setdefault("reruns", []).append(
                {
                    "only": sorted(only),
                    "date": run_info["started"]["date"],
                    "loadavg": run_info["started"]["loadavg"],
                    "binary": run_info["binary"],
                }
            )
            run_info = prev
    run_path.write_text(json.dumps(run_info, indent=1))

    import summary

    summary.build(quick=opts.quick)
    failed = [f"{n} ({v['name']}, exit {v['exit']})" for n, v in run_info["scenarios"].items() if not v["ok"]]
    failed += [f"7 ({k}: {v['status']})" for k, v in run_info["clients"].items() if v["status"].startswith("failed")]
    if failed:
        h.progress("FAILED: " + ", ".join(failed))
        return 1
    h.progress(f"all scenarios ran in {run_info['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    main()
