#!/usr/bin/env python3
"""Python client writes: `client.write` of a table against `pq.write_table` of
the same table to a local file, side by side in one run.

    python benches/write_python.py [--quick] [--out benches/results/write_python.md]

The table is harness.py's narrow_table (int64, float64, float32, int32 and a
string column; 3M rows, 200k with --quick), read once into memory. Each
round, in alternating order:

  - Sheaf: `client.write("sheaf://bench/write/t.parquet", table, mode="overwrite")`
    to a `sheaf serve` on loopback over a fresh local registry: begin_write,
    one DoPut streaming the batches, commit_write (the server writes zstd
    Parquet with a page index, profiles the table and commits a revision);
  - pyarrow.parquet.write_table of the same table to a local file, with
    pyarrow's defaults (snappy), and with zstd and the page index (what the
    server writes; informational).

Figures are the best of N rounds (the least disturbed by the other work on a
shared machine), with the median beside them; the ratio is Sheaf's rows per
second over pq.write_table's (above 1: Sheaf faster). Sheaf's server CPU
seconds per write come from /proc. No timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shutil  # noqa: E402
import time  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pyarrow.parquet as pq  # noqa: E402

# Measure the checked-out client: from its source folder when its generated
# protobuf module is there (an in-place build), else the installed package
# (clients/python/ci/test.sh, which scripts/test runs first, installs this checkout).
CLIENT_SRC = h.ROOT / "clients" / "python" / "src"
if (CLIENT_SRC / "sheaf" / "_proto" / "sheaf_pb2.py").exists():
    sys.path.insert(0, str(CLIENT_SRC))
import sheaf  # noqa: E402

SIZES = {"quick": dict(rows=200_000, rounds=3), "full": dict(rows=3_000_000, rounds=7)}


class Series:
    def __init__(self, label: str):
        self.label = label
        self.seconds = h.Samples()
        self.cpu = h.Samples()
        self.client_cpu = h.Samples()
        self.bytes = h.Samples()

    def rate(self, rows: int) -> h.Samples:
        return self.seconds.map(lambda s: rows / s)


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    rows = cfg["rows"]
    table = pq.read_table(h.dataset("narrow", rows))
    nbytes = table.nbytes
    scratch = h.scratch_dir("write-python")
    logs = scratch / "logs"
    registry = scratch / "registry"
    registry.mkdir(parents=True)
    local = scratch / "local"
    local.mkdir()
    target = "sheaf://bench/write/t.parquet"
    try:
        with h.start_sheaf(registry, logs) as server:
            client = sheaf.connect(server.url, timeout=600, read_timeout=600)

            def sheaf_write() -> int:
                return client.write(target, table, mode="overwrite", message="bench").bytes

            def pq_default() -> int:
                path = local / "default.parquet"
                pq.write_table(table, path)
                return path.stat().st_size

            def pq_zstd() -> int:
                path = local / "zstd.parquet"
                pq.write_table(table, path, compression="zstd", write_page_index=True)
                return path.stat().st_size

            writers = [
                (Series("Sheaf client.write (loopback server)"), sheaf_write, server),
                (Series("pq.write_table, local file (pyarrow defaults: snappy)"), pq_default, None),
                (Series("pq.write_table, local file (zstd + page index, as the server writes)"), pq_zstd, None),
            ]
            h.progress("warm-up: one write each")
            for _, fn, _ in writers:
                fn()
            for i in range(cfg["rounds"]):
                h.progress(f"round {i + 1}/{cfg['rounds']}")
                k = i % len(writers)
                for series, fn, srv in writers[k:] + writers[:k]:
                    cpu0 = srv.cpu() if srv else None
                    t0, c0 = time.perf_counter(), time.process_time()
                    written = fn()
                    series.seconds.add(time.perf_counter() - t0)
                    series.client_cpu.add(time.process_time() - c0)
                    series.bytes.add(written)
                    if srv and cpu0 is not None:
                        series.cpu.add(srv.cpu() - cpu0)
            check = client.dataset(target, columns=["id"]).to_table()
            if check.num_rows != rows or not check.column("id").equals(table.column("id")):
                raise AssertionError(f"read back {check.num_rows} rows of {target}, expected the {rows:,} written")
            revisions = len(client.list_revisions("bench/write"))
            client.close()
            server_hwm = server.hwm()
    finally:
        if opts.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    sheaf_s, pq_s, zstd_s = (w[0] for w in writers)
    best = {s.label: rows / s.seconds.min for s in (sheaf_s, pq_s, zstd_s)}
    median = {s.label: rows / s.seconds.median for s in (sheaf_s, pq_s, zstd_s)}

    def cell(s: Series) -> str:
        return f"{h.fmt_rate(best[s.label])} rows/s ({nbytes / s.seconds.min / 1e6:,.0f} MB/s)"

    res = h.Result("7", "write_python", "Python client write vs pq.write_table", opts.quick)
    res.params = {"rows": rows, "arrow_bytes": nbytes, "rounds": cfg["rounds"], "revisions": revisions}
    ratio = best[sheaf_s.label] / best[pq_s.label]
    res.rows = [
        h.Row(
            "client.write of a table, best of N",
            cell(sheaf_s),
            f"{cell(pq_s)} pq.write_table to a local file",
            h.fmt_ratio(ratio),
        ),
        h.Row(
            "client.write vs pq.write_table with the server's settings (zstd, page index), best of N",
            cell(sheaf_s),
            f"{cell(zstd_s)} pq.write_table, zstd + page index",
            h.fmt_ratio(best[sheaf_s.label] / best[zstd_s.label]),
        ),
    ]
    res.detail = [
        f"Table: {rows:,} rows ({', '.join(f'{f.name} {f.type}' for f in table.schema)}), "
        f"{h.fmt_bytes(nbytes)} in Arrow. {cfg['rounds']} rounds after one warm-up write each, "
        "alternating order. Rates count the table's rows (and its Arrow size) per second of wall time.",
        "",
        *h.md_table(
            [
                "writer",
                "best rows/s",
                "median rows/s",
                "seconds, median (min-max)",
                "this process's CPU-s",
                "server CPU-s",
                "bytes written",
            ],
            [
                [
                    s.label,
                    h.fmt_rate(best[s.label]),
                    h.fmt_rate(median[s.label]),
                    h.fmt_range(s.seconds, 3),
                    h.fmt_range(s.client_cpu, 2),
                    h.fmt_range(s.cpu, 2) if s.cpu.values else "-",
                    h.fmt_bytes(s.bytes.median),
                ]
                for s in (sheaf_s, pq_s, zstd_s)
            ],
        ),
        "",
        f"Sheaf made {revisions} revisions of bench/write (one per write); the server's peak RSS was "
        f"{h.fmt_bytes(server_hwm)}.",
    ]
    if sheaf_s.cpu.values:
        res.notes.append(
            f"Per write the server spent {sheaf_s.cpu.median:.2f} CPU-s (receiving the IPC stream, encoding "
            "zstd Parquet with the page index, profiling, hashing and committing) and the client "
            f"{sheaf_s.client_cpu.median:.2f} CPU-s sending {h.fmt_bytes(nbytes)} over loopback, against "
            f"{pq_s.client_cpu.median:.2f} CPU-s for pq.write_table; both processes share this machine's "
            f"{h.machine()['cores']} cores (with whatever else runs on it: load average {h.loadavg()})."
        )
    res.plot = {
        "bars": [{"label": s.label, **s.rate(rows).to_json()} for s in (sheaf_s, pq_s, zstd_s)],
        "unit": "rows/s",
    }
    res.write(opts.out)


if __name__ == "__main__":
    main()
