#!/usr/bin/env python3
"""The Python client's local cache and random access, side by side in one run.

    python benches/cache_random.py [--quick] --out benches/results/cache_random.md

1. Re-read from the local cache (sheaf.connect(..., cache=DIR)) against the
   wire read of the same pinned table (`Dataset.to_table()`, no cache), and
   pyarrow reading the same Parquet file locally. Cached reads are timed two
   ways: by a fresh Cache object (what a new process sees: every entry's
   CRC-32 is checked once) and again by the same one (entries already opened;
   the structural check only). Ratio: wire seconds / cached seconds (the goal
   is >= 5x).
2. Random access: `Dataset.take(k random positions)` (one `rows=` request; the
   server reads only the pages holding them), the same take served from the
   local cache (`fill_cache=True` beforehand), and locally with pyarrow on the
   same Parquet file: `Table.take` on the table already in memory, and reading
   only the row groups holding the rows (`ParquetFile.read_row_groups`, then
   take). Median latency of several draws per k.

The data (int64 id and label, 16 float32 features as a fixed-size list) is
generated deterministically and written with a page index; the server is
`$SHEAF_BIN serve` on loopback, started here. Writes PATH.md and PATH.json.
No timing is asserted.
"""

from __future__ import annotations

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SRC = ROOT / "clients" / "python" / "src"
if (CLIENT_SRC / "sheaf" / "_proto" / "sheaf_pb2.py").exists():
    sys.path.insert(0, str(CLIENT_SRC))

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import sheaf  # noqa: E402
import sheaf.cache  # noqa: E402

FEATURES = 16
URI = "sheaf://bench/train/train.parquet"


def make_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(20261130)
    features = pa.FixedSizeListArray.from_arrays(
        pa.array(rng.standard_normal(rows * FEATURES, dtype=np.float32)), FEATURES
    )
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "label": pa.array(rng.integers(0, 10, rows, dtype=np.int64)),
            "features": features,
        }
    )


def timed(f) -> tuple[float, object]:
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def median(v: list[float]) -> float:
    return statistics.median(v) if v else float("nan")


def read_benchmark(url: str, parquet: Path, cache_dir: Path, rounds: int, want: pa.Table) -> dict:
    """Seconds per full read: wire, cache (fresh Cache object / same one), local pyarrow."""
    secs: dict[str, list[float]] = {k: [] for k in ("wire", "fill", "cache_fresh", "cache_warm", "local_parquet")}
    secs["cache_fresh_structure_only"] = []
    plain = sheaf.connect(url, timeout=300)
    ds = plain.dataset(URI)
    t, table = timed(ds.to_table)  # warm-up: page cache, server caches
    assert table.equals(want)
    with sheaf.connect(url, timeout=300, cache=cache_dir, max_cache_bytes=1 << 40) as filler:
        t, table = timed(filler.dataset(URI).to_table)
        secs["fill"].append(t)
        assert table.equals(want)
        entries = filler.cache.info()
    for _ in range(rounds):
        t, table = timed(ds.to_table)
        secs["wire"].append(t)
        for verify, name in (("full", "cache_fresh"), ("structure", "cache_fresh_structure_only")):
            cache = sheaf.cache.Cache(cache_dir, 1 << 40, verify=verify)
            with sheaf.connect(url, timeout=300, cache=cache) as c:
                cds = c.dataset(URI)
                t, table = timed(cds.to_table)
                secs[name].append(t)
                assert c.cache.stats.misses == 0, "the cached read missed"
                t, table = timed(cds.to_table)
                if verify == "full":
                    secs["cache_warm"].append(t)
        t, table = timed(lambda: pq.read_table(parquet))
        secs["local_parquet"].append(t)
    plain.close()
    return {"seconds": secs, "entries": entries.entries, "cache_bytes": entries.bytes}


