#!/usr/bin/env python3
"""Scenario 6: push hashing throughput, Sheaf against quilt3 on the same folder, one run.

Measures, with the page cache warm and alternating the tools each round:
  - `sheaf hash` of every file (sha2-256-chunked, what push computes),
  - `sheaf push` to a fresh local registry (hashing plus copying every blob,
    each file read once),
  - quilt3 `Package().set_dir(...).build(...)` to a fresh local registry
    (hashing; quilt3 references the files in place and copies nothing),
and reports medians, GB/s and the ratio quilt3 time / Sheaf time (>1 means
Sheaf is faster). quilt3 `push` is not measured: it pushes only to S3 ("Can only
'push' to remote registries in S3"; `build` is its local-registry command). Each
quilt3 run gets an empty cache folder so no hash is reused between rounds.

Where the machine allows it (root, mkfs.xfs, loop devices), the same folder is
also pushed on a real XFS file system with reflinks (an image loop-mounted in the
scratch folder, source and registries on it): there `sheaf push` stores each blob
as a copy-on-write clone of its source (FICLONE) and only hashes, and quilt3
builds from the same copy, side by side.

The full run also pushes a folder of many tiny files (per-file overheads), and
`SHEAF_PUSH_BASELINE=/path/to/older/sheaf` adds that binary's `sheaf push`,
timed in the same rounds (before/after comparisons on a shared machine).
"""

import argparse
import contextlib
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
    env = dict(
        os.environ,
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        QUILT_DISABLE_USAGE_METRICS="true",
    )
    out = subprocess.run(
        [sys.executable, "-c", QUILT3_BUILD, str(src), str(reg)], env=env, check=True, capture_output=True, text=True
    )
    shutil.rmtree(reg)
    shutil.rmtree(home)
    return float(out.stdout.strip().splitlines()[-1])


def time_sheaf(args: list[str], binary: str | None = None) -> float:
    t = time.perf_counter()
    subprocess.run([binary or sheaf_bin(), *args], check=True, capture_output=True, env=h.server_env())
    return time.perf_counter() - t


def make_tiny_tree(root: Path, n: int) -> int:
    rng = random.Random(99)
    for i in range(n):
        path = root / f"d{i // 1000:03}" / f"t{i:06}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(1024))
    return n * 1024


@contextlib.contextmanager
def xfs_mount(scratch: Path, size: int):
    """A fresh XFS file system with reflinks of `size` bytes mounted in
    `scratch`, or None (and why) where this machine cannot make one."""
    if os.geteuid() != 0 or not shutil.which("mkfs.xfs"):
        yield None, "needs root and mkfs.xfs (xfsprogs)"
        return
    image, mount = scratch / "xfs.img", scratch / "xfs"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(size)
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True, text=True)
    mounted = made.returncode == 0 and (
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True).returncode == 0
    )
    if not mounted:
        yield None, "could not make and loop-mount an XFS image here"
        return
    try:
        yield mount, None
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def cloned_files(src: Path, reg: Path) -> int:
    """Files `sheaf push` stored as clones (its --json report)."""
    out = subprocess.run(
        [sheaf_bin(), "--json", "--registry", str(reg), "push", "bench/s", str(src)],
        check=True,
        capture_output=True,
        env=h.server_env(),
    )
    return json.loads(out.stdout)["cloned_files"]


