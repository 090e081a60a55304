#!/usr/bin/env python3
"""Scenario 4: time to first batch, on a ~1 GB table and on a table of one row group.

The client asks GetFlightInfo, redeems the first endpoint with DoGet and stops
(FlightStreamReader.cancel) once the first record batch has arrived. Both
tables have the ten-column shape of harness.wide_table (the large one is the
file of the selective-read scenario) and pyarrow's default row groups of 1Mi
rows; the small one is exactly one such row group (~80 MB), so the comparison
isolates the table's size from the row group's (every Parquet reader here
fetches at least the first row group's column chunks before its first batch).
Readers:

  - Sheaf: each round starts a server, warms it up on a third, tiny table, then
    asks for the first batch of each table (nothing of them is in the server's
    cache of encoded streams), then asks for each again ("same request
    repeated": from the cache if the server kept the cancelled stream);
    separately, the very first request of a freshly started server,
  - the pyarrow server that reads the Parquet file per request (peers.py
    parquet: pq.read_table, then send),
  - a pyarrow server that streams the file batch by batch (peers.py
    parquet-stream: ParquetFile.iter_batches through a GeneratorStream),
  - ParquetFile.iter_batches on the local file (first batch, no network).

Median (min-max) of alternating rounds. "read() before the first batch" is the
server process's rchar (/proc/PID/io) between the request and the first batch:
whether a server reads the whole table before it sends anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pyarrow.parquet as pq  # noqa: E402

SIZES = {
    "quick": dict(large=400_000, small=100_000, rounds=3, fresh=2),
    "full": dict(large=12_500_000, small=1 << 20, rounds=15, fresh=3),
}
SLACK_S = 0.005  # absolute allowance for "independent of size": 5 ms


def first_batch(srv: h.Server, target: str) -> dict:
    r0 = srv.rchar()
    t0 = time.perf_counter()
    info = srv.client.get_flight_info(h.descriptor(target), h.CALL)
    t1 = time.perf_counter()
    reader = srv.client.do_get(info.endpoints[0].ticket, h.CALL)
    chunk = reader.read_chunk()
    t2 = time.perf_counter()
    r1 = srv.rchar()
    assert chunk.data.num_rows > 0
    reader.cancel()
    del reader, chunk
    return {"ttfb": t2 - t0, "info": t1 - t0, "rchar": (r1 - r0) if r0 is not None and r1 is not None else None}


def local_first(path: Path) -> dict:
    t0 = time.perf_counter()
    batch = next(pq.ParquetFile(path).iter_batches())
    assert batch.num_rows > 0
    return {"ttfb": time.perf_counter() - t0, "info": None, "rchar": None}


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    files = {"large": h.dataset("wide", cfg["large"]), "small": h.dataset("wide", cfg["small"])}
    sizes = {k: h.arrow_bytes(p) for k, p in files.items()}
    first_group = {
        k: sum(
            pq.ParquetFile(p).metadata.row_group(0).column(i).total_compressed_size
            for i in range(pq.ParquetFile(p).metadata.num_columns)
        )
        for k, p in files.items()
    }
    scratch = h.scratch_dir("ttfb")
    logs = scratch / "logs"
    try:
        registry = scratch / "registry"
        h.push(
            registry,
            "bench/ttfb",
            h.package_dir(
                scratch,
                "ttfb",
                {**{f"{k}.parquet": p for k, p in files.items()}, "tiny.parquet": h.dataset("wide", 1000)},
            ),
        )
        uris = {k: f"sheaf://bench/ttfb/{k}.parquet" for k in files}

        with h.start_sheaf(registry, logs) as srv:
            info = srv.client.get_flight_info(h.descriptor(uris["large"]), h.CALL)
            n_endpoints = len(info.endpoints)
            first_endpoint = info.total_bytes / max(1, n_endpoints)
        fresh = h.Samples()
        fresh_rchar = h.Samples()
        for _ in range(cfg["fresh"]):
            with h.start_sheaf(registry, logs) as srv:
                r = first_batch(srv, uris["large"])
                fresh.add(r["ttfb"])
                if r["rchar"] is not None:
                    fresh_rchar.add(r["rchar"])

        with contextlib.ExitStack() as stack:
            pqs = stack.enter_context(h.start_peer("parquet", list(files.values()), logs))
            stream = stack.enter_context(h.start_peer("parquet-stream", list(files.values()), logs))
            readers = {
                "Sheaf": None,
                "Sheaf, same request repeated": None,
                "pyarrow server reading Parquet per request": lambda k: first_batch(pqs, str(files[k])),
                "pyarrow server streaming Parquet (iter_batches)": lambda k: first_batch(stream, str(files[k])),
                "ParquetFile.iter_batches, local file": lambda k: local_first(files[k]),
            }
            out = {
                (r, k): {"ttfb": h.Samples(), "info": h.Samples(), "rchar": h.Samples()} for r in readers for k in files
            }
            cached = {k: 0 for k in files}

            def record(r, k, got):
                for key in ("ttfb", "info", "rchar"):
                    if got[key] is not None:
                        out[(r, k)][key].add(got[key])

            def sheaf_round(i):
                # A fresh server, warmed up on another table, so neither table's stream is in its cache.
                with h.start_sheaf(registry, logs) as srv:
                    h.read_all(srv.client, "sheaf://bench/ttfb/tiny.parquet")
                    order = list(files) if i % 2 == 0 else list(files)[::-1]
                    for k in order:
                        record("Sheaf", k, first_batch(srv, uris[k]))
                    for k in order:
                        m0 = h.sheaf_metrics(srv.client)
                        record("Sheaf, same request repeated", k, first_batch(srv, uris[k]))
                        d = h.metrics_delta(m0, h.sheaf_metrics(srv.client))
                        cached[k] += (d or {}).get("do_get_cached", 0)

            jobs = [(r, k) for r in list(readers)[2:] for k in files]
            for r, k in jobs:  # warm-up
                readers[r](k)
            for i in range(cfg["rounds"]):
                h.progress(f"round {i + 1}/{cfg['rounds']}")
                if i % 2 == 0:
                    sheaf_round(i)
                j = i % len(jobs)
                for r, k in jobs[j:] + jobs[:j]:
                    record(r, k, readers[r](k))
                if i % 2 == 1:
                    sheaf_round(i)
    finally:
        if not opts.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    ms = {key: v["ttfb"].map(lambda s: s * 1e3) for key, v in out.items()}
    sl, ss = ms[("Sheaf", "large")], ms[("Sheaf", "small")]
    ratio = sl.median / ss.median
    met = sl.median <= 1.5 * ss.median + SLACK_S * 1e3
    stream_large = ms[("pyarrow server streaming Parquet (iter_batches)", "large")]
    pq_large = ms[("pyarrow server reading Parquet per request", "large")]

    res = h.Result("4", "ttfb", "Time to first batch", opts.quick)
    res.params = {
        "large_rows": sizes["large"][0],
        "large_bytes": sizes["large"][1],
        "small_rows": sizes["small"][0],
        "small_bytes": sizes["small"][1],
        "rounds": cfg["rounds"],
    }
    res.rows = [
        h.Row(
            f"Time to first batch, {h.fmt_bytes(sizes['large'][1])} table / {h.fmt_bytes(sizes['small'][1])} "
            "table (Sheaf, not cached), ms",
            f"{h.fmt_range(sl, 1)} large",
            f"{h.fmt_range(ss, 1)} small",
            h.fmt_ratio(ratio),
            "large <= 1.5x small + 5 ms",
            "met" if met else "short",
        ),
        h.Row(
            "Time to first batch on the large table vs pyarrow server streaming Parquet, ms",
            h.fmt_range(sl, 1),
            f"{h.fmt_range(stream_large, 1)} pyarrow iter_batches server",
            h.fmt_ratio(stream_large.median / sl.median),
        ),
        h.Row(
            "Time to first batch on the large table vs pyarrow server reading Parquet per request, ms",
            h.fmt_range(sl, 1),
            f"{h.fmt_range(pq_large, 1)} pyarrow read_table server",
            h.fmt_ratio(pq_large.median / sl.median),
        ),
    ]
    detail = []
    for r in readers:
        for k in files:
            o = out[(r, k)]
            detail.append(
                [
                    r,
                    f"{k} ({h.fmt_bytes(sizes[k][1])})",
                    h.fmt_range(ms[(r, k)], 1),
                    h.fmt_range(o["info"].map(lambda s: s * 1e3), 1) if o["info"].values else "-",
                    h.fmt_bytes(o["rchar"].median) if o["rchar"].values else "-",
                ]
            )
    detail.append(
        [
            "Sheaf, first request of a fresh server",
            f"large ({h.fmt_bytes(sizes['large'][1])})",
            h.fmt_range(fresh.map(lambda s: s * 1e3), 1),
            "-",
            h.fmt_bytes(fresh_rchar.median) if fresh_rchar.values else "-",
        ]
    )
    res.detail = [
        f"Tables: large {sizes['large'][0]:,} rows ({h.fmt_bytes(sizes['large'][1])} in Arrow, "
        f"{h.fmt_bytes(files['large'].stat().st_size)} Parquet); small {sizes['small'][0]:,} rows "
        f"({h.fmt_bytes(sizes['small'][1])}); first row groups {h.fmt_bytes(first_group['large'])} and "
        f"{h.fmt_bytes(first_group['small'])} compressed; Sheaf plans {n_endpoints} endpoints for the large table. "
        f"{cfg['rounds']} alternating rounds after a warm-up; median (min-max). Time to first batch includes "
        f"GetFlightInfo. Repeated Sheaf requests served from its cache: {cached['large']} of {cfg['rounds']} "
        f"(large), {cached['small']} of {cfg['rounds']} (small), per the `do_get_cached` metric.",
        "",
        *h.md_table(
            ["reader", "table", "first batch ms", "of which GetFlightInfo ms", "server read() before the first batch"],
            detail,
        ),
    ]
    if not met:
        sr = out[("Sheaf", "large")]["rchar"]
        res.notes.append(
            f"Sheaf's first batch takes {sl.median:.1f} ms on the large table against {ss.median:.1f} ms on the "
            f"small one; it read {h.fmt_bytes(sr.median) if sr.values else 'n/a'} before sending it (the large "
            f"table's first row group is {h.fmt_bytes(first_group['large'])} compressed, its first endpoint "
            f"{h.fmt_bytes(first_endpoint)} of Arrow data)."
        )
    short = {
        "Sheaf": "Sheaf",
        "Sheaf, same request repeated": "Sheaf repeated",
        "pyarrow server reading Parquet per request": "pyarrow read_table",
        "pyarrow server streaming Parquet (iter_batches)": "pyarrow iter_batches",
        "ParquetFile.iter_batches, local file": "local iter_batches",
    }
    res.plot = {
        "groups": [
            {"label": short.get(r, r), "small": ms[(r, "small")].to_json(), "large": ms[(r, "large")].to_json()}
            for r in readers
        ],
        "unit": "ms",
        "small_label": f"{h.fmt_bytes(sizes['small'][1])} (one row group)"
        if not opts.quick
        else f"{h.fmt_bytes(sizes['small'][1])}",
        "large_label": f"{h.fmt_bytes(sizes['large'][1])}",
    }
    res.write(opts.out)


if __name__ == "__main__":
    main()
