#!/usr/bin/env python3
"""Scenario 10: replicas: repeated reads of a working set larger than one
replica's stream cache, from one replica and from three.

Goal: show what several replicas on one registry add when the data read over
and over does not fit in one server's cache of encoded DoGet streams
(`--cache-mib`), and that rendezvous placement (every replica puts the same
replica first for the same ticket) is what turns three caches into one cache
three times as large, where round-robin placement (the first location rotates
from one endpoint to the next) spreads every ticket over every cache.

Data (deterministic, cached in $SHEAF_CACHE/bench-data/replicas-TxROWS-vN/): T
tables of harness.narrow_table shape (int64, float64, float32, int32, string;
a different seed each) of 8 row groups, pushed as one package and read as
`sheaf://bench/replicas/tI.parquet?partitions=4`, so the working set is 4T
tickets of equal size. Sizes are chosen so the working set (its encoded
streams, as the cache counts them) is between 1 and 3 caches: about 1.8 caches
(8 tables of 1.6M rows, about 490 MB, against --cache-mib 256; --quick: 8
tables of 100k rows against --cache-mib 16). A probe server reads every ticket
once first: its `metrics` action gives each ticket's encoded size, checked to
be under half a cache (larger streams are never cached).

Configurations, each on fresh servers over the same local registry, all on
loopback (ports chosen before starting, each replica `sheaf serve --listen
127.0.0.1:PORT --cache-mib N`, plus with three: `--advertise
grpc://127.0.0.1:PORT --peer` (the other two) `--placement P`):

  (a) 1 replica (no --advertise/--peer: endpoints carry no location),
  (b) 3 replicas, --placement rendezvous (the default),
  (c) 3 replicas, --placement round-robin.

Before measuring, every replica must list all three members in every endpoint
for 2.5 s (peers join endpoints after a health check). Clients: 6 threads of
this process, each with one FlightClient per location (made on first use,
reused). A pass of a client reads every table once, in its own random order
(seeded per client and pass): GetFlightInfo on a replica drawn at random, then
every endpoint's DoGet (`read_all`) at the endpoint's FIRST location (the
replica asked when the endpoint names none); the rows of each table are
checked. One warm-up pass, then all clients wait at a barrier and start the
measured passes together. Aggregate throughput: Arrow bytes received
(`Table.nbytes`) by all clients in the measured passes over the wall time from
their common start to the last client's end. Stream-cache hit rate:
do_get_cached / do_get from every replica's `metrics` action, summed over the
replicas, differenced around the measured passes; also read from `GET
/metrics` (sheaf_cache_hits_total / sheaf_doget_streams_total,
--metrics-listen) as a cross-check. The configurations alternate (the order
rotates each round); figures are medians (min-max) over the rounds.

The machine's cores are shared by all replicas and the client, so three
replicas add no CPU here: what they add is cache capacity (and memory).
No timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datetime  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections import defaultdict  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pyarrow.flight as flight  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

SIZES = {
    "quick": dict(tables=8, rows=100_000, partitions=4, cache_mib=16, clients=6, passes=2, rounds=1),
    "full": dict(tables=8, rows=1_600_000, partitions=4, cache_mib=256, clients=6, passes=4, rounds=3),
}
DATA_VERSION = 1  # bump when the generator changes, so cached files are remade
ROW_GROUPS = 8
PACKAGE = "bench/replicas"
CONFIGS = [
    ("a", "1 replica", 1, None),
    ("b", "3 replicas, rendezvous", 3, "rendezvous"),
    ("c", "3 replicas, round-robin", 3, "round-robin"),
]
REUSE = "arrow-flight-reuse-connection://"
SEED = 10


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def generate(tables: int, rows: int) -> Path:
    """DATA_CACHE/replicas-TxROWS-vN/tI.parquet, made once."""
    root = h.DATA_CACHE / f"replicas-{tables}x{rows}-v{DATA_VERSION}"
    if (root / "done").exists():
        return root
    h.progress(f"generating {tables} tables of {rows:,} rows -> {root}")
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i in range(tables):
        t = h.narrow_table(rows, seed=100 + i)
        pq.write_table(t, tmp / f"t{i}.parquet", row_group_size=-(-rows // ROW_GROUPS), write_page_index=True)
    (tmp / "done").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    for old in h.DATA_CACHE.glob("replicas-*-v*"):
        if not old.name.endswith(f"-v{DATA_VERSION}"):
            shutil.rmtree(old, ignore_errors=True)
    return root


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports free now, below the kernel's ephemeral range
    (ports there are taken by outgoing connections, so one picked by binding
    port 0 may be gone before its server binds it)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    ports: list[int] = []
    rng = random.Random()  # not the seeded module generator
    while len(ports) < n:
        port = rng.randrange(max(1024, low - 16384), low)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


class Replica:
    def __init__(self, server: h.Server, url: str, metrics_port: int | None):
        self.server = server
        self.url = url
        self.metrics_port = metrics_port

    def metrics(self) -> dict | None:
        return h.sheaf_metrics(self.server.client)

    def prom(self) -> dict[str, float] | None:
        """Unlabelled series of GET /metrics (name -> value), or None."""
        if self.metrics_port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
                text = r.read().decode("utf-8", "replace")
        except OSError:
            return None
        out = {}
        for line in text.splitlines():
            m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)\s+(\S+)$", line)
            if m:
                try:
                    out[m.group(1)] = float(m.group(2))
                except ValueError:
                    pass
        return out


def start_replicas(registry: Path, logs: Path, n: int, placement: str | None, cache_mib: int, prom: bool):
    ports = free_ports(2 * n)
    grpc_ports, metric_ports = ports[:n], ports[n:]
    urls = [f"grpc://127.0.0.1:{p}" for p in grpc_ports]
    replicas: list[Replica] = []
    try:
        for i in range(n):
            cmd = [
                str(h.sheaf_bin()),
                "--registry",
                registry.resolve().as_uri(),
                "serve",
                "--listen",
                f"127.0.0.1:{grpc_ports[i]}",
                "--cache-mib",
                str(cache_mib),
            ]
            if n > 1:
                cmd += ["--advertise", urls[i], "--placement", placement]
                for j in range(n):
                    if j != i:
                        cmd += ["--peer", urls[j]]
            if prom:
                cmd += ["--metrics-listen", f"127.0.0.1:{metric_ports[i]}"]
            srv = h.Server(f"sheaf-r{i}", cmd, h.server_env(), r"serving \S+ on (grpc://\S+)", logs)
            replicas.append(Replica(srv, urls[i], metric_ports[i] if prom else None))
    except BaseException:
        for r in replicas:
            r.server.stop()
        raise
    return replicas


def first_locations(client: flight.FlightClient, uri: str) -> list[tuple[str | None, int]]:
    """(first location or None, number of locations) of every endpoint of `uri`."""
    info = client.get_flight_info(h.descriptor(uri), h.CALL)
    out = []
    for ep in info.endpoints:
        locs = [loc_str(x) for x in ep.locations]
        out.append((locs[0] if locs else None, len(set(locs))))
    return out


def loc_str(loc) -> str:
    u = loc.uri
    return u.decode() if isinstance(u, bytes) else str(u)


def wait_for_members(replicas: list[Replica], uri: str, timeout: float = 60) -> float:
    """Until every replica has listed all members in every endpoint of `uri` for
    2.5 s (longer than one health-check round); returns the seconds waited."""
    want = {r.url for r in replicas}
    t0 = time.monotonic()
    good_since = None
    while True:
        ok = True
        for r in replicas:
            info = r.server.client.get_flight_info(h.descriptor(uri), h.CALL)
            for ep in info.endpoints:
                if {loc_str(x) for x in ep.locations} != want:
                    ok = False
        now = time.monotonic()
        good_since = (good_since or now) if ok else None
        if good_since is not None and now - good_since >= 2.5:
            return now - t0
        if now - t0 > timeout:
            raise RuntimeError(
                f"replicas did not all list {sorted(want)} within {timeout:.0f} s; last stderr of each:\n"
                + "\n".join(r.server.stderr_tail(1500) for r in replicas)
            )
        time.sleep(0.25)


# --------------------------------------------------------------------------
# One configuration
# --------------------------------------------------------------------------


def run_config(replicas: list[Replica], uris: list[str], want_rows: int, cfg: dict, round_no: int) -> dict:
    n_clients, passes = cfg["clients"], cfg["passes"]
    urls = [r.url for r in replicas]
    warm_done = threading.Barrier(n_clients + 1)
    go = threading.Barrier(n_clients + 1)
    errors: list[BaseException] = []
    ends = [0.0] * n_clients
    got_bytes = [0] * n_clients
    got_rows = [0] * n_clients
    lock = threading.Lock()
    ticket_locs: dict[tuple[int, int], set[str]] = defaultdict(set)
    loc_bytes: dict[str, int] = defaultdict(int)
    all_clients: list[flight.FlightClient] = []

    def client(i: int) -> None:
        conns: dict[str, flight.FlightClient] = {}

        def conn(url: str) -> flight.FlightClient:
            if url not in conns:
                conns[url] = flight.FlightClient(url)
                with lock:
                    all_clients.append(conns[url])
            return conns[url]

        try:
            for p in range(1 + passes):
                measured = p > 0
                if p == 1:
                    warm_done.wait()
                    go.wait()
                rng = random.Random(f"{SEED}-{round_no}-{i}-{p}")
                order = list(range(len(uris)))
                rng.shuffle(order)
                for t in order:
                    asked = rng.choice(urls)
                    info = conn(asked).get_flight_info(h.descriptor(uris[t]), h.CALL)
                    rows = 0
                    for k, ep in enumerate(info.endpoints):
                        loc = loc_str(ep.locations[0]) if ep.locations else asked
                        if loc.startswith(REUSE):
                            loc = asked
                        table = conn(loc).do_get(ep.ticket, h.CALL).read_all()
                        rows += table.num_rows
                        if measured:
                            got_bytes[i] += table.nbytes
                            got_rows[i] += table.num_rows
                            with lock:
                                ticket_locs[(t, k)].add(loc)
                                loc_bytes[loc] += table.nbytes
                        del table
                    if rows != want_rows:
                        raise AssertionError(f"client {i}: table {t} gave {rows} rows, expected {want_rows}")
            ends[i] = time.perf_counter()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            for b in (warm_done, go):
                b.abort()

    def snapshot() -> dict:
        return {
            "metrics": [r.metrics() for r in replicas],
            "prom": [r.prom() for r in replicas],
            "cpu": [r.server.cpu() for r in replicas],
            "client_cpu": h.proc_cpu_seconds(os.getpid()),
        }

    s0 = snapshot()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t_warm = time.perf_counter()
    for t in threads:
        t.start()
    try:
        warm_done.wait()
        warm_seconds = time.perf_counter() - t_warm
        s1 = snapshot()
        go.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = max(ends) - t0
    s2 = snapshot()
    for c in all_clients:
        try:
            c.close()
        except Exception:
            pass

    def diff(a: dict, b: dict, key: str) -> list:
        return [h.metrics_delta(x, y) if key != "cpu" else y - x for x, y in zip(a[key], b[key], strict=True)]

    return {
        "seconds": wall,
        "warmup_seconds": warm_seconds,
        "bytes": sum(got_bytes),
        "rows": sum(got_rows),
        "gbps": sum(got_bytes) / wall / 1e9,
        "warmup": diff(s0, s1, "metrics"),
        "measured": diff(s1, s2, "metrics"),
        "prom_warmup": diff(s0, s1, "prom"),
        "prom_measured": diff(s1, s2, "prom"),
        "server_cpu": diff(s1, s2, "cpu"),
        "client_cpu": s2["client_cpu"] - s1["client_cpu"],
        "hwm": [r.server.hwm() for r in replicas],
        "replicas_per_ticket": sum(len(v) for v in ticket_locs.values()) / max(1, len(ticket_locs)),
        "ticket_locations": {f"{t}/{k}": sorted(v) for (t, k), v in sorted(ticket_locs.items())},
        "bytes_by_location": dict(loc_bytes),
        "urls": urls,
    }


def log_time(line: str) -> float | None:
    """The epoch seconds of a log line's leading timestamp (`2026-01-02T03:04:05.678Z`)."""
    try:
        return datetime.datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def scan_logs(replicas: list[Replica], ready_at: float | None, end_at: float) -> dict:
    """The replicas' WARN/ERROR lines and panics; how often each logged a change of
    its healthy peers (`sheaf::flight::replicas`) before `end_at` (epoch seconds: the
    clients finished; the replicas are then stopped one after the other, and the
    others log their going), and those logged after `ready_at` (all replicas listed
    each other): peers dropped or re-admitted during the warm-up and measured passes."""
    bad, changes, late = [], [], []
    for i, r in enumerate(replicas):
        try:
            text = r.server.err_path.read_text(errors="replace")
        except OSError:
            text = ""
        lines = text.splitlines()
        bad += [line for line in lines if " WARN " in line or " ERROR " in line or "panicked" in line]
        members = [
            (log_time(line) or 0, line) for line in lines if "sheaf::flight::replicas" in line and " replicas " in line
        ]
        members = [(t, line) for t, line in members if t <= end_at]
        changes.append(len(members))
        if ready_at is not None:
            late += [f"replica {i}: {line}" for t, line in members if t > ready_at]
    return {"warn_error": len(bad), "first": bad[:5], "membership_changes": changes, "after_ready": late}


