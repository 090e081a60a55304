#!/usr/bin/env python3
"""PyTorch DataLoader throughput: batches streamed from Sheaf against the same
DataLoader reading the same Parquet file locally with pyarrow, side by side in
one run.

    python benches/dataloader.py [--quick] --out benches/results/dataloader.md

Both sides give the DataLoader an IterableDataset of dict-of-tensor batches,
with the same batch size, the same workers, shuffled shard order (Sheaf:
endpoints; local: row groups, dealt to workers by the same rule) and the same
Arrow-to-tensor conversion (sheaf.torch.to_tensors, zero-copy for numbers).
Two settings: in-process (num_workers=0: the data path alone) and 2 fork
workers (what training uses; batches then cross processes through shared
memory, which costs both sides the same). Each round reads one epoch with each
loader, alternating; the table gives medians of rows per second and the ratio
Sheaf / local (above 1: Sheaf faster). The data (int64 id and label, a
fixed-size list of 16 float32 features) is generated deterministically; the
server is `$SHEAF_BIN serve` on loopback, started here (default binary:
$CARGO_TARGET_DIR/release/sheaf, else ${SHEAF_CACHE:-~/.cache/sheaf}/target/release/sheaf). Writes PATH.md and
PATH.json. No timing is asserted.
"""

from __future__ import annotations

import os
import sys

# pyarrow's allocator (mimalloc) returns memory to the OS after each read unless
# told otherwise, which makes client figures swing (0.4-3.3 GB/s on this machine);
# both loaders run in this process with the same setting. Set before pyarrow loads.
if os.environ.get("MIMALLOC_PURGE_DELAY") != "-1" and __name__ == "__main__":
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, "MIMALLOC_PURGE_DELAY": "-1"})

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Measure the checked-out client: from its source folder when its generated
# protobuf module is there (an in-place build), else the installed package
# (clients/python/ci/test.sh, which scripts/test runs first, installs this checkout).
CLIENT_SRC = ROOT / "clients" / "python" / "src"
if (CLIENT_SRC / "sheaf" / "_proto" / "sheaf_pb2.py").exists():
    sys.path.insert(0, str(CLIENT_SRC))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import sheaf  # noqa: E402
import sheaf.torch  # noqa: E402
import torch  # noqa: E402
import torch.utils.data  # noqa: E402
from sheaf import _schedule  # noqa: E402

FEATURES = 16
BATCH = 1024
SETTINGS = {"in-process (num_workers=0)": 0, "2 fork workers": 2}


def sheaf_bin() -> str:
    if os.environ.get("SHEAF_BIN"):
        return os.environ["SHEAF_BIN"]
    if os.environ.get("CARGO_TARGET_DIR"):
        return str(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "sheaf")
    cache = Path(os.environ.get("SHEAF_CACHE", Path.home() / ".cache" / "sheaf"))
    return str(cache / "target" / "release" / "sheaf")


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


class LocalParquet(torch.utils.data.IterableDataset):
    """The baseline: the same Parquet file read with pyarrow in each worker.
    Row groups play the role of Sheaf's endpoints: permuted from (seed, epoch)
    and dealt to workers with the same rule, read with iter_batches."""

    def __init__(self, path: Path, batch_size: int, seed: int = 0):
        self.path, self.batch_size, self.seed, self.epoch = str(path), batch_size, seed, 0
        self.group_rows = [
            pq.ParquetFile(self.path).metadata.row_group(i).num_rows
            for i in range(pq.ParquetFile(self.path).metadata.num_row_groups)
        ]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        units = _schedule.make_units(self.group_rows, workers)
        assert all(u.rows == self.group_rows[u.piece] for u in units), "more workers than row groups"
        dealt = _schedule.deal(units, _schedule.permutation(len(units), self.seed, self.epoch), workers)
        groups = [u.piece for u in dealt[worker]]
        f = pq.ParquetFile(self.path)
        batcher = sheaf.torch._Rebatcher(self.batch_size)
        for group in groups:
            for batch in f.iter_batches(batch_size=65_536, row_groups=[group]):
                for out in batcher.push(batch):
                    yield sheaf.torch.to_tensors(out)
        last = batcher.flush()
        if last is not None:
            yield sheaf.torch.to_tensors(last)


def epoch(loader) -> tuple[float, int]:
    """Seconds and rows for one pass; every batch is touched (a reduction over
    the features) as a training step would."""
    rows = 0
    t = time.perf_counter()
    for batch in loader:
        batch["features"].sum()
        rows += len(batch["id"])
    return time.perf_counter() - t, rows


