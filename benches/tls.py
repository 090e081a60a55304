#!/usr/bin/env python3
"""Scenario 8: the cost of TLS (and of --auth) on a full-table read.

The table of scenario 1 (benches/flight_read.py: harness.py narrow_table, int64,
float64, float32, int32 and a string column, pushed into a fresh local registry)
is read whole by one pyarrow client, each read over plaintext and over TLS side
by side in the same rounds:

  - one stream: GetFlightInfo, then every endpoint's DoGet in order on one
    connection (what flight_read.py measures);
  - parallel: every endpoint's DoGet at once, each endpoint on its own
    connection (what DataLoader workers or Spark tasks do);
  - pyarrow's C++ FlightServerBase with the table in memory (benches/peers.py
    memory), plaintext and TLS, one stream: Arrow C++'s own cost of TLS on this
    machine, next to the published figure (about 20% lower throughput,
    apache/arrow PR #10242);
  - Sheaf with `--auth` (a [[token]] and a read grant) and the token sent as
    `authorization: Bearer` on every call, plaintext, one stream: the cost of the
    auth layer (token check per RPC, signed tickets).

Certificates come from trustme (a throwaway CA; the server certificate names
127.0.0.1 and localhost); `sheaf serve --tls-cert --tls-key` (rustls) and the
pyarrow peer with `tls_certificates` serve grpc+tls://, the client connects with
`tls_root_certs=` the CA. Every server is its own process with default flags, so
Sheaf's repeated reads come from its stream cache: the figures isolate what TLS
adds to sending bytes, the case where it weighs most.

Connections are made and warmed up (one read per reader) before timing, so the
TLS handshake is not in the read figures; it is measured apart (new connection +
first GetFlightInfo). Each round runs every group of readers (the group order
rotates), and within a group the readers run back to back (the order rotates
too), so the TLS/plaintext ratio of a round compares reads made a second apart;
the reported ratio is the median of the rounds' ratios. MB/s counts the table's
Arrow size in memory. Server CPU-s per read come from /proc/PID/stat; client
CPU-s are this process's (user + system, every thread).

    python benches/tls.py [--quick] [--out PATH.md] [--keep]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import pyarrow as pa  # noqa: E402
import pyarrow.flight as flight  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

SIZES = {"quick": dict(rows=500_000, rounds=3, handshakes=3), "full": dict(rows=15_000_000, rounds=20, handshakes=15)}
ARROW_CPP_TLS = 0.80  # "about 20% lower throughput over TLS", apache/arrow PR #10242
URL_RE = r"serving \S+ on (grpc(?:\+tls)?://\S+)"


# --------------------------------------------------------------------------
# Certificates, credentials, servers
# --------------------------------------------------------------------------


def make_pki(d: Path) -> dict:
    """A throwaway CA and a server certificate for 127.0.0.1 (trustme)."""
    import trustme

    d.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pki = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}
    ca.cert_pem.write_to_path(str(pki["ca"]))
    with open(pki["cert"], "wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    cert.private_key_pem.write_to_path(str(pki["key"]))
    pki["ca_pem"] = pki["ca"].read_bytes()
    return pki


def make_auth(d: Path) -> tuple[Path, str]:
    """An --auth file admitting one API token (`sheaf auth new-token`) with read
    access to every package; returns (file, token)."""
    r = subprocess.run(
        [str(h.sheaf_bin()), "auth", "new-token", "bench"],
        capture_output=True,
        text=True,
        env=h.server_env(),
        timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(f"sheaf auth new-token failed ({r.returncode}): {r.stderr}")
    token = r.stdout.strip().splitlines()[0].strip()
    sha = re.search(r'sha256 = "([0-9a-f]{64})"', r.stdout)
    if not sha or hashlib.sha256(token.encode()).hexdigest() != sha.group(1):
        raise RuntimeError(f"unexpected `sheaf auth new-token` output:\n{r.stdout}")
    path = d / "auth.toml"
    path.write_text(
        f'[server]\nkey = "{secrets.token_hex(32)}"\n\n'
        f'[[token]]\nname = "bench"\nsha256 = "{sha.group(1)}"\ngroups = []\n\n'
        f'[[grant]]\nto = "token:bench"\npackages = "*"\naccess = "read"\n'
    )
    return path, token


class Server(h.Server):
    """h.Server whose clients trust `roots` (PEM) for grpc+tls:// URLs."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_dir: Path, roots: bytes | None, url_re: str = URL_RE):
        self.roots = roots
        super().__init__(name, cmd, env, url_re, log_dir)
        if roots and not self.url.startswith("grpc+tls://"):
            self.kill()
            raise RuntimeError(f"{name}: started with TLS but serves {self.url}")

    def connect(self) -> flight.FlightClient:
        c = flight.FlightClient(self.url, tls_root_certs=self.roots) if self.roots else flight.FlightClient(self.url)
        self._clients.append(c)
        return c