def logs_first(logs: list[dict]) -> str:
    return next((x["first"][0] for x in logs if x.get("first")), "")[:300]


def hit_rate(deltas: list[dict | None], hits: str = "do_get_cached", total: str = "do_get") -> float | None:
    if not deltas or any(d is None or total not in d for d in deltas):
        return None
    n = sum(d[total] for d in deltas)
    return sum(d.get(hits, 0) for d in deltas) / n if n else None


def prom_hit_rate(deltas: list[dict | None]) -> float | None:
    return hit_rate(deltas, "sheaf_cache_hits_total", "sheaf_doget_streams_total")


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    if not h.sheaf_serve_has("--placement") or not h.sheaf_serve_has("--peer"):
        sys.exit(f"{h.sheaf_bin()}: `sheaf serve` has no --peer/--placement (a binary without replicas)")
    started = {"loadavg": h.loadavg(), "busy": h.busy_processes(), "machine": h.machine()}
    t_script = time.monotonic()
    root = generate(cfg["tables"], cfg["rows"])
    files = {f"t{i}.parquet": root / f"t{i}.parquet" for i in range(cfg["tables"])}
    uris = [f"sheaf://{PACKAGE}/t{i}.parquet?partitions={cfg['partitions']}" for i in range(cfg["tables"])]
    cache_bytes = cfg["cache_mib"] * h.MIB
    prom = h.sheaf_serve_has("--metrics-listen")
    scratch = h.scratch_dir("replicas")
    logs = scratch / "logs"
    results: dict[str, list[dict]] = {key: [] for key, *_ in CONFIGS}
    placement: dict[str, dict] = {}
    member_wait: dict[str, list[float]] = {key: [] for key, *_ in CONFIGS}
    try:
        registry = scratch / "registry"
        h.push(registry, PACKAGE, h.package_dir(scratch, "replicas", files))

        # Probe: every ticket's rows, Arrow bytes and encoded bytes (what the cache counts).
        h.progress("probe: reading every ticket once")
        tickets: dict[str, dict] = {}
        with h.start_sheaf(registry, logs) as probe:
            for t, uri in enumerate(uris):
                info = probe.client.get_flight_info(h.descriptor(uri), h.CALL)
                for k, ep in enumerate(info.endpoints):
                    m0 = h.sheaf_metrics(probe.client)
                    table = probe.client.do_get(ep.ticket, h.CALL).read_all()
                    m = h.metrics_delta(m0, h.sheaf_metrics(probe.client)) or {}
                    tickets[f"{t}/{k}"] = {
                        "rows": table.num_rows,
                        "arrow_bytes": table.nbytes,
                        "encoded_bytes": m.get("bytes_sent"),
                    }
        want_rows = cfg["rows"]
        for t in range(cfg["tables"]):
            rows = sum(v["rows"] for k, v in tickets.items() if k.startswith(f"{t}/"))
            if rows != want_rows:
                raise AssertionError(f"table {t}: {rows} rows, expected {want_rows}")
        n_tickets = len(tickets)
        if n_tickets != cfg["tables"] * cfg["partitions"]:
            raise AssertionError(f"{n_tickets} endpoints, expected {cfg['tables'] * cfg['partitions']}")
        arrow_ws = sum(v["arrow_bytes"] for v in tickets.values())
        enc = [v["encoded_bytes"] for v in tickets.values()]
        encoded_ws = sum(enc) if all(e is not None for e in enc) else None
        ws = encoded_ws or arrow_ws
        biggest = max(e or 0 for e in enc) or max(v["arrow_bytes"] for v in tickets.values())
        if biggest > cache_bytes / 2:
            raise AssertionError(
                f"a ticket's stream is {h.fmt_bytes(biggest)}, over half the cache ({h.fmt_bytes(cache_bytes / 2)}): "
                "it would never be cached; change SIZES"
            )
        if not cache_bytes < ws < 3 * cache_bytes:
            raise AssertionError(
                f"working set {h.fmt_bytes(ws)} is not between 1 and 3 caches of {h.fmt_bytes(cache_bytes)}"
            )
        h.progress(
            f"{n_tickets} tickets, working set {h.fmt_bytes(ws)} encoded ({h.fmt_bytes(arrow_ws)} Arrow), "
            f"{ws / cache_bytes:.2f} caches of {cfg['cache_mib']} MiB"
        )

        for rnd in range(cfg["rounds"]):
            order = CONFIGS[rnd % len(CONFIGS) :] + CONFIGS[: rnd % len(CONFIGS)]
            for key, label, n, place in order:
                h.progress(f"round {rnd + 1}/{cfg['rounds']}: ({key}) {label}")
                replicas = start_replicas(registry, logs, n, place, cfg["cache_mib"], prom)
                ready_at = None
                try:
                    if n > 1:
                        member_wait[key].append(wait_for_members(replicas, uris[0]))
                        # Which replica each replica names first, per endpoint (placement check).
                        firsts = {
                            r.url: {
                                f"{t}/{k}": first
                                for t, uri in enumerate(uris)
                                for k, (first, _) in enumerate(first_locations(r.server.client, uri))
                            }
                            for r in replicas
                        }
                        agree = sum(len({firsts[u][tk] for u in firsts}) == 1 for tk in tickets) / n_tickets
                        owner_bytes: dict[str, int] = defaultdict(int)
                        for tk, v in tickets.items():
                            owner_bytes[firsts[replicas[0].url][tk]] += v["encoded_bytes"] or v["arrow_bytes"]
                        placement.setdefault(key, {"agree": [], "owner_bytes": []})
                        placement[key]["agree"].append(agree)
                        placement[key]["owner_bytes"].append(
                            [owner_bytes.get(r.url, 0) for r in replicas]  # as replica 0 names them
                        )
                        ready_at = time.time()
                    r = run_config(replicas, uris, want_rows, cfg, rnd)
                    end_at = time.time()
                    r["round"] = rnd + 1
                    results[key].append(r)
                    h.progress(
                        f"  {r['gbps']:.2f} GB/s, hit rate {pct(hit_rate(r['measured']))} "
                        f"(warm-up {pct(hit_rate(r['warmup']))}), {r['replicas_per_ticket']:.2f} replicas per ticket"
                    )
                finally:
                    for rep in replicas:
                        rep.server.stop()
                if results[key] and results[key][-1]["round"] == rnd + 1:
                    results[key][-1]["log"] = scan_logs(replicas, ready_at, end_at)
    finally:
        if not opts.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            h.progress(f"kept {scratch}")
    script_seconds = time.monotonic() - t_script
    report(opts, cfg, started, tickets, arrow_ws, encoded_ws, cache_bytes, results, placement, member_wait, prom)
    h.progress(f"ran in {script_seconds:.0f} s")


