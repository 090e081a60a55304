#!/usr/bin/env python3
"""PyTorch DataLoader throughput: batches streamed from Sheaf against the same
data read locally from Parquet with pyarrow, and from MosaicML Streaming's MDS
format, with 0, 1 and 2 DataLoader workers, side by side in one run.

    python benches/dataloader.py [--quick] --out benches/results/dataloader.md

- **Sheaf**: `ds.to_torch(batch_size=B, seed=0)` through `sheaf.torch.DataLoader`
  (its workers hand batches over through `sheaf._handoff`): the default order,
  blocks of the default `block_rows` rows permuted per epoch, rows shuffled inside
  each block (no `shuffle_buffer`), read by table position (`rows=`).
- **local Parquet**: the same Parquet file read with pyarrow in each worker,
  shuffled the same way (blocks of Sheaf's `block_rows` rows inside row groups,
  permuted per epoch, rows permuted inside each block; each block read with
  `read_row_group` and sliced), cut into batches of B rows, converted with
  `sheaf.torch.to_tensors` (zero-copy for numbers), through a plain
  `torch.utils.data.DataLoader` (`batch_size=None`): what a user does without Sheaf.
- **MosaicML Streaming** (when `import streaming` works; else skipped with a note):
  the same rows written once to MDS (`MDSWriter`, no compression; cached under
  `$SHEAF_CACHE/bench-data/`), read with `StreamingDataset(local=..., shuffle=True,
  batch_size=B, epoch_size=N)` and a `DataLoader(batch_size=B)`, its documented use.
  It reads and collates sample by sample, so its epochs are capped at N rows
  (`epoch_size`, drawn from the whole data set) to keep the run short; its workers
  start with forkserver (with fork, filelock 4 refuses Mosaic's inherited locks).

All loaders use the same batch size and `persistent_workers=True`, so rows/s is the
steady state of an epoch; the start-up of a fresh loader (forking workers,
connecting, the first batch) is timed apart, with 2 workers (fork; Sheaf and local
Parquet). Each round reads one epoch with each loader, the loaders alternating
(the order rotates), after one warm-up epoch each; the table gives medians and the
ratios Sheaf / local and Sheaf / Mosaic (above 1: Sheaf faster). The data (int64 id
and label, a fixed-size list of 16 float32 features) is generated deterministically;
the server is `$SHEAF_BIN serve` on loopback, started here (default binary:
$CARGO_TARGET_DIR/release/sheaf, else ${SHEAF_CACHE:-~/.cache/sheaf}/target/release/sheaf).
Writes PATH.md and PATH.json. No timing is asserted.
"""

from __future__ import annotations

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
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
# Measure the checked-out client: from its source folder when its generated
# protobuf module is there (an in-place build), else the installed package
# (clients/python/ci/test.sh, which scripts/test runs first, installs this checkout).
# SHEAF_CLIENT_SRC names another source folder (with its generated protobuf module) to measure.
CLIENT_SRC = Path(os.environ.get("SHEAF_CLIENT_SRC") or ROOT / "clients" / "python" / "src")
if (CLIENT_SRC / "sheaf" / "_proto" / "sheaf_pb2.py").exists():
    sys.path.insert(0, str(CLIENT_SRC))

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import sheaf  # noqa: E402
import sheaf.torch  # noqa: E402
import torch  # noqa: E402
import torch.utils.data  # noqa: E402

FEATURES = 16
BATCH = 1024
SETTINGS = {"in-process (num_workers=0)": 0, "1 worker": 1, "2 workers": 2}
LOADERS = ("sheaf", "local", "mosaic")
CACHE = Path(os.environ.get("SHEAF_CACHE", Path.home() / ".cache" / "sheaf"))


def make_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(20261121)
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


# ---------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------


