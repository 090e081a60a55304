#!/usr/bin/env python3
"""Scenario 6: push hashing throughput, Sheaf against quilt3 on the same folder, one run.

Measures, with the page cache warm and alternating the tools each round:
  - `sheaf hash` of every file (sha2-256-chunked, what push computes),
  - `sheaf push` to a fresh local registry (hashing plus copying every blob),
  - quilt3 `Package().set_dir(...).build(...)` to a fresh local registry
    (hashing; quilt3 references the files in place and copies nothing),
and reports medians, GB/s and the ratio quilt3 time / Sheaf time (>1 means
Sheaf is faster). Each quilt3 run gets an empty cache folder so no hash is
reused between rounds.
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def sheaf_bin() -> str:
    return str(h.sheaf_bin())


def make_tree(root: Path, big_files: int, big_mb: int, small_files: int) -> int:
    rng = random.Random(1234)
    total = 0
    block = rng.randbytes(1 << 20)
    for i in range(big_files):
        path = root / "big" / f"part-{i:03}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for j in range(big_mb):
                # Vary each MiB so blocks are not all identical.
                f.write(bytes([i, j % 256]) + block[2:])
        total += big_mb << 20
    for i in range(small_files):
        data = rng.randbytes(64 * 1024)
        path = root / "small" / f"{i // 50:02}" / f"f{i:04}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
    return total


QUILT3_BUILD = r"""
import sys, time, quilt3
src, reg = sys.argv[1], sys.argv[2]
t = time.perf_counter()
quilt3.Package().set_dir("/", src).build("bench/q", registry="file://" + reg)
print(time.perf_counter() - t)
"""


def time_quilt3(src: Path, scratch: Path) -> float:
    reg = Path(tempfile.mkdtemp(dir=scratch))
    home = Path(tempfile.mkdtemp(dir=scratch))
    env = dict(os.environ, XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), QUILT_DISABLE_USAGE_METRICS="true")
    out = subprocess.run([sys.executable, "-c", QUILT3_BUILD, str(src), str(reg)], env=env,
                         check=True, capture_output=True, text=True)
    shutil.rmtree(reg)
    shutil.rmtree(home)
    return float(out.stdout.strip().splitlines()[-1])


def time_sheaf(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sheaf_bin(), *args], check=True, capture_output=True, env=h.server_env())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and one round (for CI)")
    ap.add_argument("--out", help="markdown file (default benches/results/push_hash[.quick].md; "
                                  "a .json is written next to it)")
    opts = ap.parse_args()
    big_files, big_mb, small, rounds = (2, 16, 40, 1) if opts.quick else (4, 128, 400, 5)

    scratch = Path(tempfile.mkdtemp(prefix="sheaf-bench-"))
    try:
        src = scratch / "src"
        total = make_tree(src, big_files, big_mb, small)
        files = [str(p) for p in sorted(src.rglob("*")) if p.is_file()]
        # Warm the page cache and both tools' code paths once.
        time_sheaf(["hash", *files])
        time_quilt3(src, scratch)
        results: dict[str, list[float]] = {"sheaf hash": [], "sheaf push": [], "quilt3 build": []}
        for _ in range(rounds):
            results["sheaf hash"].append(time_sheaf(["hash", *files]))
            reg = Path(tempfile.mkdtemp(dir=scratch))
            results["sheaf push"].append(time_sheaf(["--registry", str(reg), "push", "bench/s", str(src)]))
            shutil.rmtree(reg)
            results["quilt3 build"].append(time_quilt3(src, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["quilt3 build"]
    gb = total / 1e9
    rows = [
        (name, f"{med[name]:.3f}", f"{gb / med[name]:.2f}", f"{base / med[name]:.2f}x")
        for name in results
    ]
    res = h.Result("6", "push_hash", "Push hashing: Sheaf vs quilt3 build", opts.quick)
    res.params = {"files": len(files), "bytes": total, "rounds": rounds}
    res.rows = [
        h.Row("Hashing a folder (`sheaf hash`) vs quilt3 `build`, GB/s", f"{gb / med['sheaf hash']:.2f}",
              f"{gb / base:.2f} quilt3 build", h.fmt_ratio(base / med["sheaf hash"])),
        h.Row("`sheaf push` to a local registry (hash + copy) vs quilt3 `build`, GB/s", f"{gb / med['sheaf push']:.2f}",
              f"{gb / base:.2f} quilt3 build", h.fmt_ratio(base / med["sheaf push"])),
    ]
    res.detail = [
        f"{len(files)} files, {total / 2**20:.0f} MiB, page cache warm, median of {rounds} round(s).",
        "",
        *h.md_table(["what", "seconds", "GB/s", "speed vs quilt3 build"], [list(r) for r in rows]),
        "",
        "`sheaf push` also copies every blob into the registry; quilt3 build copies nothing.",
    ]
    res.plot = {"bars": [{"label": k, "median": gb / med[k], "min": gb / max(v), "max": gb / min(v)}
                         for k, v in results.items()], "unit": "GB/s"}
    res.write(opts.out)
    print(json.dumps({k: v for k, v in med.items()}))


if __name__ == "__main__":
    main()