def random_benchmark(url: str, parquet: Path, cache_dir: Path, rows: int, ks: list[int], draws: int) -> dict:
    """Median seconds of take(k random positions) per k, per way."""
    rng = np.random.default_rng(7)
    local = pq.read_table(parquet).combine_chunks()  # one chunk: Table.take then copies nothing else
    pf = pq.ParquetFile(parquet)
    group_rows = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
    group_start = np.concatenate(([0], np.cumsum(group_rows)))
    plain = sheaf.connect(url, timeout=300)
    # Typed requests (keyword arguments): one request holds up to 100,000 ranges (a URI: 64 KiB of them).
    ds = plain.dataset(package="bench/train", path="train.parquet")
    cached = sheaf.connect(url, timeout=300, cache=cache_dir, max_cache_bytes=1 << 40)
    cds = cached.dataset(package="bench/train", path="train.parquet")
    cds.take(np.arange(0, rows, 1000), fill_cache=True)  # every cache entry stored before timing
    try:
        ds.take([0, rows - 1])  # warm-up: connection, server caches
    except sheaf.SheafError:
        pass  # reported below
    out: dict[str, dict[str, list[float]]] = {}
    error = None
    for k in ks:
        res: dict[str, list[float]] = {"sheaf_take": [], "sheaf_take_cached": [], "local_take": [], "local_groups": []}
        for _ in range(draws):
            idx = rng.integers(0, rows, k)
            want = local.take(pa.array(idx))
            if error is None:
                try:
                    t, got = timed(lambda idx=idx: ds.take(idx))
                    assert got.equals(want), "take differs from the table"
                    res["sheaf_take"].append(t)
                except sheaf.SheafError as e:
                    error = f"{type(e).__name__}: {e}"
            t, got = timed(lambda idx=idx: cds.take(idx, fill_cache=True))
            assert got.equals(want)
            res["sheaf_take_cached"].append(t)
            t, got = timed(lambda idx=idx: local.take(pa.array(idx)))
            res["local_take"].append(t)

            def by_groups(idx=idx):
                g = np.searchsorted(group_start, idx, side="right") - 1
                groups = np.unique(g)
                part = pf.read_row_groups([int(x) for x in groups])
                starts = np.concatenate(([0], np.cumsum([group_rows[x] for x in groups])))
                return part.take(pa.array(starts[np.searchsorted(groups, g)] + idx - group_start[g]))

            t, got = timed(by_groups)
            assert got.equals(want)
            res["local_groups"].append(t)
        out[str(k)] = res
    plain.close()
    cached.close()
    return {"seconds": out, "take_error": error}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and one round (for CI)")
    ap.add_argument("--out", required=True, help="the markdown table to write (PATH.json is written too)")
    opts = ap.parse_args()
    rows, group, rounds, draws = (200_000, 20_000, 1, 3) if opts.quick else (4_000_000, 100_000, 5, 7)
    ks = [1, 10, 100, 1_000] if opts.quick else [1, 10, 100, 1_000, 10_000]
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    scratch = Path(tempfile.mkdtemp(prefix="sheaf-bench-cache-"))
    server = None
    try:
        src = scratch / "pkg"
        src.mkdir()
        table = make_table(rows)
        parquet = src / "train.parquet"
        pq.write_table(table, parquet, row_group_size=group, write_page_index=True)
        mb = table.nbytes / 1e6
        registry = scratch / "registry"
        h.push(registry, "bench/train", src)
        server = h.start_sheaf(registry, scratch)
        url = server.url
        reads = read_benchmark(url, parquet, scratch / "cache-read", rounds, table)
        del table
        random = random_benchmark(url, parquet, scratch / "cache-random", rows, ks, draws)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    s = reads["seconds"]
    wire = median(s["wire"])
    read_rows = []
    labels = {
        "wire": "wire read (`to_table()`, no cache)",
        "fill": "first read with the cache (wire + storing)",
        "cache_fresh": "cached re-read, fresh process view (CRC-32 + structure checked)",
        "cache_fresh_structure_only": 'cached re-read, fresh view, `verify="structure"` (no CRC)',
        "cache_warm": "cached re-read, entries already opened",
        "local_parquet": "local `pq.read_table` of the same file",
    }
    ratios = {}
    for name, label in labels.items():
        m = median(s[name])
        ratios[name] = wire / m if m > 0 else float("nan")
        read_rows.append(f"| {label} | {m:.3f} | {rows / m / 1e6:,.1f} | {mb / m:,.0f} | {ratios[name]:.1f}x |")
    rnd = random["seconds"]
    random_rows = []
    for k, res in rnd.items():
        cells = [f"{median(res[w]) * 1e3:,.2f}" if res[w] else "n/a" for w in res]
        random_rows.append(f"| {int(k):,} | " + " | ".join(cells) + " |")
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    when = datetime.date.today().isoformat()
    header = (
        f"{when} on {platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB; {rows:,} rows "
        f"(int64 id and label, {FEATURES} float32 features; {mb:.0f} MB in Arrow), row groups of {group:,} rows "
        f"with a page index; {reads['entries']} cache entries, {reads['cache_bytes'] / 1e6:,.0f} MB on disk; "
        f"pyarrow {pa.__version__}. `sheaf serve` on loopback shares the cores with the client."
    )
    lines = [
        f"# Python client: local cache and random access ({'quick' if opts.quick else 'full'})",
        "",
        header,
        "",
        f"## Full read (median of {rounds} round(s))",
        "",
        "| read | seconds | M rows/s | MB/s | vs wire |",
        "|---|---|---|---|---|",
        *read_rows,
        "",
        f"## Random access: take(k random positions), median ms of {draws} draws",
        "",
        "| k | Sheaf `take` (rows= request) | Sheaf `take` from the cache "
        "| local `Table.take` (table in memory, one chunk) | local: read the row groups holding them, then take |",
        "|---|---|---|---|---|",
        *random_rows,
    ]
    if random["take_error"]:
        lines += ["", f"Sheaf `take` failed: {random['take_error']}"]
    out.write_text("\n".join(lines) + "\n")
    result = {
        "date": when,
        "quick": opts.quick,
        "rows": rows,
        "mb": round(mb, 1),
        "row_group_rows": group,
        "cores": os.cpu_count(),
        "reads": reads,
        "ratio_vs_wire": ratios,
        "random": random,
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
