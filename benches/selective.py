#!/usr/bin/env python3
"""Scenario 3: selective read.

A ten-column table sorted on `ts` (harness.wide_table; pyarrow's default writer:
row groups of 1Mi rows, pages of at most 20,000 rows, dictionary encoding, and
the page index written) is queried for a `ts` range holding 0.1% of the rows,
two of the ten columns (`ts` and the string column `user`):

  - Sheaf: `sheaf://.../wide.parquet?columns=ts,user&filter=ts >= A AND ts < B`
    (the server prunes and filters),
  - Sheaf full scan: every row of the two columns, filtered in the client: what a
    reader without pushdown pays (the URI carries an always-true filter
    `ts >= <below the minimum>` that differs each round, so each scan really
    reads storage instead of Sheaf's cache of encoded streams),
  - pyarrow.dataset on the local file: to_table(columns, filter),
  - DuckDB on the local file: SELECT ts, "user" FROM read_parquet(...) WHERE ...

Every round asks for a different range (spread over the table by a golden-ratio
sequence), the same for every reader, so no answer is served from a cache of
earlier answers; file metadata may be cached by any reader (that is the steady
state of a server). Latency: median (min-max) of alternating rounds
(GetFlightInfo + DoGet for Sheaf). Bytes read from storage: Sheaf's `metrics`
action (bytes_read, rows_scanned; "n/a" while the server lacks it), and for every
reader the bytes its process asked for through read() calls (/proc/PID/io rchar:
the server's for Sheaf, this process's for pyarrow and DuckDB, which read with
pread). Page cache warm.

Bytes the answer needs (benches/parquet_pages.py), for each round's range: for
the two selected columns, the compressed size of every data page holding a
matching row (page header + body, as the offset index counts it) plus the
dictionary page of each column chunk holding such a page (a reader cannot tell
from the page index whether a page is dictionary-encoded, so it must have the
dictionary at hand); found by walking the page headers, independently of every
reader measured. Beside it: the strict figure (dictionaries only where a
matching page uses them) and the coarse one (whole column chunks of the row
groups holding the rows). Footer and page index are not counted as needed: the
2x allowance covers them. The goal's ratio is the median over the rounds of
(bytes read / bytes needed) for that round's query.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

import duckdb  # noqa: E402
import harness as h  # noqa: E402  (first: client environment before pyarrow)
import parquet_pages  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

SIZES = {"quick": dict(rows=400_000, rounds=3, fresh=2), "full": dict(rows=12_500_000, rounds=15, fresh=3)}
COLUMNS = ["ts", "user"]
SELECTIVITY = 0.001
GOLDEN = 0.6180339887498949


class Query:
    """The k-th query: a `ts` range of 0.1% of the rows."""

    def __init__(self, k: int, ts, path: Path):
        rows = len(ts)
        n = max(1, int(rows * SELECTIVITY))
        self.lo = int((rows - n - 1) * (0.05 + 0.9 * ((0.5 + k * GOLDEN) % 1.0)))
        self.hi = self.lo + n
        self.a, self.b = int(ts[self.lo]), int(ts[self.hi])
        self.want = n
        self.sql = f"ts >= {self.a} AND ts < {self.b}"
        self.always_true = f"ts >= {int(ts[0]) - 1 - k}"
        self.need = parquet_pages.needed_bytes(path, COLUMNS, self.lo, self.hi)

    def expr(self):
        return (pc.field("ts") >= self.a) & (pc.field("ts") < self.b)


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    path = h.dataset("wide", cfg["rows"])
    pf = pq.ParquetFile(path)
    rows = pf.metadata.num_rows
    ts = pq.read_table(path, columns=["ts"]).column("ts").to_numpy()
    queries = [Query(k, ts, path) for k in range(1 + cfg["rounds"] + cfg["fresh"])]
    del ts
    warm_q, round_qs, fresh_qs = queries[0], queries[1 : 1 + cfg["rounds"]], queries[1 + cfg["rounds"] :]
    scratch = h.scratch_dir("selective")
    logs = scratch / "logs"
    base = "sheaf://bench/sel/wide.parquet"
    cols = ",".join(COLUMNS)

    def sheaf_filtered(srv, q):
        return h.read_all(srv.client, f"{base}?columns={cols}&filter={urllib.parse.quote(q.sql, safe='')}")

    def sheaf_scan(srv, q):
        t = h.read_all(srv.client, f"{base}?columns={cols}&filter={urllib.parse.quote(q.always_true, safe='')}")
        assert t.num_rows == rows
        return t.filter(q.expr())

    def pyarrow_dataset(_, q):
        return ds.dataset(path, format="parquet").to_table(columns=COLUMNS, filter=q.expr())

    con = duckdb.connect()

    def duck(_, q):
        return con.sql(f"SELECT ts, \"user\" FROM read_parquet('{path}') WHERE {q.sql}").to_arrow_table()

    ways = [
        ("Sheaf, filter and projection on the server", sheaf_filtered, True),
        ("Sheaf full scan of the 2 columns, filtered in the client", sheaf_scan, True),
        ("pyarrow.dataset, local file", pyarrow_dataset, False),
        ("DuckDB, local file", duck, False),
    ]
    secs = {w[0]: h.Samples() for w in ways}
    rchar = {w[0]: h.Samples() for w in ways}
    ratio_rchar = {w[0]: h.Samples() for w in ways}
    mets: dict[str, list] = {w[0]: [] for w in ways}
    ratio_metrics = h.Samples()

    def run(label, fn, srv, on_server, q):
        pid = srv.pid if on_server else "self"
        m0 = h.sheaf_metrics(srv.client) if on_server else None
        r0 = h.proc_rchar(pid)
        t0 = time.perf_counter()
        got = fn(srv, q)
        dt = time.perf_counter() - t0
        r1 = h.proc_rchar(pid)
        if got.num_rows != q.want:
            raise AssertionError(f"{label}: {got.num_rows} rows, expected {q.want} for {q.sql}")
        m = h.metrics_delta(m0, h.sheaf_metrics(srv.client)) if on_server else None
        return dt, (r1 - r0 if r0 is not None and r1 is not None else None), m

    first = h.Samples()
    first_rchar = h.Samples()
    first_metrics = []
    try:
        registry = scratch / "registry"
        h.push(registry, "bench/sel", h.package_dir(scratch, "sel", {"wide.parquet": path}))
        # The first query of a fresh server: nothing cached, not even the file's metadata.
        for q in fresh_qs:
            with h.start_sheaf(registry, logs) as srv:
                r0 = h.proc_rchar(srv.pid)
                t0 = time.perf_counter()
                got = sheaf_filtered(srv, q)
                first.add(time.perf_counter() - t0)
                first_rchar.add(h.proc_rchar(srv.pid) - r0)
                assert got.num_rows == q.want
                first_metrics.append((h.sheaf_metrics(srv.client), q))

        with contextlib.ExitStack() as stack:
            srv = stack.enter_context(h.start_sheaf(registry, logs))
            for label, fn, on_server in ways:  # warm-up
                run(label, fn, srv, on_server, warm_q)
            for i, q in enumerate(round_qs):
                h.progress(f"round {i + 1}/{cfg['rounds']}")
                k = i % len(ways)
                for label, fn, on_server in ways[k:] + ways[:k]:
                    dt, rc, m = run(label, fn, srv, on_server, q)
                    secs[label].add(dt)
                    if rc is not None:
                        rchar[label].add(rc)
                        ratio_rchar[label].add(rc / q.need.pages_bytes)
                    mets[label].append(m)
                    if on_server and label == ways[0][0] and m and "bytes_read" in m:
                        ratio_metrics.add(m["bytes_read"] / q.need.pages_bytes)
    finally:
        con.close()
        if not opts.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    def metric(label, key):
        vals = [m[key] for m in mets[label] if m and key in m]
        return sorted(vals)[len(vals) // 2] if vals else None

    filtered, scan, pds, duck_label = (w[0] for w in ways)
    need_pages = h.Samples([q.need.pages_bytes for q in round_qs])
    need_strict = h.Samples([q.need.strict_bytes for q in round_qs])
    need_chunks = h.Samples([q.need.chunk_bytes for q in round_qs])
    if ratio_metrics.values:
        sheaf_bytes, bytes_ratio, source = metric(filtered, "bytes_read"), ratio_metrics.median, "metrics"
    else:
        sheaf_bytes, bytes_ratio = rchar[filtered].median, ratio_rchar[filtered].median
        source = "server read() bytes from /proc, metrics n/a"

    res = h.Result("3", "selective", "Selective read: 0.1% of rows on a sorted column, 2 of 10 columns", opts.quick)
    res.params = {
        "rows": rows,
        "matching_rows": warm_q.want,
        "columns": COLUMNS,
        "rounds": cfg["rounds"],
        "parquet_bytes": path.stat().st_size,
        "needed_pages_bytes": need_pages.median,
        "needed_strict_bytes": need_strict.median,
        "needed_chunk_bytes": need_chunks.median,
    }
    ms = {label: secs[label].map(lambda s: s * 1e3) for label in secs}
    res.rows = [
        h.Row(
            f"Selective read, bytes read from storage / bytes the answer needs ({source})",
            h.fmt_bytes(sheaf_bytes),
            f"{h.fmt_bytes(need_pages.median)} needed (pages holding the rows, with their dictionaries)",
            h.fmt_ratio(bytes_ratio),
            "<= 2.0x",
            "met" if bytes_ratio <= 2.0 else "short",
        ),
        h.Row(
            "Selective read latency vs full scan of the 2 columns (filtered in the client), ms",
            h.fmt_range(ms[filtered], 1),
            f"{h.fmt_range(ms[scan], 1)} full scan",
            h.fmt_ratio(secs[scan].median / secs[filtered].median),
        ),
        h.Row(
            "Selective read latency vs DuckDB on the local file, ms",
            h.fmt_range(ms[filtered], 1),
            f"{h.fmt_range(ms[duck_label], 1)} DuckDB",
            h.fmt_ratio(secs[duck_label].median / secs[filtered].median),
        ),
        h.Row(
            "Selective read latency vs pyarrow.dataset on the local file, ms",
            h.fmt_range(ms[filtered], 1),
            f"{h.fmt_range(ms[pds], 1)} pyarrow.dataset",
            h.fmt_ratio(secs[pds].median / secs[filtered].median),
        ),
    ]

    detail_rows = []
    for label in secs:
        sheafish = label.startswith("Sheaf")
        br, rs = metric(label, "bytes_read"), metric(label, "rows_scanned")
        detail_rows.append(
            [
                label,
                h.fmt_range(ms[label], 1),
                (h.fmt_bytes(br) if br is not None else "n/a") if sheafish else "-",
                (f"{rs:,.0f}" if rs is not None else "n/a") if sheafish else "-",
                h.fmt_bytes(rchar[label].median) if rchar[label].values else "n/a",
                h.fmt_ratio(
                    ratio_metrics.median
                    if (label == filtered and ratio_metrics.values)
                    else (br / need_pages.median if br is not None else ratio_rchar[label].median)
                ),
            ]
        )
    fm = [(m, q) for m, q in first_metrics if m and "bytes_read" in m]
    fb = sorted(m["bytes_read"] for m, _ in fm)[len(fm) // 2] if fm else None
    fr = sorted(m["rows_scanned"] for m, _ in fm)[len(fm) // 2] if fm else None
    f_ratio = (
        h.Samples([m["bytes_read"] / q.need.pages_bytes for m, q in fm]).median
        if fm
        else first_rchar.median / h.Samples([q.need.pages_bytes for q in fresh_qs]).median
    )
    detail_rows.append(
        [
            "Sheaf, the query as the first request of a fresh server",
            h.fmt_range(first.map(lambda s: s * 1e3), 1),
            h.fmt_bytes(fb),
            f"{fr:,.0f}" if fr is not None else "n/a",
            h.fmt_bytes(first_rchar.median),
            h.fmt_ratio(f_ratio),
        ]
    )
    res.detail = [
        f"Table: {rows:,} rows, 10 columns, {h.fmt_bytes(path.stat().st_size)} Parquet, "
        f"{pf.metadata.num_row_groups} row groups; each query matches {warm_q.want:,} rows ({SELECTIVITY:.1%}), "
        f"columns {', '.join(COLUMNS)}; round 1: `{round_qs[0].sql}`.",
        f"Needed per query (median over the rounds): {h.fmt_bytes(need_pages.median)}: the data pages holding the "
        f"rows and the dictionary pages of their column chunks ({h.fmt_bytes(need_strict.median)} counting a "
        f"dictionary only where a matching page uses it); the whole column chunks of those row groups are "
        f"{h.fmt_bytes(need_chunks.median)}; the footer is {h.fmt_bytes(round_qs[0].need.footer_bytes)}. "
        f"{cfg['rounds']} alternating rounds after a warm-up, a new range each round; median (min-max).",
        "",
        *h.md_table(
            [
                "reader",
                "latency ms",
                "bytes read (metrics)",
                "rows scanned (metrics)",
                "read() bytes (/proc rchar)",
                "read / needed",
            ],
            detail_rows,
        ),
    ]
    if bytes_ratio > 2.0:
        why = (
            f"Sheaf read {h.fmt_bytes(sheaf_bytes)} per query for answers held in {h.fmt_bytes(need_pages.median)} "
            f"of pages ({h.fmt_bytes(need_chunks.median)} of whole column chunks)."
        )
        if sheaf_bytes >= 0.8 * need_chunks.median:
            why += (
                " That is about the whole column chunks of the matching row group(s): the reader fetches "
                "column chunks, not the pages the page index points at. Using the offset index to fetch "
                "only the selected pages (page-index pruning into a RowSelection that the async reader "
                "turns into page-range reads) would fix it."
            )
        rs = metric(filtered, "rows_scanned")
        if rs is not None:
            why += f" Rows decoded: {rs:,.0f} for {warm_q.want:,} matches."
        res.notes.append(why)
    res.plot = {
        "bytes": [
            {"label": "needed (pages + dictionaries)", "value": need_pages.median},
            {"label": "needed (column chunks)", "value": need_chunks.median},
        ]
        + [
            {
                "label": label,
                "value": (
                    metric(label, "bytes_read") if metric(label, "bytes_read") is not None else rchar[label].median
                ),
            }
            for label in secs
        ],
        "latency_ms": [{"label": label, **ms[label].to_json()} for label in secs],
    }
    res.write(opts.out)


if __name__ == "__main__":
    main()