class LocalParquet(torch.utils.data.IterableDataset):
    """The local baseline: the Parquet file read with pyarrow in each worker,
    shuffled at the granularity of Sheaf's default order: blocks of
    ``block_rows`` rows (cut inside row groups, as Sheaf cuts its pieces),
    permuted from (seed, epoch), rows permuted inside each block; the block
    sequence is cut into one contiguous run per worker, as Sheaf's workers do.
    A block is read with ``ParquetFile.read_row_group`` and sliced (pyarrow
    reads no less than a row group), cut into batches of ``batch_size`` (the
    last one of a worker may be short), converted with
    ``sheaf.torch.to_tensors`` (zero-copy for numbers)."""

    def __init__(self, path: Path, batch_size: int, block_rows: int, seed: int = 0):
        self.path, self.batch_size, self.seed, self.epoch = str(path), batch_size, seed, 0
        meta = pq.ParquetFile(self.path).metadata
        self.blocks = [
            (g, start, min(start + block_rows, n))
            for g in range(meta.num_row_groups)
            for n in [meta.row_group(g).num_rows]
            for start in range(0, n, block_rows)
        ]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.blocks))
        n = len(order)
        mine = order[worker * n // workers : (worker + 1) * n // workers]
        f = pq.ParquetFile(self.path)
        batcher = sheaf.torch._Rebatcher(self.batch_size)
        for k in mine:
            group, start, stop = self.blocks[int(k)]
            block = f.read_row_group(group).slice(start, stop - start)
            block = block.take(pa.array(rng.permutation(stop - start)))
            for batch in block.to_batches():
                for out in batcher.push(batch):
                    yield sheaf.torch.to_tensors(out)
        last = batcher.flush()
        if last is not None:
            yield sheaf.torch.to_tensors(last)


def mosaic_available() -> str | None:
    """None when MosaicML Streaming imports, else why not."""
    if importlib.util.find_spec("streaming") is None:
        return "mosaicml-streaming is not installed"
    try:
        import streaming  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure skips it
        return f"mosaicml-streaming does not import ({type(e).__name__}: {e})"
    return None


def mds_dir(table: pa.Table, rows: int) -> Path:
    """The table written once to MDS (cached; written to a temporary folder, then renamed)."""
    from streaming import MDSWriter

    out = CACHE / "bench-data" / f"dataloader-mds-{rows}-v1"
    if (out / "index.json").exists():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    ids = table.column("id").to_numpy()
    labels = table.column("label").to_numpy()
    features = table.column("features").combine_chunks().flatten().to_numpy().reshape(rows, FEATURES)
    columns = {"id": "int64", "label": "int64", "features": f"ndarray:float32:{FEATURES}"}
    t = time.perf_counter()
    with MDSWriter(out=str(tmp), columns=columns, compression=None, size_limit=1 << 26) as writer:
        for i in range(rows):
            writer.write({"id": ids[i], "label": labels[i], "features": features[i]})
    print(f"wrote {rows:,} rows to MDS in {time.perf_counter() - t:.0f} s: {out}", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def mosaic_dataset(path: Path, epoch_rows: int):
    from streaming import StreamingDataset

    try:
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
    except Exception:  # noqa: BLE001 - older or newer versions: nothing to clean
        pass
    return StreamingDataset(local=str(path), batch_size=BATCH, shuffle=True, shuffle_seed=0, epoch_size=epoch_rows)


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------


def epoch(loader) -> tuple[float, int]:
    """Seconds and rows for one pass; every batch is touched (a reduction over
    the features) as a training step would."""
    rows = 0
    t = time.perf_counter()
    for batch in loader:
        batch["features"].sum()
        rows += len(batch["id"])
    return time.perf_counter() - t, rows


def first_batch(loader) -> float:
    """Seconds from a fresh loader's iterator to its first batch (then stopped)."""
    t = time.perf_counter()
    it = iter(loader)
    next(it)
    secs = time.perf_counter() - t
    del it
    return secs


def fmt_rate(r: float | None) -> str:
    return "-" if r is None else f"{r:,.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or not b else f"{a / b:.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and one round (for CI)")
    ap.add_argument("--out", required=True, help="the markdown table to write (PATH.json is written too)")
    ap.add_argument("--no-mosaic", action="store_true", help="leave MosaicML Streaming out")
    opts = ap.parse_args()
    rows, group, rounds, mosaic_rows = (200_000, 20_000, 1, 10_240) if opts.quick else (4_000_000, 100_000, 5, 51_200)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    mosaic_note = "--no-mosaic" if opts.no_mosaic else mosaic_available()

    scratch = Path(tempfile.mkdtemp(prefix="sheaf-bench-dataloader-"))
    server = None
    seconds: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, dict[str, int]] = {}
    startup: dict[str, list[float]] = {"sheaf": [], "local": []}
    server_cpu: list[float] = []
    try:
        src = scratch / "pkg"
        src.mkdir()
        table = make_table(rows)
        parquet = src / "train.parquet"
        pq.write_table(table, parquet, row_group_size=group)
        mb = table.nbytes / 1e6
        mds = None
        if mosaic_note is None:
            try:
                mds = mds_dir(table, rows)
            except Exception as e:  # noqa: BLE001 - Mosaic is optional
                mosaic_note = f"writing MDS failed ({type(e).__name__}: {e})"
        del table
        registry = scratch / "registry"
        h.push(registry, "bench/train", src)
        server = h.start_sheaf(registry, scratch)
        server.client.close()  # no gRPC channel in this process when DataLoader workers fork
        url = server.url
        client = sheaf.connect(url, timeout=120)
        ds = client.dataset("sheaf://bench/train/train.parquet")
        train = ds.to_torch(batch_size=BATCH, seed=0)
        block_rows = train.source.streams[0].block_rows or rows
        local = LocalParquet(parquet, BATCH, block_rows)
        mosaic = mosaic_dataset(mds, mosaic_rows) if mds is not None else None
        # Workers first: a StreamingDataset iterated in this process no longer pickles for forkserver workers.
        for setting, workers in reversed(SETTINGS.items()):
            fork = {"multiprocessing_context": "fork", "persistent_workers": True} if workers else {}
            loaders = {
                "sheaf": sheaf.torch.DataLoader(train, num_workers=workers, **fork),
                "local": torch.utils.data.DataLoader(local, batch_size=None, num_workers=workers, **fork),
            }
            if mosaic is not None:
                extra = {"multiprocessing_context": "forkserver", "persistent_workers": True} if workers else {}
                loaders["mosaic"] = torch.utils.data.DataLoader(mosaic, batch_size=BATCH, num_workers=workers, **extra)
            for name, loader in loaders.items():  # warm-up: page cache, server caches, workers started
                print(f"{setting}: warm-up {name}", flush=True)
                epoch(loader)
            seconds[setting] = {name: [] for name in loaders}
            counts[setting] = {}
            names = list(loaders)
            for r in range(rounds):
                train.set_epoch(r + 1)
                local.epoch = r + 1
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    cpu0 = server.cpu()
                    secs, n = epoch(loaders[name])
                    if name == "sheaf" and workers:
                        server_cpu.append(server.cpu() - cpu0)
                    want = mosaic_rows if name == "mosaic" else rows
                    if n != want:
                        raise SystemExit(f"{name}, {setting}: read {n} rows, expected {want}")
                    seconds[setting][name].append(secs)
                    counts[setting][name] = n
            del loaders  # persistent workers end here
        for r in range(rounds):  # start-up of a fresh loader with 2 workers (fork, not persistent)
            fresh = {
                "sheaf": lambda: sheaf.torch.DataLoader(train, num_workers=2, multiprocessing_context="fork"),
                "local": lambda: torch.utils.data.DataLoader(
                    local, batch_size=None, num_workers=2, multiprocessing_context="fork"
                ),
            }
            for name in list(fresh)[r % 2 :] + list(fresh)[: r % 2]:
                startup[name].append(first_batch(fresh[name]()))
        endpoints = len(train.dataset.endpoints)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    table_rows, rps = [], {}
    for setting, by_loader in sorted(seconds.items(), key=lambda kv: SETTINGS[kv[0]]):
        rps[setting] = {k: counts[setting][k] / statistics.median(v) for k, v in by_loader.items()}
        r = rps[setting]
        table_rows.append(
            f"| {setting} | {fmt_rate(r['sheaf'])} | {fmt_rate(r['local'])} | {fmt_rate(r.get('mosaic'))} | "
            f"{fmt_ratio(r['sheaf'], r['local'])} | {fmt_ratio(r['sheaf'], r.get('mosaic'))} |"
        )
    ratios = {
        s: {
            "sheaf_vs_local": r["sheaf"] / r["local"],
            "sheaf_vs_mosaic": r["sheaf"] / r["mosaic"] if r.get("mosaic") else None,
        }
        for s, r in rps.items()
    }
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    when = datetime.date.today().isoformat()
    header = (
        f"{when} on {platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB; {rows:,} rows "
        f"(int64 id and label, {FEATURES} float32 features as one fixed-size list; {mb:.0f} MB in Arrow), "
        f"batch size {BATCH}, {endpoints} Sheaf endpoints / {rows // group} row groups; both Sheaf and local "
        f"Parquet shuffle blocks of {block_rows:,} rows (Sheaf's default `block_rows`; rows shuffled inside each "
        f"block); workers: fork, "
        f"persistent; median of {rounds} epoch(s) per loader after a warm-up epoch, loaders alternating; torch "
        f"{torch.__version__.split('+')[0]}, pyarrow {pa.__version__}. `sheaf serve` on loopback shares the "
        f"cores with the DataLoader."
    )
    if mosaic_note is None:
        import streaming

        mosaic_line = (
            f"MosaicML Streaming {streaming.__version__}: MDS without compression, `StreamingDataset` epochs of "
            f"{mosaic_rows:,} rows (`epoch_size`, shuffled over all {rows:,}), default collate, forkserver workers."
        )
    else:
        mosaic_line = f"MosaicML Streaming: not run ({mosaic_note})."
    med_start = {k: statistics.median(v) for k, v in startup.items() if v}
    lines = [
        f"# PyTorch DataLoader: Sheaf vs local Parquet and MosaicML Streaming ({'quick' if opts.quick else 'full'})",
        "",
        header,
        "",
        "| DataLoader | Sheaf rows/s | local Parquet rows/s | Mosaic rows/s | Sheaf vs local | Sheaf vs Mosaic |",
        "|---|---|---|---|---|---|",
        *table_rows,
        "",
        mosaic_line,
        "",
        f"Start-up of a fresh loader with 2 fork workers (to its first batch, median of {rounds}): Sheaf "
        f"{med_start['sheaf']:.3f} s, local Parquet {med_start['local']:.3f} s.",
        f"With workers, `sheaf serve` used {statistics.median(server_cpu):.2f} CPU-seconds per epoch.",
    ]
    out.write_text("\n".join(lines) + "\n")
    result = {
        "date": when,
        "quick": opts.quick,
        "rows": rows,
        "mb": round(mb, 1),
        "batch_size": BATCH,
        "settings": SETTINGS,
        "cores": os.cpu_count(),
        "endpoints": endpoints,
        "block_rows": block_rows,
        "rounds": rounds,
        "mosaic": mosaic_note or "ran",
        "mosaic_epoch_rows": mosaic_rows if mosaic_note is None else None,
        "seconds": seconds,
        "rows_read": counts,
        "rows_per_second": rps,
        "ratios": ratios,
        "startup_seconds": startup,
        "server_cpu_seconds": server_cpu,
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