def start_server(registry: Path, log: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sheaf_bin(), "--registry", str(registry), "serve", "--listen", "127.0.0.1:0"]
    logf = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=logf)
    out, deadline = b"", time.monotonic() + 60
    while b"\n" not in out:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{' '.join(cmd)} did not start:\n{log.read_text(errors='replace')}")
        if select.select([proc.stdout], [], [], 0.5)[0]:
            out += os.read(proc.stdout.fileno(), 4096)
    m = re.search(r"on (grpc://\S+)", out.decode())
    if not m:
        proc.kill()
        raise SystemExit(f"unexpected serve output: {out!r}")
    return proc, m.group(1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and one round (for CI)")
    ap.add_argument("--out", required=True, help="the markdown table to write (PATH.json is written too)")
    opts = ap.parse_args()
    rows, group, rounds = (200_000, 20_000, 1) if opts.quick else (4_000_000, 100_000, 5)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    scratch = Path(tempfile.mkdtemp(prefix="sheaf-bench-dataloader-"))
    server = None
    try:
        src = scratch / "pkg"
        src.mkdir()
        table = make_table(rows)
        parquet = src / "train.parquet"
        pq.write_table(table, parquet, row_group_size=group)
        mb = table.nbytes / 1e6
        del table
        registry = scratch / "registry"
        subprocess.run(
            [sheaf_bin(), "--registry", str(registry), "push", "bench/train", str(src)], check=True, capture_output=True
        )
        server, url = start_server(registry, scratch / "serve.log")
        client = sheaf.connect(url, timeout=120)
        ds = client.dataset("sheaf://bench/train/train.parquet")
        train = ds.to_torch(batch_size=BATCH, seed=0)
        local = LocalParquet(parquet, BATCH)
        seconds: dict[str, dict[str, list[float]]] = {}
        server_cpu: list[float] = []
        for setting, workers in SETTINGS.items():
            extra = {"multiprocessing_context": "fork"} if workers else {}
            loaders = {
                "sheaf": sheaf.torch.DataLoader(train, num_workers=workers, **extra),
                "local": torch.utils.data.DataLoader(local, batch_size=None, num_workers=workers, **extra),
            }
            for loader in loaders.values():  # warm up: page cache, server caches, worker start-up paths
                epoch(loader)
            seconds[setting] = {"sheaf": [], "local": []}
            for r in range(rounds):
                for name, loader in loaders.items():
                    train.set_epoch(r + 1)
                    local.epoch = r + 1
                    cpu0 = cpu_seconds(server.pid)
                    secs, n = epoch(loader)
                    if name == "sheaf" and workers:
                        server_cpu.append(cpu_seconds(server.pid) - cpu0)
                    if n != rows:
                        raise SystemExit(f"{name}, {setting}: read {n} rows, expected {rows}")
                    seconds[setting][name].append(secs)
        endpoints = len(train.piece_rows)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)

    table_rows, ratios, rps = [], {}, {}
    for setting, by_loader in seconds.items():
        med = {k: statistics.median(v) for k, v in by_loader.items()}
        rps[setting] = {k: rows / v for k, v in med.items()}
        ratios[setting] = rps[setting]["sheaf"] / rps[setting]["local"]
        table_rows.append(
            f"| {setting} | {rps[setting]['sheaf']:,.0f} | {rps[setting]['local']:,.0f} | "
            f"{med['sheaf']:.3f} | {med['local']:.3f} | {ratios[setting]:.2f}x |"
        )
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    when = datetime.date.today().isoformat()
    header = (
        f"{when} on {platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB; {rows:,} rows "
        f"(int64 id and label, {FEATURES} float32 features as one fixed-size list; {mb:.0f} MB in Arrow), "
        f"batch size {BATCH}, {endpoints} Sheaf endpoints / {rows // group} row groups, median of {rounds} "
        f"epoch(s) per loader after a warm-up epoch, loaders alternating; torch "
        f"{torch.__version__.split('+')[0]}, pyarrow {pa.__version__}. `sheaf serve` on loopback shares the "
        f"cores with the DataLoader."
    )
    lines = [
        f"# PyTorch DataLoader: Sheaf vs local Parquet ({'quick' if opts.quick else 'full'})",
        "",
        header,
        "",
        "| DataLoader | Sheaf rows/s | local Parquet rows/s | Sheaf s/epoch | local s/epoch | Sheaf vs local |",
        "|---|---|---|---|---|---|",
        *table_rows,
        "",
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
        "rounds": rounds,
        "seconds": seconds,
        "rows_per_second": rps,
        "ratio_sheaf_vs_local": ratios,
        "server_cpu_seconds": server_cpu,
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