def report(opts, cfg, started, tickets, arrow_ws, encoded_ws, cache_bytes, results, placement, member_wait, prom):
    ws = encoded_ws or arrow_ws
    labels = {key: label for key, label, *_ in CONFIGS}
    gbps = {k: h.Samples([r["gbps"] for r in rs]) for k, rs in results.items()}
    hits = {
        k: h.Samples([x for x in (hit_rate(r["measured"]) for r in rs) if x is not None]) for k, rs in results.items()
    }
    warm_hits = {
        k: h.Samples([x for x in (hit_rate(r["warmup"]) for r in rs) if x is not None]) for k, rs in results.items()
    }
    prom_hits = {
        k: h.Samples([x for x in (prom_hit_rate(r["prom_measured"]) for r in rs) if x is not None])
        for k, rs in results.items()
    }
    # Ratios per round (configurations of one round ran minutes apart at most), then the median.
    ratio_ba = h.Samples([b["gbps"] / a["gbps"] for a, b in zip(results["a"], results["b"], strict=True)])
    ratio_bc = h.Samples([b["gbps"] / c["gbps"] for b, c in zip(results["b"], results["c"], strict=True)])
    cores = os.cpu_count()

    def hr(s: h.Samples) -> str:
        if not s.values:
            return "n/a"
        if len(s.values) == 1:
            return pct(s.median)
        return f"{pct(s.median)} ({pct(s.min)}-{pct(s.max)})"

    setting = (
        f"{len(tickets)} tickets, working set {h.fmt_bytes(ws)} encoded = {ws / cache_bytes:.2f} caches of "
        f"{cfg['cache_mib']} MiB; {cfg['clients']} clients"
    )
    res = h.Result("10", "replicas", "Replicas: one stream cache against three", opts.quick)
    res.params = {
        **{k: v for k, v in cfg.items()},
        "tickets": len(tickets),
        "arrow_bytes": arrow_ws,
        "encoded_bytes": encoded_ws,
        "cache_bytes": cache_bytes,
        "working_set_caches": ws / cache_bytes,
        "loadavg_start": started["loadavg"],
        "busy_at_start": started["busy"],
        "cores": cores,
    }
    res.rows = [
        h.Row(
            f"Aggregate GB/s, 3 replicas (rendezvous) vs 1 replica, repeated reads ({setting})",
            h.fmt_range(gbps["b"]),
            f"{h.fmt_range(gbps['a'])} 1 replica",
            h.fmt_ratio(ratio_ba.median),
        ),
        h.Row(
            "Aggregate GB/s, 3 replicas: rendezvous vs round-robin placement",
            h.fmt_range(gbps["b"]),
            f"{h.fmt_range(gbps['c'])} round-robin",
            h.fmt_ratio(ratio_bc.median),
        ),
        h.Row(
            "Stream-cache hit rate over the measured passes (do_get_cached / do_get, all replicas)",
            f"{hr(hits['b'])} rendezvous",
            f"{hr(hits['a'])} 1 replica; {hr(hits['c'])} round-robin",
            "-",
        ),
    ]

    def per_pass(rs: list[dict], f) -> h.Samples:
        return h.Samples([f(r) / cfg["passes"] for r in rs])

    rows = []
    for key, rs in results.items():
        rows.append(
            [
                f"({key}) {labels[key]}",
                hr(hits[key]),
                hr(warm_hits[key]),
                hr(prom_hits[key]) if prom else "n/a",
                h.fmt_range(gbps[key]),
                h.fmt_range(h.Samples([r["seconds"] for r in rs]), 1),
                h.fmt_bytes(per_pass(rs, lambda r: sum((d or {}).get("bytes_read", 0) for d in r["measured"])).median),
                f"{per_pass(rs, lambda r: sum(r['server_cpu'])).median:.1f}",
                f"{per_pass(rs, lambda r: r['client_cpu']).median:.1f}",
                f"{h.Samples([(sum(r['server_cpu']) + r['client_cpu']) / r['seconds'] for r in rs]).median:.2f}",
                h.fmt_bytes(h.Samples([sum(x or 0 for x in r["hwm"]) for r in rs]).median),
                f"{h.Samples([r['replicas_per_ticket'] for r in rs]).median:.2f}",
            ]
        )
    detail = [
        f"Load average {started['loadavg']} at the start; busy beside the run: "
        f"{', '.join(started['busy']) or 'nothing above 5% CPU'}. {cores} cores shared by every replica and the "
        f"client ({cfg['clients']} threads): three replicas cannot add CPU here, only cache capacity (and memory). "
        '"cores busy" is the CPU-s of all replicas and the client over the measured wall time: below '
        f"{cores} means other processes on the machine had the rest.",
        "",
        f"Working set: {cfg['tables']} tables x {cfg['rows']:,} rows, read as `?partitions={cfg['partitions']}`: "
        f"{len(tickets)} tickets of {h.fmt_bytes(min(v['arrow_bytes'] for v in tickets.values()))}-"
        f"{h.fmt_bytes(max(v['arrow_bytes'] for v in tickets.values()))} in Arrow; "
        f"{h.fmt_bytes(arrow_ws)} in Arrow, {h.fmt_bytes(encoded_ws)} encoded (the probe server's bytes_sent, what "
        f"the cache counts); `--cache-mib {cfg['cache_mib']}` per replica ({h.fmt_bytes(cache_bytes)}), so the set is "
        f"{ws / cache_bytes:.2f} caches and three caches hold {3 * cache_bytes / ws:.2f}x it. "
        f"Each of {cfg['clients']} clients reads every table once per pass, in its own random order; 1 warm-up pass, "
        f"then {cfg['passes']} measured passes ({h.fmt_bytes(cfg['clients'] * cfg['passes'] * arrow_ws)} of Arrow "
        f"data per configuration and round); {cfg['rounds']} round(s), fresh servers for every configuration.",
        "",
        *h.md_table(
            [
                "configuration",
                "hit rate (measured)",
                "hit rate (warm-up pass)",
                "hit rate from /metrics",
                "aggregate GB/s",
                "measured wall s",
                "storage bytes read per pass",
                "server CPU-s per pass (all)",
                "client CPU-s per pass",
                "cores busy",
                "peak RSS, all replicas",
                "replicas per ticket",
            ],
            rows,
        ),
        "",
        f"Ratios per round, then the median: rendezvous / 1 replica {h.fmt_range(ratio_ba)}, "
        f'rendezvous / round-robin {h.fmt_range(ratio_bc)}. "replicas per ticket": how many different replicas '
        "each ticket was read from during the measured passes (1.00: every read of a ticket went to one replica).",
    ]
    # Per-replica view of the last round.
    per = []
    for key, rs in results.items():
        r = rs[-1]
        for i, url in enumerate(r["urls"]):
            d = r["measured"][i] or {}
            pm = (r["prom_measured"][i] or {}) if prom else {}
            per.append(
                [
                    f"({key}) replica {i}",
                    h.fmt_bytes(r["bytes_by_location"].get(url, 0) / cfg["passes"]) if len(r["urls"]) > 1 else "all",
                    f"{d.get('do_get_cached', 'n/a')} of {d.get('do_get', 'n/a')}",
                    f"{pm.get('sheaf_cache_evictions_total', 0):.0f}" if pm else "n/a",
                    h.fmt_bytes(d.get("bytes_read")),
                    f"{r['server_cpu'][i]:.1f}",
                    h.fmt_bytes(r["hwm"][i]),
                ]
            )
    detail += [
        "",
        f"Per replica, round {results['a'][-1]['round']} (the last), measured passes:",
        "",
        *h.md_table(
            [
                "replica",
                "Arrow bytes read from it per pass (all clients)",
                "DoGets from cache",
                "cache evictions",
                "storage bytes read",
                "CPU-s",
                "peak RSS (VmHWM)",
            ],
            per,
        ),
    ]
    for key in ("b", "c"):
        p = placement.get(key)
        if not p:
            continue
        owners = p["owner_bytes"][-1]
        detail += [
            "",
            f"({key}) {labels[key]}: the three replicas named the same first location for "
            f"{pct(h.Samples(p['agree']).median)} of the tickets (one GetFlightInfo of every table on each replica "
            f"before the run); bytes of the tickets replica 0 names first at each replica: "
            f"{', '.join(h.fmt_bytes(b) for b in owners)} (cache {h.fmt_bytes(cache_bytes)} each). Waiting for all "
            f"three to list each other took {h.fmt_range(h.Samples(member_wait[key]), 1)} s.",
        ]
    logs = [r.get("log") or {} for rs in results.values() for r in rs]
    late = [line for x in logs for line in x.get("after_ready", [])]
    warn = sum(x.get("warn_error", 0) for x in logs)
    changes = sorted({c for x in logs for c in x.get("membership_changes", []) if len(x["membership_changes"]) > 1})
    detail += [
        "",
        f"Server logs (all configurations and rounds): {warn} WARN/ERROR lines or panics"
        + (f", first: `{logs_first(logs)}`" if warn else "")
        + "; changes of its healthy peers logged by one of three replicas: "
        + (" or ".join(map(str, changes)) or "none")
        + " (1 or 2 expected, as the other two start); logged after all three listed each other (during the "
        + f"warm-up and measured passes): {len(late)}"
        + (f", e.g. `{late[0][:400]}`" if late else "")
        + ".",
    ]
    res.detail = detail

    # Notes: what the figures say, in particular anything unexpected.
    hb, ha, hc = hits["b"].median, hits["a"].median, hits["c"].median
    res.notes.append(
        f"The machine has {cores} cores, shared by the replicas and the client: a cache hit saves the server "
        "decoding Parquet and encoding IPC, which is what three replicas buy here; on separate machines they would "
        "also add CPU and network."
    )
    res.notes.append(
        f"Expected hit rates: each client reads the tables in its own random order, so an LRU cache holding a share "
        f"s of the working set hits about s of the time: {cache_bytes / ws:.2f} for one replica and for round-robin "
        f"(every replica sees every ticket), 1.0 for rendezvous when each replica's share fits its cache (the shares "
        f"above). Measured: {pct(ha)}, {pct(hc)} and {pct(hb)}. The warm-up pass of rendezvous hits about "
        f"{cfg['clients'] - 1} of {cfg['clients']} times (one client's first read records a ticket; the other "
        "clients' reads of it wait for that recording or find it cached)."
    )
    rss = {k: h.fmt_bytes(h.Samples([sum(x or 0 for x in r["hwm"]) for r in rs]).median) for k, rs in results.items()}
    res.notes.append(
        f"Memory: the three replicas' peak RSS adds up to {rss['b']} with rendezvous and {rss['c']} with "
        f"round-robin, against {rss['a']} for one replica: a miss holds decoded row groups and a recording "
        "besides the cache."
    )
    mismatch = [k for k in results if prom and prom_hits[k].values and abs(prom_hits[k].median - hits[k].median) > 0.01]
    if mismatch:
        res.notes.append(
            "GET /metrics and the metrics action disagree on the hit rate of "
            + ", ".join(f"({k}): {pct(prom_hits[k].median)} against {pct(hits[k].median)}" for k in mismatch)
            + "."
        )
    if hb == hb and hb < 0.9:
        p = placement.get("b") or {}
        owners = (p.get("owner_bytes") or [[]])[-1]
        res.notes.append(
            f"Rendezvous placement gave a hit rate of only {pct(hb)}, although the working set "
            f"({h.fmt_bytes(ws)}) fits in three caches of {h.fmt_bytes(cache_bytes)}: the replicas agreed on the "
            f"first location for {pct(h.Samples(p.get('agree') or [float('nan')]).median)} of the tickets, owned "
            f"shares were {', '.join(h.fmt_bytes(b) for b in owners)}, and each ticket was read from "
            f"{h.Samples([r['replicas_per_ticket'] for r in results['b']]).median:.2f} replicas."
        )
    if hc == hc and hb == hb and hc >= hb - 0.05:
        res.notes.append(
            f"Round-robin's hit rate ({pct(hc)}) is about rendezvous' ({pct(hb)}): round-robin is expected to "
            "spread every ticket over all three caches."
        )
    if ha == ha and ha > min(1.0, cache_bytes / ws) + 0.15:
        res.notes.append(
            f"One replica hit its cache {pct(ha)} of the time, well above the {cache_bytes / ws:.2f} expected of an "
            f"LRU cache of {h.fmt_bytes(cache_bytes)} over {h.fmt_bytes(ws)} read in random orders."
        )
    res.plot = {
        "configs": {k: {"label": labels[k], "gbps": gbps[k].to_json(), "hit_rate": hits[k].to_json()} for k in results},
        "ratio_rendezvous_vs_one": ratio_ba.to_json(),
        "ratio_rendezvous_vs_round_robin": ratio_bc.to_json(),
    }
    res.params["runs"] = {
        k: [{kk: vv for kk, vv in r.items() if kk != "ticket_locations"} for r in rs] for k, rs in results.items()
    }
    res.params["placement"] = placement
    res.params["tickets_probe"] = tickets
    res.write(opts.out)


if __name__ == "__main__":
    main()
