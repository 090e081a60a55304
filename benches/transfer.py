#!/usr/bin/env python3
"""Scenario 2: the cross-language transfer Sheaf replaces.

Before Arrow, PySpark workers and Python services moved tables as pickled Python
objects or as JSON. A smaller table (harness.narrow_table) is moved from a
server process into a pandas DataFrame in this process by:

  - Sheaf: GetFlightInfo + DoGet into an Arrow table, and the same followed by
    Table.to_pandas() (the like-for-like figure: both ends hold a DataFrame),
  - a pandas DataFrame pickled per request over a TCP socket (strings as Python
    objects, as pandas held them before Arrow; pickle protocol 5) and unpickled
    here (benches/peers.py pickle),
  - JSON records over HTTP: DataFrame.to_json(orient="records") per request (the
    fast C encoder), json.loads and pandas.DataFrame(records) here (peers.py json).

Transfers alternate, median (min-max) seconds over the rounds. The ratio is the
baseline's time over Sheaf's (above 1: Sheaf is faster).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pandas as pd  # noqa: E402

SIZES = {"quick": dict(rows=50_000, rounds=2), "full": dict(rows=1_000_000, rounds=7)}


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("peer closed the connection early")
        got += k
    return buf


def get_pickle(url: str) -> pd.DataFrame:
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall(b"g")
        (n,) = struct.unpack("<Q", recv_exact(s, 8))
        return pickle.loads(recv_exact(s, n))


def get_json(url: str) -> pd.DataFrame:
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    return pd.DataFrame(json.loads(body))


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    path = h.dataset("narrow", cfg["rows"])
    rows, nbytes = h.arrow_bytes(path)
    scratch = h.scratch_dir("transfer")
    logs = scratch / "logs"
    try:
        registry = scratch / "registry"
        h.push(registry, "bench/transfer", h.package_dir(scratch, "transfer", {"table.parquet": path}))
        uri = "sheaf://bench/transfer/table.parquet"
        with contextlib.ExitStack() as stack:
            sheaf = stack.enter_context(h.start_sheaf(registry, logs))
            pick = stack.enter_context(h.start_peer("pickle", [path], logs))
            js = stack.enter_context(h.start_peer("json", [path], logs))
            ways = [
                ("Sheaf (Flight) into an Arrow table", sheaf, lambda: h.read_all(sheaf.client, uri)),
                ("Sheaf (Flight) into a pandas DataFrame", sheaf, lambda: h.read_all(sheaf.client, uri).to_pandas()),
                ("pickled pandas DataFrame over a socket", pick, lambda: get_pickle(pick.url)),
                ("JSON records over HTTP", js, lambda: get_json(js.url)),
            ]
            secs = {w[0]: h.Samples() for w in ways}
            cpu = {w[0]: h.Samples() for w in ways}
            for _, _srv, fn in ways:  # warm-up
                got = fn()
                assert len(got) == rows, (len(got), rows)
                del got
            for i in range(cfg["rounds"]):
                h.progress(f"round {i + 1}/{cfg['rounds']}")
                k = i % len(ways)
                for label, srv, fn in ways[k:] + ways[:k]:
                    c0 = srv.cpu()
                    t0 = time.perf_counter()
                    got = fn()
                    secs[label].add(time.perf_counter() - t0)
                    cpu[label].add(srv.cpu() - c0)
                    assert len(got) == rows
                    del got
    finally:
        if not opts.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    arrow, pandas_, pickled, json_ = (w[0] for w in ways)
    res = h.Result("2", "transfer", "Cross-language transfer: Sheaf vs pickle and JSON", opts.quick)
    res.params = {"rows": rows, "arrow_bytes": nbytes, "rounds": cfg["rounds"]}

    def rate(label: str) -> str:
        return f"{h.fmt_rate(rows / secs[label].median)} rows/s"

    def ratio(base: str, mine: str) -> float:
        return secs[base].median / secs[mine].median

    res.rows = [
        h.Row(
            "Table into a pandas DataFrame vs pickled DataFrame over a socket, rows/s",
            rate(pandas_),
            f"{rate(pickled)} pickle",
            h.fmt_ratio(ratio(pickled, pandas_)),
        ),
        h.Row(
            "Table into a pandas DataFrame vs JSON records over HTTP, rows/s",
            rate(pandas_),
            f"{rate(json_)} JSON",
            h.fmt_ratio(ratio(json_, pandas_)),
        ),
    ]
    res.detail = [
        f"Table: {rows:,} rows (int64, float64, float32, int32, string), {h.fmt_bytes(nbytes)} in Arrow; "
        f"{cfg['rounds']} alternating rounds after a warm-up. Ratio: the way's time over Sheaf-into-pandas.",
        "",
        *h.md_table(
            ["way", "seconds", "rows/s", "server CPU-s per transfer", "vs Sheaf into pandas"],
            [
                [
                    w,
                    h.fmt_range(secs[w], 3),
                    h.fmt_rate(rows / secs[w].median),
                    h.fmt_range(cpu[w], 2),
                    h.fmt_ratio(secs[w].median / secs[pandas_].median),
                ]
                for w in secs
            ],
        ),
    ]
    res.plot = {"bars": [{"label": w, **secs[w].to_json()} for w in secs], "unit": "seconds"}
    res.write(opts.out)


if __name__ == "__main__":
    main()
