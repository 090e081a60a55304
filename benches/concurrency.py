#!/usr/bin/env python3
"""Scenario 5: concurrency: 1, 4, 16 and 64 clients reading the same table.

Each client is a thread of this process with its own FlightClient (its own
connection); all start together and each reads the whole table (GetFlightInfo,
every endpoint's DoGet) batch by batch, keeping nothing; with fewer than 4
clients each reads it 4/N times so every level moves at least 4 tables. The
table is harness.narrow_table (numeric and string columns, several row groups).
On Sheaf each level runs twice on its fresh server: first one read per client,
all at once, before anything is in Sheaf's cache of encoded streams (a ticket
is kept from its second read on, and reads of one ticket coalesce: the first
decodes Parquet without recording, the second decodes and records its stream,
the others wait for that recording and are sent it, counted as DoGets from
cache; a read that finds no recording under way decodes), then the repeated
reads.

Servers: Sheaf and pyarrow's C++ FlightServerBase with the table in memory
(peers.py memory). Each level gets a fresh server process (one warm-up read
first), so its peak RSS (VmHWM from /proc/PID/status, read when the level ends)
belongs to that level alone; VmRSS is also sampled every 20 ms. Levels alternate
between the servers. Aggregate GB/s: the Arrow bytes all clients received over
the wall time from the common start to the last client's end.

Goal ("64 clients with bounded server memory"): Sheaf's peak RSS at 64 clients
under 2 GiB (a twelfth of this machine's memory); the detail table also gives
the growth per extra client, to compare with the table's size.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pyarrow.parquet as pq  # noqa: E402

SIZES = {"quick": dict(rows=200_000), "full": dict(rows=4_000_000)}
LEVELS = [1, 4, 16, 64]
BOUND = 2 * h.GIB


def run_level(srv: h.Server, target: str, clients: int, want_rows: int, reads: int) -> dict:
    conns = [srv.connect() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []
    ends = [0.0] * clients

    def client(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(reads):
                got = h.stream_rows(conns[i], target)
                if got != want_rows:
                    raise AssertionError(f"client {i}: {got} rows, expected {want_rows}")
            ends[i] = time.perf_counter()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    peak = [srv.rss() or 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], srv.rss() or 0)
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    sampler = threading.Thread(target=sample)
    for t in threads:
        t.start()
    sampler.start()
    m0 = h.sheaf_metrics(srv.client) if srv.name == "sheaf" else None
    cpu0 = srv.cpu()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    stop.set()
    sampler.join()
    if errors:
        raise errors[0]
    wall = max(ends) - t0
    for c in conns:
        c.close()
    cpu = srv.cpu() - cpu0
    m = h.metrics_delta(m0, h.sheaf_metrics(srv.client)) if m0 is not None else None
    return {
        "clients": clients,
        "reads": reads * clients,
        "seconds": wall,
        "cpu": cpu,
        "hwm": srv.hwm(),
        "rss_peak_sampled": peak[0],
        "metrics": m,
    }


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    path = h.dataset("narrow", cfg["rows"])
    rows, nbytes = h.arrow_bytes(path)
    scratch = h.scratch_dir("concurrency")
    logs = scratch / "logs"
    results: dict[str, list[dict]] = {"Sheaf": [], "pyarrow C++ server, table in memory": []}
    idle: dict[str, list[int]] = {k: [] for k in results}
    cold: list[dict] = []
    try:
        registry = scratch / "registry"
        h.push(registry, "bench/conc", h.package_dir(scratch, "conc", {"table.parquet": path}))
        targets = {"Sheaf": "sheaf://bench/conc/table.parquet", "pyarrow C++ server, table in memory": str(path)}
        for li, n in enumerate(LEVELS):
            order = list(results)
            for kind in order if li % 2 == 0 else order[::-1]:
                h.progress(f"{n} client(s): {kind}")
                srv = h.start_sheaf(registry, logs) if kind == "Sheaf" else h.start_peer("memory", [path], logs)
                with srv:
                    idle[kind].append(srv.rss() or 0)
                    if kind == "Sheaf":
                        # All clients at once on a fresh server: nothing cached, every stream decodes Parquet.
                        cold.append(run_level(srv, targets[kind], n, rows, 1))
                    else:
                        assert h.stream_rows(srv.client, targets[kind]) == rows  # warm-up
                    results[kind].append(run_level(srv, targets[kind], n, rows, max(1, 4 // n)))
    finally:
        if not opts.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    def gbps(r: dict) -> float:
        return r["reads"] * nbytes / r["seconds"] / 1e9

    sheaf, pa_ = results["Sheaf"], results["pyarrow C++ server, table in memory"]
    s64, p64 = sheaf[-1], pa_[-1]  # hot phase; its VmHWM also covers the cold phase before it
    c64 = cold[-1]
    s1 = sheaf[0]
    per_client = (s64["hwm"] - s1["hwm"]) / (64 - 1)
    met = s64["hwm"] <= BOUND
    res = h.Result("5", "concurrency", "Concurrency: 1 to 64 clients", opts.quick)
    res.params = {"rows": rows, "arrow_bytes": nbytes, "levels": LEVELS}
    res.rows = [
        h.Row(
            "Server peak RSS with 64 clients (VmHWM), as a share of the 2 GiB bound",
            h.fmt_bytes(s64["hwm"]),
            f"2 GiB bound (pyarrow C++ server: {h.fmt_bytes(p64['hwm'])}, holding the table)",
            h.fmt_ratio(s64["hwm"] / BOUND),
            "<= 1.0x",
            "met" if met else "short",
        ),
        h.Row(
            "Aggregate throughput with 64 clients, first reads of a fresh server (nothing cached), GB/s",
            f"{gbps(c64):.2f}",
            f"{gbps(p64):.2f} pyarrow C++ server, table in memory",
            h.fmt_ratio(gbps(c64) / gbps(p64)),
        ),
        h.Row(
            "Aggregate throughput with 64 clients, repeated reads, GB/s",
            f"{gbps(s64):.2f}",
            f"{gbps(p64):.2f} pyarrow C++ server, table in memory",
            h.fmt_ratio(gbps(s64) / gbps(p64)),
        ),
        h.Row(
            "Aggregate throughput with 4 clients, repeated reads, GB/s",
            f"{gbps(sheaf[1]):.2f}",
            f"{gbps(pa_[1]):.2f} pyarrow C++ server, table in memory",
            h.fmt_ratio(gbps(sheaf[1]) / gbps(pa_[1])),
        ),
    ]
    detail = []
    phases = [
        ("Sheaf, first reads (fresh server, nothing cached)", cold, idle["Sheaf"]),
        ("Sheaf, repeated reads", sheaf, idle["Sheaf"]),
        ("pyarrow C++ server, table in memory", pa_, idle["pyarrow C++ server, table in memory"]),
    ]
    for kind, rs, idles in phases:
        for r, idle_rss in zip(rs, idles, strict=False):
            m = r.get("metrics")
            detail.append(
                [
                    kind,
                    r["clients"],
                    r["reads"],
                    f"{gbps(r):.2f}",
                    f"{r['seconds']:.2f}",
                    f"{r['cpu']:.2f}",
                    h.fmt_bytes(idle_rss),
                    h.fmt_bytes(r["hwm"]),
                    h.fmt_bytes(r["rss_peak_sampled"]),
                    (
                        f"{m.get('do_get_cached', 'n/a')} of {m.get('do_get', 'n/a')}"
                        if m
                        else ("n/a" if kind.startswith("Sheaf") else "-")
                    ),
                    (h.fmt_bytes(m.get("bytes_read")) if m else ("n/a" if kind.startswith("Sheaf") else "-")),
                ]
            )
    res.detail = [
        f"Table: {rows:,} rows, {h.fmt_bytes(nbytes)} in Arrow, {h.fmt_bytes(path.stat().st_size)} Parquet. "
        "One sample per level, a fresh server each: for Sheaf first every client reads once at the same time "
        "(nothing cached yet), then the repeated reads; VmHWM is cumulative, so the repeated-read row's peak "
        'covers both phases. "RSS at start": right after start-up.',
        "",
        *h.md_table(
            [
                "server",
                "clients",
                "table reads",
                "aggregate GB/s",
                "wall s",
                "server CPU-s",
                "RSS at start",
                "peak RSS (VmHWM)",
                "peak RSS sampled",
                "DoGets from cache (metrics)",
                "bytes read (metrics)",
            ],
            detail,
        ),
        "",
        f"Sheaf's peak grows by {h.fmt_bytes(per_client)} per extra client from 1 to 64 clients "
        f"(one table is {h.fmt_bytes(nbytes)} in Arrow).",
    ]
    md = pq.ParquetFile(path).metadata
    rg_rows = md.row_group(0).num_rows
    rg_compressed = sum(md.row_group(0).column(i).total_compressed_size for i in range(md.num_columns))
    rg_arrow = nbytes * rg_rows / rows
    cold_per_stream = (c64["hwm"] - idle["Sheaf"][-1]) / 64
    if not met:
        res.notes.append(
            f"Sheaf's peak RSS at 64 clients is {h.fmt_bytes(s64['hwm'])}; during the 64 simultaneous first reads it "
            f"reached {h.fmt_bytes(c64['hwm'])}, {h.fmt_bytes(cold_per_stream)} per stream, while one row group is "
            f"{h.fmt_bytes(rg_compressed)} compressed and {h.fmt_bytes(rg_arrow)} in Arrow ({rg_rows:,} rows). So each "
            "stream holds more than a row group at a time (fetched column chunks, decoded batches, encoded "
            "messages queued for a slow socket, its copy headed for the cache). A per-stream budget (fetch "
            "and decode less than a row group ahead of the socket), or a memory pool shared by all streams that "
            "makes new streams wait, would bound it."
        )
    for kind, rs in (("first", cold), ("repeated", sheaf)):
        for r in rs:
            m = r.get("metrics") or {}
            if kind == "repeated" and m.get("do_get") and m.get("do_get_cached", 0) < m["do_get"]:
                res.notes.append(
                    f"With {r['clients']} clients the repeated reads were served from Sheaf's cache only "
                    f"{m['do_get_cached']} of {m['do_get']} times and read {h.fmt_bytes(m.get('bytes_read'))} from "
                    f"storage, although the table's streams ({h.fmt_bytes(nbytes)} of Arrow data) fit in the "
                    "default 2048 MiB cache and every client asked for the same tickets the first phase had just "
                    "read: concurrent misses of one ticket seem to evict each other (or to be refused) instead "
                    "of one of them filling the cache."
                )
    res.plot = {
        "levels": LEVELS,
        "series": {kind: {"gbps": [gbps(r) for r in rs], "hwm": [r["hwm"] for r in rs]} for kind, rs, _ in phases},
    }
    res.write(opts.out)


if __name__ == "__main__":
    main()