def start_sheaf(registry: Path, logs: Path, name: str, args: list[str], roots: bytes | None) -> Server:
    cmd = [str(h.sheaf_bin()), "--registry", registry.resolve().as_uri(), "serve", "--listen", "127.0.0.1:0", *args]
    return Server(name, cmd, h.server_env(), logs, roots)


def start_peer(path: Path, logs: Path, pki: dict | None) -> Server:
    """pyarrow's in-memory peer (peers.py memory), or the same with TLS (this script's `peer` mode)."""
    env = {**os.environ, **h.CLIENT_ENV}
    if pki is None:
        cmd = [sys.executable, str(h.BENCHES / "peers.py"), "memory", str(path)]
        return Server("peer-memory", cmd, env, logs, None, r"serving on (\S+://\S+)")
    cmd = [sys.executable, str(Path(__file__).resolve()), "peer", str(path), str(pki["cert"]), str(pki["key"])]
    return Server("peer-memory-tls", cmd, env, logs, pki["ca_pem"], r"serving on (\S+://\S+)")


def serve_tls_peer(path: str, cert: str, key: str) -> None:
    """peers.py's `memory` peer listening on grpc+tls:// (one table, loaded at start)."""
    import peers

    class TlsPeer(peers.Peer):
        def __init__(self):
            flight.FlightServerBase.__init__(
                self,
                "grpc+tls://127.0.0.1:0",
                tls_certificates=[flight.CertKeyPair(cert=Path(cert).read_bytes(), key=Path(key).read_bytes())],
            )
            self.mode = "memory"
            self.files = {str(Path(path).resolve()): Path(path).resolve()}
            self.tables = {k: pq.read_table(p) for k, p in self.files.items()}

    server = TlsPeer()
    print(f"peer: serving on grpc+tls://127.0.0.1:{server.port}", flush=True)
    server.serve()


def negotiated(url: str, ca: Path) -> str:
    """TLS version and cipher a server picks for Python's ssl client offering h2
    (gRPC's own client may differ in what it offers)."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as s,
        ):
            name, version, bits = s.cipher()
            return f"{version} {name}"
    except (OSError, ssl.SSLError) as e:
        return f"? ({e})"


# --------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------


def read_one_stream(client: flight.FlightClient, target: str, call: flight.FlightCallOptions) -> pa.Table:
    info = client.get_flight_info(h.descriptor(target), call)
    return pa.concat_tables([client.do_get(ep.ticket, call).read_all() for ep in info.endpoints])


def read_parallel(clients: list[flight.FlightClient], target: str, call: flight.FlightCallOptions) -> pa.Table:
    info = clients[0].get_flight_info(h.descriptor(target), call)
    eps = list(info.endpoints)
    with ThreadPoolExecutor(len(eps)) as pool:
        tables = list(
            pool.map(lambda i: clients[i % len(clients)].do_get(eps[i].ticket, call).read_all(), range(len(eps)))
        )
    return pa.concat_tables(tables)


class Reader:
    def __init__(self, label: str, server: Server, fn):
        self.label = label
        self.server = server
        self.fn = fn
        self.seconds = h.Samples()
        self.server_cpu = h.Samples()
        self.client_cpu = h.Samples()
        self.writes = h.Samples()  # the server's write()/writev() calls per read
        self.wchar = h.Samples()  # and the bytes they wrote

    def run(self, want_rows: int) -> float:
        io0 = proc_io(self.server.pid)
        cpu0, ccpu0 = self.server.cpu(), time.process_time()
        t0 = time.perf_counter()
        table = self.fn()
        dt = time.perf_counter() - t0
        ccpu = time.process_time() - ccpu0
        cpu = self.server.cpu() - cpu0
        io1 = proc_io(self.server.pid)
        if "syscw" in io0 and "syscw" in io1:
            self.writes.add(io1["syscw"] - io0["syscw"])
            self.wchar.add(io1["wchar"] - io0["wchar"])
        rows = table.num_rows
        del table
        if rows != want_rows:
            raise AssertionError(f"{self.label}: read {rows} rows, expected {want_rows}")
        self.seconds.add(dt)
        self.server_cpu.add(cpu)
        self.client_cpu.add(ccpu)
        return dt

    def mbps(self, nbytes: int) -> h.Samples:
        return self.seconds.map(lambda s: nbytes / s / h.MB)


class Group:
    """Readers measured back to back each round; the first is the baseline
    (plaintext) every other one is compared with, round by round."""

    def __init__(self, name: str, readers: list[Reader]):
        self.name = name
        self.readers = readers
        self.ratios = {r.label: h.Samples() for r in readers[1:]}  # throughput / the baseline's, per round

    def round(self, i: int, want_rows: int) -> None:
        k = i % len(self.readers)
        order = self.readers[k:] + self.readers[:k]
        secs = {r.label: r.run(want_rows) for r in order}
        base = secs[self.readers[0].label]
        for r in self.readers[1:]:
            self.ratios[r.label].add(base / secs[r.label])


def handshake_ms(server: Server, target: str, call: flight.FlightCallOptions) -> float:
    """A new connection (TCP, and TLS when the URL says so) and its first GetFlightInfo."""
    t0 = time.perf_counter()
    c = (
        flight.FlightClient(server.url, tls_root_certs=server.roots)
        if server.roots
        else flight.FlightClient(server.url)
    )
    try:
        c.get_flight_info(h.descriptor(target), call)
        return (time.perf_counter() - t0) * 1000
    finally:
        c.close()


def server_connections(pid: int) -> int:
    """Sockets the server process holds (its listener included)."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    n += 1
    except OSError:
        pass
    return n


