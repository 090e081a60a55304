#!/usr/bin/env python3
"""Scenario 1: full-table read, numeric and string columns.

One Parquet file (benches/harness.py narrow_table: int64, float64, float32, int32
and a string column; pyarrow's default writer) is pushed into a fresh local
registry and read whole (GetFlightInfo, then every endpoint's DoGet in order)
by pyarrow clients from:

  - Sheaf (`sheaf serve`): the first read of a freshly started server (cold),
    and repeated reads of a running one (hot); also hot with the endpoints read
    two at a time (informational). A ticket's stream is kept from its second
    read on, so the fresh server's second read (decoded again and recorded) is
    measured too, as is the first read of a server keeping first reads
    (`--cache-min-reads 1`) and of one with its cache off,
  - pyarrow's C++ FlightServerBase with the table in memory (benches/peers.py memory),
  - a pyarrow FlightServerBase that reads the Parquet file on every request
    (peers.py parquet): the fair peer for a cold read (every one of its reads
    decodes the file; its process is warm, so Python's and pyarrow's one-time
    start-up costs, ~0.3 s, are not counted against it),
  - pyarrow.parquet.read_table of the local file (no network).

Every reader is a pyarrow client process of its own (benches/read_once.py),
with MIMALLOC_PURGE_DELAY=-1 and glibc's malloc thresholds fixed (harness.py): a fresh one for each cold read, a
long-lived one per server for the hot reads. Within one client, how many fresh
pages a read touches depends on what that process read before, from whatever
server (measured: a peer read right after a Sheaf read faulted 8k-82k client
pages, one right after another peer read 220k-250k), and that decided comparisons
more than either server did. Each cold round reads a fresh Sheaf server and the warm Parquet peer
(alternating which goes first), then the other cold kinds by the benchmark's own
process (informational, with the peer read the same way). Hot reads alternate
between servers in a new (seeded) order each round. Every server is its own
process; figures are medians with min-max. GB/s counts the
table's Arrow size in memory (the same number for every reader). Server CPU-s
per read come from /proc/PID/stat; Sheaf's bytes read from storage and rows
scanned from its `metrics` action ("n/a" while the server lacks it); "read()
bytes" is the server process's rchar from /proc/PID/io (files and sockets).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib  # noqa: E402
import shutil  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pyarrow.parquet as pq  # noqa: E402

SIZES = {"quick": dict(rows=500_000, cold=2, hot=3), "full": dict(rows=15_000_000, cold=7, hot=15)}


def measure(server: h.Server | None, read, want_rows: int, metrics: bool = False) -> dict:
    """Runs `read()` (returning the figures of one read: `harness.timed_read`
    here, or another client process's) and adds what the server spent on it."""
    cpu0 = server.cpu() if server else None
    rc0 = server.rchar() if server else None
    m0 = h.sheaf_metrics(server.client) if metrics else None
    r = read()
    if r["rows"] != want_rows:
        raise AssertionError(f"read {r['rows']} rows, expected {want_rows}")
    if server:
        r["cpu"] = server.cpu() - cpu0
        rc1 = server.rchar()
        r["rchar"] = (rc1 - rc0) if rc0 is not None and rc1 is not None else None
    if metrics:
        r["metrics"] = h.metrics_delta(m0, h.sheaf_metrics(server.client))
    return r


class Series:
    def __init__(self, label: str):
        self.label = label
        self.seconds = h.Samples()
        self.cpu = h.Samples()
        self.rchar = h.Samples()
        self.batches = h.Samples()
        self.client_cpu = h.Samples()
        self.metrics: list[dict | None] = []

    def add(self, r: dict) -> None:
        self.seconds.add(r["seconds"])
        self.batches.add(r["batches"])
        if r.get("cpu") is not None:
            self.cpu.add(r["cpu"])
        if r.get("rchar") is not None:
            self.rchar.add(r["rchar"])
        if r.get("client_cpu") is not None:
            self.client_cpu.add(r["client_cpu"])
        if "metrics" in r:
            self.metrics.append(r["metrics"])

    def gbps(self, nbytes: int) -> h.Samples:
        return self.seconds.map(lambda s: nbytes / s / 1e9)

    def metric_sum(self, key: str) -> float | None:
        vals = [m[key] for m in self.metrics if m and key in m]
        return sum(vals) if vals else None

    def metric(self, key: str) -> float | None:
        vals = [m[key] for m in self.metrics if m and key in m]
        return sorted(vals)[len(vals) // 2] if vals else None


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    path = h.dataset("narrow", cfg["rows"])
    rows, nbytes = h.arrow_bytes(path)
    file_size = path.stat().st_size
    scratch = h.scratch_dir("read")
    logs = scratch / "logs"
    try:
        registry = scratch / "registry"
        h.progress(f"pushing {h.fmt_bytes(file_size)} Parquet into {registry}")
        h.push(registry, "bench/read", h.package_dir(scratch, "read", {"table.parquet": path}))
        uri = "sheaf://bench/read/table.parquet"
        peer_target = str(path)

        cold_sheaf = Series("Sheaf, first read (fresh server)")
        probe = h.start_sheaf(registry, logs)
        try:
            n_endpoints = len(probe.client.get_flight_info(h.descriptor(uri), h.CALL).endpoints)
        finally:
            probe.stop()
        has_cache_flag = h.sheaf_serve_has("--cache-mib")
        has_min_reads = h.sheaf_serve_has("--cache-min-reads")
        cold_nocache = Series("Sheaf, first read (fresh server, cache off)") if has_cache_flag else None
        # A ticket is kept from its second read on (`--cache-min-reads 2`): the
        # fresh server's second read is the one that records its stream, and a
        # server keeping the first read (`--cache-min-reads 1`) pays that on it.
        cold_second = Series("Sheaf, second read (fresh server; recorded for the cache)") if has_min_reads else None
        cold_min1 = Series("Sheaf, first read (fresh server, --cache-min-reads 1: recorded)") if has_min_reads else None
        cold_kinds = (
            [(cold_sheaf, (), cold_second)]
            + ([(cold_nocache, ("--cache-mib", "0"), None)] if cold_nocache else [])
            + ([(cold_min1, ("--cache-min-reads", "1"), None)] if cold_min1 else [])
        )
        # The goal's pair: each read by a fresh client process; the peer's
        # server is warm (two reads first), as in the hot rounds.
        fresh_sheaf = Series("Sheaf, first read (fresh server, fresh client process)")
        fresh_pq = Series("pyarrow server reading Parquet per request (fresh client process)")
        pq_cold = h.start_peer("parquet", [path], logs)
        try:
            for _ in range(2):
                h.read_all(pq_cold.client, peer_target)

            def fresh_sheaf_read() -> None:
                srv = h.start_sheaf(registry, logs)
                try:
                    fresh_sheaf.add(measure(srv, lambda: h.read_in_fresh_client(srv.url, uri), rows))
                finally:
                    srv.stop()

            def fresh_pq_read() -> None:
                fresh_pq.add(measure(pq_cold, lambda: h.read_in_fresh_client(pq_cold.url, peer_target), rows))

            # The in-process comparison (informational): the peer read by this process.
            inproc_pq = Series("pyarrow server reading Parquet per request (read by this process)")
            cold_kinds.append((inproc_pq, None, None))
            pair = [fresh_sheaf_read, fresh_pq_read]
            for i in range(cfg["cold"]):
                h.progress(f"cold round {i + 1}/{cfg['cold']}")
                for read in pair[i % 2 :] + pair[: i % 2]:
                    read()
                for series, args, then in h.round_order(cold_kinds, i):
                    if args is None:
                        series.add(
                            measure(
                                pq_cold, lambda: h.timed_read(lambda: h.read_all(pq_cold.client, peer_target)), rows
                            )
                        )
                        continue
                    srv = h.start_sheaf(registry, logs, *args)
                    try:
                        # Metrics are asked for after the read only, so the read is the server's first request.
                        r = measure(srv, lambda srv=srv: h.timed_read(lambda: h.read_all(srv.client, uri)), rows)
                        r["metrics"] = h.sheaf_metrics(srv.client)
                        series.add(r)
                        if then is not None:
                            then.add(
                                measure(
                                    srv,
                                    lambda srv=srv: h.timed_read(lambda: h.read_all(srv.client, uri)),
                                    rows,
                                    metrics=True,
                                )
                            )
                    finally:
                        srv.stop()
        finally:
            pq_cold.stop()

        h.progress("hot rounds: starting the servers")
        with contextlib.ExitStack() as stack:
            sheaf = stack.enter_context(h.start_sheaf(registry, logs))
            mem = stack.enter_context(h.start_peer("memory", [path], logs))
            pqs = stack.enter_context(h.start_peer("parquet", [path], logs))
            nocache = stack.enter_context(h.start_sheaf(registry, logs, "--cache-mib", "0")) if has_cache_flag else None

            # Each Flight reader is a client process of its own, reading its
            # server again and again (see benches/read_once.py).
            def remote(label: str, srv: h.Server, target: str, parallel: int = 1, metrics: bool = False):
                proc = stack.enter_context(h.ReaderProcess(srv.url, target, parallel))
                return (Series(label), lambda: measure(srv, proc.read, rows, metrics=metrics))

            readers = [
                remote("Sheaf, repeated reads", sheaf, uri, metrics=True),
                remote("Sheaf, repeated reads, endpoints 2 at a time", sheaf, uri, parallel=2, metrics=True),
                remote("pyarrow C++ server, table in memory", mem, peer_target),
                remote("pyarrow server reading Parquet per request", pqs, peer_target),
                (
                    Series("pyarrow.parquet.read_table, local file"),
                    lambda: measure(None, lambda: h.timed_read(lambda: pq.read_table(path)), rows),
                ),
            ]
            if nocache:
                readers.insert(
                    2, remote("Sheaf, repeated reads, cache off (--cache-mib 0)", nocache, uri, metrics=True)
                )
            # Warm-up: connections, code paths, page cache, and Sheaf's stream
            # cache (a ticket is kept from its second read on).
            for _ in range(2):
                for _, run in readers:
                    run()
            for i in range(cfg["hot"]):
                h.progress(f"hot round {i + 1}/{cfg['hot']}")
                for series, run in h.round_order(readers, i):
                    series.add(run())
            sheaf_idle_rss = sheaf.rss()
            sheaf_hwm = sheaf.hwm()
            mem_hwm = mem.hwm()
    finally:
        if opts.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    by_label = {r[0].label: r[0] for r in readers}
    hot_sheaf = by_label["Sheaf, repeated reads"]
    hot_mem = by_label["pyarrow C++ server, table in memory"]
    hot_pq = by_label["pyarrow server reading Parquet per request"]
    local = by_label["pyarrow.parquet.read_table, local file"]
    extra_cold = [x for x in (cold_nocache, cold_second, cold_min1) if x is not None]
    all_series = [fresh_sheaf, fresh_pq, cold_sheaf, *extra_cold, inproc_pq, *(r[0] for r in readers)]
    g = {s.label: s.gbps(nbytes) for s in all_series}

    res = h.Result("1", "flight_read", "Full-table read, numeric and string columns", opts.quick)
    res.params = {
        "rows": rows,
        "arrow_bytes": nbytes,
        "parquet_bytes": file_size,
        "endpoints": n_endpoints,
        "cold_rounds": cfg["cold"],
        "hot_rounds": cfg["hot"],
    }

    def ratio(a: Series, b: Series) -> float:
        return g[a.label].median / g[b.label].median

    hot_ratio = ratio(hot_sheaf, hot_mem)
    cold_ratio = ratio(fresh_sheaf, fresh_pq)
    res.rows = [
        h.Row(
            "Full-table hot read, GB/s (repeated DoGet)",
            h.fmt_range(g[hot_sheaf.label]),
            f"{h.fmt_range(g[hot_mem.label])} pyarrow C++ server, table in memory",
            h.fmt_ratio(hot_ratio),
            ">= 1.0x",
            "met" if hot_ratio >= 1.0 else "short",
        ),
        h.Row(
            "Full-table cold read, GB/s (first DoGet of a fresh server; each read by a fresh client process)",
            h.fmt_range(g[fresh_sheaf.label]),
            f"{h.fmt_range(g[fresh_pq.label])} pyarrow server reading Parquet per request",
            h.fmt_ratio(cold_ratio),
            ">= 1.0x",
            "met" if cold_ratio >= 1.0 else "short",
        ),
        h.Row(
            "Full-table cold read, GB/s, both read by the benchmark's own long-lived client process",
            h.fmt_range(g[cold_sheaf.label]),
            f"{h.fmt_range(g[inproc_pq.label])} pyarrow server reading Parquet per request",
            h.fmt_ratio(ratio(cold_sheaf, inproc_pq)),
        ),
        *(
            [
                h.Row(
                    "Full-table second read of a fresh server (decoded again and recorded for the cache), GB/s",
                    h.fmt_range(g[cold_second.label]),
                    f"{h.fmt_range(g[hot_pq.label])} pyarrow server reading Parquet per request",
                    h.fmt_ratio(ratio(cold_second, hot_pq)),
                )
            ]
            if cold_second
            else []
        ),
        h.Row(
            "Full-table hot read vs the Parquet-per-request server's repeated reads, GB/s",
            h.fmt_range(g[hot_sheaf.label]),
            f"{h.fmt_range(g[hot_pq.label])} pyarrow server reading Parquet",
            h.fmt_ratio(ratio(hot_sheaf, hot_pq)),
        ),
        h.Row(
            "Full-table hot read vs local pyarrow.parquet.read_table, GB/s",
            h.fmt_range(g[hot_sheaf.label]),
            f"{h.fmt_range(g[local.label])} read_table of the local file",
            h.fmt_ratio(ratio(hot_sheaf, local)),
        ),
    ]

    def mcell(s: Series, key: str, fmt=h.fmt_bytes) -> str:
        v = s.metric(key)
        return "n/a" if v is None else fmt(v)

    table_rows = []
    for s in all_series:
        sec = s.seconds
        table_rows.append(
            [
                s.label,
                h.fmt_range(g[s.label]),
                h.fmt_rate(rows / sec.median),
                h.fmt_range(sec, 3),
                h.fmt_range(s.cpu, 2) if s.cpu.values else "-",
                h.fmt_range(s.client_cpu, 2) if s.client_cpu.values else "-",
                mcell(s, "bytes_read") if s.metrics else "-",
                mcell(s, "rows_scanned", lambda v: f"{v:,.0f}") if s.metrics else "-",
                (
                    f"{s.metric_sum('do_get_cached'):.0f} of {s.metric_sum('do_get'):.0f}"
                    if s.metric_sum("do_get_cached") is not None
                    else "n/a"
                )
                if s.metrics
                else "-",
                h.fmt_bytes(s.rchar.median) if s.rchar.values else "-",
                f"{s.batches.median:,.0f} ({h.fmt_bytes(nbytes / s.batches.median)})" if s.batches.median else "-",
            ]
        )
    res.detail = [
        f"Table: {rows:,} rows, {h.fmt_bytes(nbytes)} in Arrow, {h.fmt_bytes(file_size)} Parquet "
        f"({pq.ParquetFile(path).metadata.num_row_groups} row groups); Sheaf plans {n_endpoints} endpoint(s). "
        f"Cold: {cfg['cold']} rounds; in each, a fresh Sheaf server read once by a fresh client process and "
        "the warm Parquet-per-request peer read once by another (alternating which goes first), then one "
        "fresh Sheaf server of each other kind read by this process (two reads for the default one: "
        "its second read records the stream); "
        f"hot: {cfg['hot']} rounds after two warm-up reads, every reader once per round in a new (seeded) order. "
        "Median (min-max).",
        "",
        *h.md_table(
            [
                "reader",
                "GB/s",
                "rows/s",
                "seconds",
                "server CPU-s per read",
                "client CPU-s per read",
                "bytes read (metrics)",
                "rows scanned (metrics)",
                "DoGets from cache (metrics)",
                "server read() bytes",
                "batches received (mean size)",
            ],
            table_rows,
        ),
        "",
        f"Server peak RSS after the hot rounds: Sheaf {h.fmt_bytes(sheaf_hwm)} (now {h.fmt_bytes(sheaf_idle_rss)}), "
        f"pyarrow in-memory server {h.fmt_bytes(mem_hwm)} (holds the table).",
    ]

    def cores(s: Series) -> float:
        return s.cpu.median / s.seconds.median if s.cpu.values else float("nan")

    if hot_ratio < 1.0 and hot_sheaf.cpu.values and hot_mem.cpu.values:
        cached = hot_sheaf.metric_sum("do_get_cached")
        facts = (
            f"per read Sheaf's server spends {hot_sheaf.cpu.median:.2f} CPU-s ({cores(hot_sheaf):.1f} cores "
            f"busy) against {hot_mem.cpu.median:.2f} ({cores(hot_mem):.1f} cores) for pyarrow, each read by "
            "its own client process; Sheaf read "
            f"{h.fmt_bytes(hot_sheaf.rchar.median if hot_sheaf.rchar.values else None)} from storage per read"
            + (
                f" and served {cached:.0f} of {hot_sheaf.metric_sum('do_get'):.0f} DoGets from its cache"
                if cached is not None
                else ""
            )
            + f"; the client received {hot_sheaf.batches.median:,.0f} batches per read from Sheaf against "
            f"{hot_mem.batches.median:,.0f} from pyarrow."
        )
        if hot_sheaf.cpu.median > 1.3 * hot_mem.cpu.median:
            why = (
                " The server's CPU is the difference. flight-facts.md: on the arrow-rs path allocation (page "
                "faults with glibc's default thresholds) and two copies per message (arrow-ipc into data_body, "
                "tonic's codec into its send buffer) cost it; pre-encoded messages written without the codec "
                "copy reached parity in the prototype."
            )
        else:
            why = (
                " Server CPU is on par, so the gap is elsewhere: the number and size of messages (per-message "
                "cost in the client and in HTTP/2 framing), the endpoints' extra DoGet round trips, or flow "
                "control."
            )
        if hot_sheaf.seconds.min <= hot_mem.seconds.max and hot_mem.seconds.min <= hot_sheaf.seconds.max:
            why += " The two ranges overlap: the gap is within this run's noise."
        res.notes.append("Hot read short of pyarrow's C++ server: " + facts + why)
    if cold_ratio < 1.0 and fresh_sheaf.cpu.values and fresh_pq.cpu.values:
        note = (
            f"Cold read short of the Parquet-per-request peer: Sheaf's first read takes "
            f"{fresh_sheaf.seconds.median:.2f} s and {fresh_sheaf.cpu.median:.2f} server CPU-s "
            f"({cores(fresh_sheaf):.1f} cores busy) against {fresh_pq.seconds.median:.2f} s and "
            f"{fresh_pq.cpu.median:.2f} CPU-s ({cores(fresh_pq):.1f} cores) for the peer."
        )
        if cold_min1 and cold_min1.seconds.values:
            note += (
                f" A server keeping first reads (--cache-min-reads 1) takes {cold_min1.seconds.median:.2f} s and "
                f"{cold_min1.cpu.median:.2f} CPU-s, so recording the stream costs "
                f"{cold_min1.seconds.median - cold_sheaf.seconds.median:+.2f} s on the read that records it."
            )
        if cores(fresh_pq) > 1.3 * cores(fresh_sheaf):
            note += (
                " The peer's pq.read_table decodes column chunks on both cores; decoding row groups (or "
                "columns) in parallel within one stream would close most of the gap."
            )
        elif fresh_sheaf.cpu.median > 1.15 * fresh_pq.cpu.median:
            note += " Sheaf spends more CPU per read than the peer: the decode-and-encode path is the cost."
        if fresh_sheaf.seconds.min <= fresh_pq.seconds.max and fresh_pq.seconds.min <= fresh_sheaf.seconds.max:
            note += " The two ranges overlap: the gap is within this run's noise."
        res.notes.append(note)
    if fresh_sheaf.client_cpu.values and fresh_pq.client_cpu.values:
        res.notes.append(
            f"Cold read by a fresh client process: Sheaf {fresh_sheaf.seconds.median:.2f} s, "
            f"{fresh_sheaf.cpu.median:.2f} server and {fresh_sheaf.client_cpu.median:.2f} client CPU-s; the peer "
            f"{fresh_pq.seconds.median:.2f} s, {fresh_pq.cpu.median:.2f} server and "
            f"{fresh_pq.client_cpu.median:.2f} client CPU-s. Read by this long-lived process instead: Sheaf "
            f"{cold_sheaf.seconds.median:.2f} s, the peer {inproc_pq.seconds.median:.2f} s "
            f"({ratio(cold_sheaf, inproc_pq):.2f}x; the client's allocator state left by the previous read decides "
            "how many fresh pages a read touches, see the header of benches/flight_read.py)."
        )
    if not any(hot_sheaf.metrics):
        res.notes.append(
            "The server answered the `metrics` action with an error: bytes read and rows scanned "
            "show n/a; the read() column is the server's rchar (/proc/PID/io)."
        )
    res.plot = {
        "bars": [{"label": s.label, **g[s.label].to_json()} for s in all_series],
        "unit": "GB/s",
    }
    res.write(opts.out)


if __name__ == "__main__":
    main()