def push_rounds(
    src: Path, scratch: Path, rounds: int, baseline: str | None, files: list[str] | None
) -> dict[str, list[float]]:
    """Alternates the tools on `src`, `rounds` times; `files` adds `sheaf hash`."""
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        if files is not None:
            results.setdefault("sheaf hash", []).append(time_sheaf(["hash", *files]))
        for name, binary in [("sheaf push", None), ("sheaf push (baseline binary)", baseline)]:
            if name.endswith("(baseline binary)") and not baseline:
                continue
            reg = Path(tempfile.mkdtemp(dir=scratch))
            results.setdefault(name, []).append(
                time_sheaf(["--registry", str(reg), "push", "bench/s", str(src)], binary)
            )
            shutil.rmtree(reg)
        results.setdefault("quilt3 build", []).append(time_quilt3(src, scratch))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and one round (for CI)")
    ap.add_argument(
        "--out", help="markdown file (default benches/results/push_hash[.quick].md; a .json is written next to it)"
    )
    opts = ap.parse_args()
    big_files, big_mb, small, rounds = (2, 16, 40, 1) if opts.quick else (4, 128, 400, 5)
    tiny, tiny_rounds = (0, 0) if opts.quick else (20_000, 3)
    baseline = os.environ.get("SHEAF_PUSH_BASELINE")

    scratch = Path(tempfile.mkdtemp(prefix="sheaf-bench-"))
    try:
        src = scratch / "src"
        total = make_tree(src, big_files, big_mb, small)
        files = [str(p) for p in sorted(src.rglob("*")) if p.is_file()]
        # Warm the page cache and both tools' code paths once.
        time_sheaf(["hash", *files])
        time_quilt3(src, scratch)
        time_sheaf(["--registry", str(scratch / "warm"), "push", "bench/s", str(src)])
        shutil.rmtree(scratch / "warm")
        results = push_rounds(src, scratch, rounds, baseline, files)
        tiny_results: dict[str, list[float]] = {}
        if tiny:
            tiny_src = scratch / "tiny"
            make_tiny_tree(tiny_src, tiny)
            time_sheaf(["--registry", str(scratch / "warm"), "push", "bench/s", str(tiny_src)])
            shutil.rmtree(scratch / "warm")
            tiny_results = push_rounds(tiny_src, scratch, tiny_rounds, baseline, None)
        with xfs_mount(scratch, total * 4 + (512 << 20)) as (mount, why):
            xfs_results: dict[str, list[float]] = {}
            if mount:
                xsrc = mount / "src"
                shutil.copytree(src, xsrc)
                clones = cloned_files(xsrc, mount / "warm")
                if clones != len(files):
                    raise RuntimeError(f"sheaf push on XFS cloned {clones} of {len(files)} files")
                time_quilt3(xsrc, mount)
                shutil.rmtree(mount / "warm")
                xfs_results = push_rounds(xsrc, mount, rounds, None, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["quilt3 build"]
    gb = total / 1e9
    rows = [(name, f"{med[name]:.3f}", f"{gb / med[name]:.2f}", f"{base / med[name]:.2f}x") for name in results]
    res = h.Result("6", "push_hash", "Push hashing: Sheaf vs quilt3 build", opts.quick)
    res.params = {"files": len(files), "bytes": total, "rounds": rounds}
    res.rows = [
        h.Row(
            "Hashing a folder (`sheaf hash`) vs quilt3 `build`, GB/s",
            f"{gb / med['sheaf hash']:.2f}",
            f"{gb / base:.2f} quilt3 build",
            h.fmt_ratio(base / med["sheaf hash"]),
        ),
        h.Row(
            "`sheaf push` to a local registry (hash + copy) vs quilt3 `build`, GB/s",
            f"{gb / med['sheaf push']:.2f}",
            f"{gb / base:.2f} quilt3 build",
            h.fmt_ratio(base / med["sheaf push"]),
            goal=">= 1.0x",
            status="met" if base / med["sheaf push"] >= 1.0 else "short",
        ),
    ]
    res.detail = [
        f"{len(files)} files, {total / 2**20:.0f} MiB, page cache warm, median of {rounds} round(s).",
        "",
        *h.md_table(["what", "seconds", "GB/s", "speed vs quilt3 build"], [list(r) for r in rows]),
        "",
        "`sheaf push` also copies every blob into the registry (reading each file once: hashed while it is "
        "written); quilt3 build copies nothing (quilt3 `push` goes to S3 only).",
    ]
    if xfs_results:
        xmed = {k: statistics.median(v) for k, v in xfs_results.items()}
        xbase = xmed["quilt3 build"]
        ratio = xbase / xmed["sheaf push"]
        res.rows.append(
            h.Row(
                "`sheaf push` with copy on write (XFS reflinks, registry beside the source) vs quilt3 `build` "
                "on the same XFS, GB/s",
                f"{gb / xmed['sheaf push']:.2f}",
                f"{gb / xbase:.2f} quilt3 build",
                h.fmt_ratio(ratio),
                goal=">= 1.0x",
                status="met" if ratio >= 1.0 else "short",
            )
        )
        res.detail += [
            "",
            f"The same {len(files)} files on a real XFS file system with reflinks (a loop-mounted image; source and "
            f"registries on it): every blob a copy-on-write clone of its source (checked: `cloned_files` = "
            f"{len(files)}), so the push hashes and writes no data. Median of {rounds} round(s):",
            "",
            *h.md_table(
                ["what", "seconds", "GB/s", "speed vs quilt3 build"],
                [[k, f"{v:.3f}", f"{gb / v:.2f}", f"{xbase / v:.2f}x"] for k, v in xmed.items()],
            ),
        ]
    else:
        res.notes.append(f"Copy on write not measured: {why}.")
    if tiny_results:
        tmed = {k: statistics.median(v) for k, v in tiny_results.items()}
        tbase = tmed["quilt3 build"]
        res.params["tiny_files"] = tiny
        res.rows.append(
            h.Row(
                f"`sheaf push` of {tiny:,} files of 1 KiB vs quilt3 `build`, files/s",
                f"{tiny / tmed['sheaf push']:,.0f}",
                f"{tiny / tbase:,.0f} quilt3 build",
                h.fmt_ratio(tbase / tmed["sheaf push"]),
            )
        )
        res.detail += [
            "",
            f"{tiny:,} files of 1 KiB, median of {tiny_rounds} round(s):",
            "",
            *h.md_table(
                ["what", "seconds", "files/s", "speed vs quilt3 build"],
                [[k, f"{v:.3f}", f"{tiny / v:,.0f}", f"{tbase / v:.2f}x"] for k, v in tmed.items()],
            ),
        ]
    res.plot = {
        "bars": [
            {"label": k, "median": gb / med[k], "min": gb / max(v), "max": gb / min(v)} for k, v in results.items()
        ],
        "unit": "GB/s",
    }
    res.write(opts.out)
    print(json.dumps({k: v for k, v in med.items()}))


if __name__ == "__main__":
    main()