def proc_io(pid: int) -> dict[str, int]:
    """/proc/PID/io counters (syscw: write()/writev() calls, which tokio uses; gRPC C++ sends with
    sendmsg(), which the kernel does not count there)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            k, v = line.split(":", 1)
            out[k] = int(v)
    except (OSError, ValueError):
        pass
    return out


def sheaf_counters(client: flight.FlightClient, call: flight.FlightCallOptions) -> dict | None:
    import json

    try:
        results = list(client.do_action(flight.Action("metrics", b""), call))
        return json.loads(bytes(results[0].body).decode("utf-8"))
    except Exception:
        return None


# --------------------------------------------------------------------------


def main() -> None:
    opts, cfg = h.start_scenario(__doc__, SIZES)
    path = h.dataset("narrow", cfg["rows"])
    rows, nbytes = h.arrow_bytes(path)
    file_size = path.stat().st_size
    scratch = h.scratch_dir("tls")
    logs = scratch / "logs"
    plain_call = h.CALL
    try:
        registry = scratch / "registry"
        h.progress(f"pushing {h.fmt_bytes(file_size)} Parquet into {registry}")
        h.push(registry, "bench/read", h.package_dir(scratch, "read", {"table.parquet": path}))
        uri = "sheaf://bench/read/table.parquet"
        pki = make_pki(scratch / "pki")
        auth_file, token = make_auth(scratch)
        auth_call = flight.FlightCallOptions(timeout=300, headers=[(b"authorization", f"Bearer {token}".encode())])
        tls_args = ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]

        with contextlib.ExitStack() as stack:
            h.progress("starting the servers")
            plain = stack.enter_context(start_sheaf(registry, logs, "sheaf", [], None))
            tls = stack.enter_context(start_sheaf(registry, logs, "sheaf-tls", tls_args, pki["ca_pem"]))
            auth = stack.enter_context(start_sheaf(registry, logs, "sheaf-auth", ["--auth", str(auth_file)], None))
            mem = stack.enter_context(start_peer(path, logs, None))
            mem_tls = stack.enter_context(start_peer(path, logs, pki))
            idle_sockets = {"plaintext": server_connections(plain.pid), "TLS": server_connections(tls.pid)}
            n_endpoints = len(plain.client.get_flight_info(h.descriptor(uri), plain_call).endpoints)
            ciphers = {
                "Sheaf (rustls)": negotiated(tls.url, pki["ca"]),
                "pyarrow C++ (gRPC)": negotiated(mem_tls.url, pki["ca"]),
            }
            # One connection per endpoint for the parallel reads (DataLoader workers, Spark tasks).
            plain_conns = [plain.client] + [plain.connect() for _ in range(n_endpoints - 1)]
            tls_conns = [tls.client] + [tls.connect() for _ in range(n_endpoints - 1)]
            peer_target = str(path)

            single = Group(
                "one stream",
                [
                    Reader("Sheaf, plaintext", plain, lambda: read_one_stream(plain.client, uri, plain_call)),
                    Reader("Sheaf, TLS", tls, lambda: read_one_stream(tls.client, uri, plain_call)),
                    Reader(
                        "Sheaf, plaintext, --auth + bearer token",
                        auth,
                        lambda: read_one_stream(auth.client, uri, auth_call),
                    ),
                ],
            )
            parallel = Group(
                f"parallel ({n_endpoints} endpoints at once, one connection each)",
                [
                    Reader(
                        "Sheaf, plaintext, endpoints in parallel",
                        plain,
                        lambda: read_parallel(plain_conns, uri, plain_call),
                    ),
                    Reader("Sheaf, TLS, endpoints in parallel", tls, lambda: read_parallel(tls_conns, uri, plain_call)),
                ],
            )
            peer = Group(
                "pyarrow C++ server, table in memory, one stream",
                [
                    Reader(
                        "pyarrow C++ server, plaintext",
                        mem,
                        lambda: read_one_stream(mem.client, peer_target, plain_call),
                    ),
                    Reader(
                        "pyarrow C++ server, TLS",
                        mem_tls,
                        lambda: read_one_stream(mem_tls.client, peer_target, plain_call),
                    ),
                ],
            )
            groups = [single, parallel, peer]
            readers = [r for g in groups for r in g.readers]
            for r in readers:  # warm-up: connections and handshakes, code paths, Sheaf's stream cache
                r.fn()
            conns = {
                "plaintext": server_connections(plain.pid) - idle_sockets["plaintext"],
                "TLS": server_connections(tls.pid) - idle_sockets["TLS"],
            }
            before = {
                s.name: sheaf_counters(s.client, auth_call if s is auth else plain_call) for s in (plain, tls, auth)
            }
            for i in range(cfg["rounds"]):
                h.progress(f"round {i + 1}/{cfg['rounds']}")
                k = i % len(groups)
                for g in groups[k:] + groups[:k]:
                    g.round(i, rows)
            after = {
                s.name: sheaf_counters(s.client, auth_call if s is auth else plain_call) for s in (plain, tls, auth)
            }
            hs = {
                lbl: h.Samples()
                for lbl in (
                    "Sheaf, plaintext",
                    "Sheaf, TLS",
                    "pyarrow C++ server, plaintext",
                    "pyarrow C++ server, TLS",
                )
            }
            for _ in range(cfg["handshakes"]):
                for lbl, srv in zip(hs, (plain, tls, mem, mem_tls), strict=False):
                    hs[lbl].add(handshake_ms(srv, uri if srv in (plain, tls) else peer_target, plain_call))
            hwm = {s.name: s.hwm() for s in (plain, tls, auth)}
    finally:
        if opts.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    m = {r.label: r.mbps(nbytes) for r in readers}
    s_plain, s_tls, s_auth = single.readers
    p_plain, p_tls = parallel.readers
    a_plain, a_tls = peer.readers
    r_single = single.ratios[s_tls.label]
    r_auth = single.ratios[s_auth.label]
    r_par = parallel.ratios[p_tls.label]
    r_arrow = peer.ratios[a_tls.label]

    def quotient(a: Reader, b: Reader) -> float:
        return m[a.label].median / m[b.label].median

    res = h.Result("8", "tls", "TLS and authentication: full-table read, plaintext vs TLS", opts.quick)
    res.params = {
        "rows": rows,
        "arrow_bytes": nbytes,
        "parquet_bytes": file_size,
        "endpoints": n_endpoints,
        "rounds": cfg["rounds"],
        "handshakes": cfg["handshakes"],
        "ciphers": ciphers,
        "client_connections_during_rounds": conns,
        "arrow_cpp_reference_ratio": ARROW_CPP_TLS,
        "ratios": {
            "sheaf_one_stream_tls": r_single.to_json(),
            "sheaf_parallel_tls": r_par.to_json(),
            "pyarrow_tls": r_arrow.to_json(),
            "sheaf_one_stream_auth": r_auth.to_json(),
        },
        "readers": {
            r.label: {
                "seconds": r.seconds.to_json(),
                "mbps": m[r.label].to_json(),
                "server_cpu": r.server_cpu.to_json(),
                "client_cpu": r.client_cpu.to_json(),
                "server_write_calls": r.writes.to_json(),
                "server_write_bytes": r.wchar.to_json(),
            }
            for r in readers
        },
        "handshake_ms": {k: v.to_json() for k, v in hs.items()},
    }

    rel = r_single.median / r_arrow.median
    plural = "s" if n_endpoints != 1 else ""
    eps = f"{n_endpoints} endpoint{plural}"
    res.rows = [
        h.Row(
            "Full-table read over TLS / plaintext, one stream, MB/s (Sheaf, repeated reads; median of per-round "
            "ratios)",
            f"{h.fmt_range(m[s_tls.label], 0)} TLS",
            f"{h.fmt_range(m[s_plain.label], 0)} plaintext",
            h.fmt_ratio(r_single.median),
        ),
        h.Row(
            f"Full-table read over TLS / plaintext, {eps} in parallel, MB/s (Sheaf; median of per-round ratios)",
            f"{h.fmt_range(m[p_tls.label], 0)} TLS",
            f"{h.fmt_range(m[p_plain.label], 0)} plaintext",
            h.fmt_ratio(r_par.median),
        ),
        h.Row(
            "Share of throughput kept over TLS, one stream: Sheaf vs pyarrow's C++ server (published Arrow C++: "
            f"{ARROW_CPP_TLS:.2f}x)",
            f"{h.fmt_ratio(r_single.median)} Sheaf",
            f"{h.fmt_ratio(r_arrow.median)} pyarrow C++ ({h.fmt_range(m[a_tls.label], 0)} vs "
            f"{h.fmt_range(m[a_plain.label], 0)} MB/s)",
            h.fmt_ratio(rel),
        ),
        h.Row(
            "Full-table read over TLS, one stream, MB/s: Sheaf vs pyarrow C++ server over TLS",
            h.fmt_range(m[s_tls.label], 0),
            f"{h.fmt_range(m[a_tls.label], 0)} pyarrow C++ server, TLS",
            h.fmt_ratio(quotient(s_tls, a_tls)),
        ),
        h.Row(
            "Full-table read with --auth and a bearer token / without, one stream, plaintext, MB/s (Sheaf)",
            f"{h.fmt_range(m[s_auth.label], 0)} --auth",
            f"{h.fmt_range(m[s_plain.label], 0)} no auth",
            h.fmt_ratio(r_auth.median),
        ),
    ]

    def counters(name: str) -> str:
        d = h.metrics_delta(before.get(name), after.get(name))
        if not d or "do_get" not in d:
            return "n/a"
        return f"{d.get('do_get_cached', 0):.0f} of {d['do_get']:.0f}"

    ratio_of = {s_tls.label: r_single, s_auth.label: r_auth, p_tls.label: r_par, a_tls.label: r_arrow}

    def writes_cell(r: Reader) -> str:
        if not r.writes.values or r.writes.median < 10:  # gRPC C++ sends with sendmsg(), not counted
            return "-"
        return f"{r.writes.median:,.0f} ({h.fmt_bytes(r.wchar.median / r.writes.median)})"

    table_rows = []
    for r in readers:
        sec = r.seconds
        table_rows.append(
            [
                r.label,
                h.fmt_range(m[r.label], 0),
                h.fmt_range(ratio_of[r.label], 2) if r.label in ratio_of else "(baseline)",
                h.fmt_range(sec, 3),
                h.fmt_range(r.server_cpu, 2),
                h.fmt_range(r.client_cpu, 2),
                writes_cell(r),
            ]
        )
    res.detail = [
        f"Table: {rows:,} rows, {h.fmt_bytes(nbytes)} in Arrow, {h.fmt_bytes(file_size)} Parquet "
        f"({pq.ParquetFile(path).metadata.num_row_groups} row groups); Sheaf plans {n_endpoints} endpoint(s), "
        f"pyarrow's server one. {cfg['rounds']} rounds after one warm-up read per reader; each round runs the "
        "groups (one stream; parallel; pyarrow) in rotating order, and the readers of a group back to back in "
        "rotating order. Median (min-max). The ratio column is, per round, this reader's throughput over the "
        "first reader of its group (plaintext, no auth).",
        "",
        *h.md_table(
            [
                "reader",
                "MB/s",
                "ratio to plaintext (per round)",
                "seconds",
                "server CPU-s per read",
                "client CPU-s per read",
                "server write() calls per read (mean size)",
            ],
            table_rows,
        ),
        "",
        "Ratio of the medians (instead of the median of per-round ratios): "
        f"one stream {quotient(s_tls, s_plain):.2f}x, parallel {quotient(p_tls, p_plain):.2f}x, "
        f"pyarrow C++ {quotient(a_tls, a_plain):.2f}x, --auth {quotient(s_auth, s_plain):.2f}x.",
        "",
        "New connection + first GetFlightInfo (TCP, plus the TLS handshake where TLS), ms: "
        + "; ".join(f"{k} {h.fmt_range(v, 1)}" for k, v in hs.items())
        + ".",
        "",
        "TLS as negotiated with Python's ssl client (gRPC's client offers its own list): "
        + "; ".join(f"{k}: {v}" for k, v in ciphers.items())
        + f". Client connections to the server during the rounds (its sockets then, less before the first "
        f"request): plaintext {conns['plaintext']}, TLS {conns['TLS']}. DoGets served from Sheaf's stream cache "
        "during the rounds: plaintext "
        f"{counters('sheaf')}, TLS {counters('sheaf-tls')}, --auth {counters('sheaf-auth')}. Server peak RSS: "
        + ", ".join(f"{k} {h.fmt_bytes(v)}" for k, v in hwm.items())
        + ".",
    ]

    def cost_note(label: str, plain_r: Reader, tls_r: Reader, ratio: h.Samples) -> str:
        extra_s = tls_r.server_cpu.median - plain_r.server_cpu.median
        extra_c = tls_r.client_cpu.median - plain_r.client_cpu.median
        return (
            f"{label}: TLS keeps {ratio.median:.2f}x of plaintext throughput (rounds {ratio.min:.2f}-"
            f"{ratio.max:.2f}); per read the server spends {extra_s:+.2f} CPU-s "
            f"({plain_r.server_cpu.median:.2f} -> {tls_r.server_cpu.median:.2f}) and the client "
            f"{extra_c:+.2f} CPU-s ({plain_r.client_cpu.median:.2f} -> {tls_r.client_cpu.median:.2f}), "
            f"i.e. {extra_s / nbytes * 1e9:.2f} + {extra_c / nbytes * 1e9:.2f} CPU-s per GB encrypted and "
            "decrypted."
        )

    def busy(r: Reader) -> float:
        return (r.server_cpu.median + r.client_cpu.median) / r.seconds.median

    def write_note() -> list[str]:
        if not (s_plain.writes.values and s_tls.writes.values) or s_plain.writes.median < 10:
            return []
        sz_p = s_plain.wchar.median / s_plain.writes.median
        sz_t = s_tls.wchar.median / s_tls.writes.median
        if sz_t > 0.5 * sz_p:
            return []
        return [
            f"Sheaf's TLS server hands the socket {h.fmt_bytes(sz_t)} per write() call ({s_tls.writes.median:,.0f} "
            f"calls per read) against {h.fmt_bytes(sz_p)} in plaintext ({s_plain.writes.median:,.0f} calls): "
            "rustls keeps at most 64 KiB of encrypted records waiting (its default buffer limit, which tonic's "
            "ServerTlsConfig does not expose), so every 4 records of 16 KiB are a system call and a wake-up of "
            "the client. gRPC C++ sends about 1.6 MB per sendmsg() over TLS (strace, outside this script); the "
            "client's extra CPU over Sheaf's TLS stream compared with pyarrow's likely comes from there."
        ]

    res.notes = [
        cost_note("One stream (Sheaf)", s_plain, s_tls, r_single),
        cost_note(f"Parallel, {n_endpoints} connection{plural} (Sheaf)", p_plain, p_tls, r_par),
        cost_note("pyarrow's C++ server", a_plain, a_tls, r_arrow)
        + f" The published Arrow C++ figure is about {ARROW_CPP_TLS:.2f}x (apache/arrow PR #10242).",
        f"--auth with a bearer token keeps {r_auth.median:.2f}x of the throughput without it (rounds "
        f"{r_auth.min:.2f}-{r_auth.max:.2f}); server CPU-s per read {s_plain.server_cpu.median:.2f} -> "
        f"{s_auth.server_cpu.median:.2f}: a token check per RPC and a signed ticket per DoGet "
        f"({n_endpoints + 1} RPCs per read).",
        *write_note(),
        "Client and server share this machine's cores (and with anything else running): server + client CPU-s "
        "per read over its wall time is "
        + "; ".join(f"{r.label} {busy(r):.1f}" for r in readers)
        + f" cores busy of {os.cpu_count()}.",
    ]
    res.plot = {"bars": [{"label": r.label, **m[r.label].to_json()} for r in readers], "unit": "MB/s"}
    res.write(opts.out)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "peer":
        serve_tls_peer(*sys.argv[2:])
    else:
        main()
