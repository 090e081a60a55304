#!/usr/bin/env python3
"""Flight SQL: the same analytic queries through ADBC against `sheaf serve` and in
DuckDB (in-process) on the same local Parquet files, side by side in one run.

    python benches/sql.py [--quick] [--rounds N] [--out benches/results/sql.md]

Data (deterministic, cached in $SHEAF_CACHE/bench-data/sql-ROWS-vN/): a fact table
`sales` (id, ts timestamp[us] over 2025, store_id, customer_id, product string, qty,
amount; 4M rows, 200k with --quick) as a folder of Parquet parts of several row groups
each, and a dimension table `stores.parquet` (1,000 stores: region, city). Revision A
is pushed, then revision B (part 0 rewritten: about 1% of its rows removed, 1% with a
new amount, 1% added), so the package `bench/shop` has two revisions and latest is B.

Sheaf runs each query through `adbc_driver_flightsql.dbapi` (`cursor.execute`, then
`fetch_arrow_table`: GetFlightInfo, every endpoint's DoGet, over loopback) against
the tables `"bench/shop"."sales"` and `"bench/shop"."stores.parquet"` (and the two
revisions pinned by hash for the diff). DuckDB runs the same statement on views over
`read_parquet` of the local copy of the same files (revision B; A for the diff).

- Warm: one warm-up run each, then N rounds (the engines alternating, the order
  rotating), median (min-max) milliseconds per query, one server and one connection
  per engine for the whole run. The server of these runs has its stream cache off
  (`--cache-mib 0`), so every run plans and executes the statement.
- Kept (informational): the same statement through ADBC against a second server with
  its default stream cache. A statement's tickets pin the revisions it reads, so a
  deterministic statement's answer is kept after its first run and later runs are
  sent from memory (planned again, the statement gets the same tickets).
- First run: Sheaf = the query's first run on a freshly started server (its caches
  empty; the page cache is warm; the ADBC connection is made before the clock starts);
  DuckDB = the query's first run on a new in-memory connection (views made before the
  clock starts).
- Ratio: DuckDB time / Sheaf time (above 1: Sheaf faster).
- Beside them (warm, informational): the same statement sent to the same server as one
  Flight SQL CommandStatementQuery through plain pyarrow Flight (GetFlightInfo, DoGet; no
  ADBC driver, no prepared statement), and the round-trip floor (`SELECT 1`) of each way.

Every Sheaf result is compared with DuckDB's (rows sorted, floats to a relative 1e-7);
the sample query instead against the README's sampling formula computed here (DuckDB
samples its own way: `USING SAMPLE 1 PERCENT (bernoulli, 1)`). A query that fails or
answers differently is reported and makes the script exit 1 (after writing its
results). No timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datetime  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from fractions import Fraction  # noqa: E402

import harness as h  # noqa: E402  (first: client environment before pyarrow)
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

SIZES = {
    "quick": dict(rows=200_000, parts=4, rounds=3),
    "full": dict(rows=4_000_000, parts=8, rounds=7),
}
DATA_VERSION = 1  # bump when the generator changes, so cached files are remade
PACKAGE = "bench/shop"
STORES = 1000
REGIONS = ["north", "south", "east", "west", "central", "coast", "mountain", "islands"]
YEAR_START = datetime.datetime(2025, 1, 1)
SAMPLE_F, SAMPLE_SEED = 0.01, 1


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def sales_table(rows: int, seed: int = 16) -> pa.Table:
    """The fact table, sorted on id and ts (events over 2025)."""
    rng = np.random.default_rng(seed)
    products = h.vocabulary(rng, 5000, 4, 12)
    year_us = 365 * 86400 * 1_000_000
    start_us = int((YEAR_START - datetime.datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    ts = start_us + np.sort(rng.integers(0, year_us, rows, dtype=np.int64))
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "ts": pa.array(ts, pa.timestamp("us")),
            "store_id": pa.array(rng.integers(0, STORES, rows, dtype=np.int32)),
            "customer_id": pa.array(rng.integers(0, rows // 20 + 1, rows, dtype=np.int64)),
            "product": products.take(pa.array(rng.integers(0, len(products), rows))),
            "qty": pa.array(rng.integers(1, 21, rows, dtype=np.int32)),
            "amount": pa.array(np.round(rng.exponential(40.0, rows), 2)),
        }
    )


def stores_table(seed: int = 17) -> pa.Table:
    rng = np.random.default_rng(seed)
    cities = h.vocabulary(rng, 300, 4, 10)
    return pa.table(
        {
            "store_id": pa.array(np.arange(STORES, dtype=np.int32)),
            "region": pa.array([REGIONS[i] for i in rng.integers(0, len(REGIONS), STORES)]),
            "city": cities.take(pa.array(rng.integers(0, len(cities), STORES))),
            "opened": pa.array(
                np.datetime64("2010-01-01") + rng.integers(0, 5000, STORES).astype("timedelta64[D]"), pa.date32()
            ),
        }
    )


def revise(part: pa.Table, next_id: int) -> pa.Table:
    """Revision B of part 0: ids divisible by 97 removed, those divisible by 101 get
    amount + 1, and 1% new rows (ids from `next_id`) appended."""
    ids = part.column("id").to_numpy()
    kept = part.filter(pa.array(ids % 97 != 0))
    kid = kept.column("id").to_numpy()
    amount = kept.column("amount").to_numpy()
    kept = kept.set_column(
        kept.schema.get_field_index("amount"), "amount", pa.array(np.where(kid % 101 == 0, amount + 1.0, amount))
    )
    added = sales_table(part.num_rows // 100, seed=18)
    added = added.set_column(0, "id", pa.array(np.arange(next_id, next_id + added.num_rows, dtype=np.int64)))
    return pa.concat_tables([kept, added.cast(kept.schema)])


def generate(rows: int, parts: int) -> Path:
    """DATA_CACHE/sql-ROWS-vN/{a,b}/ (sales/part-NNNNN.parquet, stores.parquet), made once;
    b's unchanged files are hard links to a's."""
    root = h.DATA_CACHE / f"sql-{rows}-v{DATA_VERSION}"
    if (root / "done").exists():
        return root
    h.progress(f"generating the sales table, {rows:,} rows in {parts} parts -> {root}")
    shutil.rmtree(root, ignore_errors=True)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sales = sales_table(rows)
    per = -(-rows // parts)
    for rev in ("a", "b"):
        (tmp / rev / "sales").mkdir(parents=True)
    for i in range(parts):
        part = sales.slice(i * per, per)
        name = f"sales/part-{i:05d}.parquet"
        pq.write_table(part, tmp / "a" / name, row_group_size=max(1, -(-part.num_rows // 4)), write_page_index=True)
        if i == 0:
            new = revise(part, rows)
            pq.write_table(new, tmp / "b" / name, row_group_size=max(1, -(-new.num_rows // 4)), write_page_index=True)
        else:
            os.link(tmp / "a" / name, tmp / "b" / name)
    pq.write_table(stores_table(), tmp / "a" / "stores.parquet")
    os.link(tmp / "a" / "stores.parquet", tmp / "b" / "stores.parquet")
    (tmp / "done").write_text("ok\n")
    tmp.rename(root)
    for old in h.DATA_CACHE.glob("sql-*-v*"):
        if not old.name.endswith(f"-v{DATA_VERSION}"):
            shutil.rmtree(old, ignore_errors=True)
    return root


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------

MID = YEAR_START + datetime.timedelta(days=182)
QUERIES: list[tuple[str, str, str]] = [
    # (key, name, SQL with {sales} {stores} {sales_a} {sales_b} {sample})
    ("count", "full scan count", "SELECT count(*) AS n FROM {sales}"),
    (
        "filter",
        "selective filter (12 hours of ts, amount > 20)",
        "SELECT id, ts, store_id, amount FROM {sales} "
        f"WHERE ts >= TIMESTAMP '{MID:%Y-%m-%d %H:%M:%S}' "
        f"AND ts < TIMESTAMP '{MID + datetime.timedelta(hours=12):%Y-%m-%d %H:%M:%S}' AND amount > 20",
    ),
    (
        "group_by",
        "group-by aggregate (per store)",
        "SELECT store_id, count(*) AS n, sum(amount) AS total, avg(qty) AS avg_qty "
        "FROM {sales} GROUP BY store_id ORDER BY store_id",
    ),
    (
        "top_n",
        "top-N (ORDER BY amount DESC LIMIT 100)",
        "SELECT id, ts, store_id, product, amount FROM {sales} ORDER BY amount DESC, id LIMIT 100",
    ),
    (
        "join",
        "join with the dimension table (per region)",
        "SELECT s.region, count(*) AS n, sum(f.amount) AS total FROM {sales} f "
        "JOIN {stores} s ON f.store_id = s.store_id GROUP BY s.region ORDER BY s.region",
    ),
    (
        "window",
        "window function (top 3 per store, row_number)",
        "SELECT store_id, id, amount, rn FROM (SELECT store_id, id, amount, "
        "row_number() OVER (PARTITION BY store_id ORDER BY amount DESC, id) AS rn FROM {sales}) t "
        "WHERE rn <= 3 ORDER BY store_id, rn",
    ),
    (
        "like",
        "string filter (product LIKE '%qu%')",
        "SELECT product, count(*) AS n, sum(amount) AS total FROM {sales} "
        "WHERE product LIKE '%qu%' GROUP BY product ORDER BY product",
    ),
    (
        "date_trunc",
        "date_trunc('month') group-by",
        "SELECT date_trunc('month', ts) AS month, count(*) AS n, sum(amount) AS total "
        "FROM {sales} GROUP BY 1 ORDER BY 1",
    ),
    (
        "diff",
        "join of two revisions (what changed)",
        "SELECT CASE WHEN a.id IS NULL THEN 'added' WHEN b.id IS NULL THEN 'removed' ELSE 'changed' END "
        "AS change, count(*) AS n FROM {sales_a} a FULL OUTER JOIN {sales_b} b ON a.id = b.id "
        "WHERE a.id IS NULL OR b.id IS NULL OR a.amount <> b.amount OR a.qty <> b.qty GROUP BY 1 ORDER BY 1",
    ),
    (
        "sample",
        "1% sample (sheaf('...?sample=0.01&seed=1'))",
        "SELECT count(*) AS n, avg(amount) AS avg_amount FROM {sample}",
    ),
]


def sheaf_names(hash_a: str, hash_b: str) -> dict[str, str]:
    return {
        "sales": f'"{PACKAGE}"."sales"',
        "stores": f'"{PACKAGE}"."stores.parquet"',
        "sales_a": f'"{PACKAGE}@{hash_a[:16]}"."sales"',
        "sales_b": f'"{PACKAGE}@{hash_b[:16]}"."sales"',
        "sample": f"sheaf('sheaf://{PACKAGE}/sales?sample={SAMPLE_F}&seed={SAMPLE_SEED}')",
    }


DUCKDB_NAMES = {
    "sales": "sales",
    "stores": "stores",
    "sales_a": "sales_a",
    "sales_b": "sales_b",
    "sample": f"sales USING SAMPLE {SAMPLE_F * 100:g} PERCENT (bernoulli, {SAMPLE_SEED})",
}


def duckdb_connect(data: Path):
    """A new in-memory DuckDB with views over the local files (latest = revision B)."""
    import duckdb

    con = duckdb.connect()
    for view, glob in (
        ("sales", data / "b" / "sales" / "*.parquet"),
        ("stores", data / "b" / "stores.parquet"),
        ("sales_a", data / "a" / "sales" / "*.parquet"),
        ("sales_b", data / "b" / "sales" / "*.parquet"),
    ):
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{glob}')")
    return con


def duckdb_run(con, sql: str) -> pa.Table:
    res = con.execute(sql)
    fetch = getattr(res, "to_arrow_table", None) or res.fetch_arrow_table
    return fetch()


def adbc_connect(url: str):
    import adbc_driver_flightsql.dbapi as flightsql

    return flightsql.connect(url, autocommit=True)


def adbc_run(conn, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            low, n = n & 0x7F, n >> 7
            out.append(low | (0x80 if n else 0))
            if not n:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def statement_command(sql: str) -> bytes:
    """A Flight SQL CommandStatementQuery packed in a google.protobuf.Any (what a CMD
    descriptor carries), encoded here so plain pyarrow Flight can send it."""
    any_type = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return _field(1, any_type) + _field(2, _field(1, sql.encode()))


def pyflight_run(client, sql: str) -> pa.Table:
    """The statement through plain pyarrow Flight: GetFlightInfo, then every endpoint's DoGet."""
    info = client.get_flight_info(h.flight.FlightDescriptor.for_command(statement_command(sql)), h.CALL)
    tables = [client.do_get(ep.ticket, h.CALL).read_all() for ep in info.endpoints]
    return pa.concat_tables(tables) if tables else info.schema.empty_table()


def short_error(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:400]}"


# --------------------------------------------------------------------------
# Checking answers
# --------------------------------------------------------------------------


def normalized_rows(t: pa.Table) -> list[tuple]:
    cols = []
    for c in t.columns:
        if pa.types.is_timestamp(c.type):
            c = c.cast(pa.timestamp("us"))
        elif pa.types.is_string_view(c.type) or pa.types.is_large_string(c.type):
            c = c.cast(pa.string())
        vals = c.to_pylist()
        cols.append([datetime.datetime(v.year, v.month, v.day) if type(v) is datetime.date else v for v in vals])
    rows = list(zip(*cols, strict=True)) if cols else []

    def key(r):
        return tuple(f"{v:.6g}" if isinstance(v, float) else repr(v) for v in r)

    return sorted(rows, key=key)


def differences(got: pa.Table, want: pa.Table) -> str | None:
    """None when the two answers hold the same rows (in any order, floats to 1e-7)."""
    if got.num_rows != want.num_rows:
        return f"{got.num_rows} rows, expected {want.num_rows}"
    if got.num_columns != want.num_columns:
        return f"columns {got.column_names}, expected {want.column_names}"
    for i, (a, b) in enumerate(zip(normalized_rows(got), normalized_rows(want), strict=True)):
        for x, y in zip(a, b, strict=True):
            same = (
                math.isclose(x, y, rel_tol=1e-7, abs_tol=1e-9)
                if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x is not None and y is not None
                else x == y
            )
            if not same:
                return f"row {i} (sorted) is {a}, expected {b}"
    return None


def splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def expected_sample(data: Path) -> pa.Table:
    """count and avg(amount) of the README's sample of the folder table (parts in path order)."""
    amount = pa.concat_tables(
        [pq.read_table(p, columns=["amount"]) for p in sorted((data / "b" / "sales").glob("*.parquet"))]
    ).column("amount")
    amount = amount.to_numpy()
    pos = np.arange(len(amount), dtype=np.uint64)
    with np.errstate(over="ignore"):
        keep = splitmix64(np.uint64(SAMPLE_SEED) ^ splitmix64(pos)) < np.uint64(int(Fraction(SAMPLE_F) * (1 << 64)))
    n = int(keep.sum())
    return pa.table({"n": pa.array([n], pa.int64()), "avg_amount": [float(amount[keep].mean()) if n else None]})


# --------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------


@dataclass
class QueryResult:
    key: str
    name: str
    sheaf_sql: str
    duckdb_sql: str
    sheaf_ms: h.Samples = field(default_factory=h.Samples)
    pyflight_ms: h.Samples = field(default_factory=h.Samples)
    kept_ms: h.Samples = field(default_factory=h.Samples)
    duckdb_ms: h.Samples = field(default_factory=h.Samples)
    sheaf_first_ms: float | None = None
    duckdb_first_ms: float | None = None
    sheaf_server_cpu: h.Samples = field(default_factory=h.Samples)
    sheaf_client_cpu: h.Samples = field(default_factory=h.Samples)
    duckdb_cpu: h.Samples = field(default_factory=h.Samples)
    sheaf_rows: int | None = None
    duckdb_rows: int | None = None
    error: str | None = None
    mismatch: str | None = None
    checked: str = ""
    cached_gets: int | None = None

    def ratio(self) -> float | None:
        if self.sheaf_ms.values and self.duckdb_ms.values:
            return self.duckdb_ms.median / self.sheaf_ms.median
        return None

    def first_ratio(self) -> float | None:
        if self.sheaf_first_ms and self.duckdb_first_ms:
            return self.duckdb_first_ms / self.sheaf_first_ms
        return None


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return (time.perf_counter() - t0) * 1000, out


def first_runs(q: QueryResult, registry: Path, logs: Path, data: Path) -> None:
    """The query's first run on a fresh server and on a new DuckDB connection."""
    import duckdb

    with h.start_sheaf(registry, logs) as server:
        conn = adbc_connect(server.url)
        try:
            q.sheaf_first_ms, _ = timed(lambda: adbc_run(conn, q.sheaf_sql))
        except Exception as e:  # noqa: BLE001 - reported in the table
            q.error = short_error(e)
            h.progress(f"  Sheaf failed: {q.error}")
        finally:
            conn.close()
    con = duckdb_connect(data)
    try:
        q.duckdb_first_ms, _ = timed(lambda: duckdb_run(con, q.duckdb_sql))
    except duckdb.Error as e:
        raise RuntimeError(f"DuckDB failed on {q.key}: {e}\n{q.duckdb_sql}") from e
    finally:
        con.close()


def warm_runs(
    q: QueryResult, server: h.Server, conn, kept: tuple[h.Server, object], con, rounds: int, want_sample: pa.Table
) -> None:
    """Warm-up, the answers checked, then `rounds` alternating timed runs each. `kept` is the server with its
    stream cache on and a connection to it."""
    kept_server, kept_conn = kept
    dd = duckdb_run(con, q.duckdb_sql)
    q.duckdb_rows = dd.num_rows
    engines = ["duckdb"]
    if q.error is None:
        try:
            got = adbc_run(conn, q.sheaf_sql)
        except Exception as e:  # noqa: BLE001 - reported in the table
            q.error = short_error(e)
            h.progress(f"  Sheaf failed: {q.error}")
        else:
            q.sheaf_rows = got.num_rows
            if q.key == "sample":
                q.mismatch = differences(got, want_sample)
                q.checked = "README sample formula"
            else:
                q.mismatch = differences(got, dd)
                q.checked = "DuckDB's answer"
            if q.mismatch:
                h.progress(f"  Sheaf's answer differs from {q.checked}: {q.mismatch}")
            engines.append("sheaf")
            try:
                raw = pyflight_run(server.client, q.sheaf_sql)
            except Exception as e:  # noqa: BLE001 - reported in the table
                h.progress(f"  Sheaf through pyarrow Flight failed: {short_error(e)}")
            else:
                if raw.num_rows != got.num_rows:
                    q.mismatch = f"{raw.num_rows} rows through pyarrow Flight, {got.num_rows} through ADBC"
                engines.append("pyflight")
            again = adbc_run(kept_conn, q.sheaf_sql)
            if again.num_rows != got.num_rows:
                q.mismatch = f"{again.num_rows} rows from the server keeping answers, {got.num_rows} without"
            engines.append("kept")
    before = h.sheaf_metrics(kept_server.client)
    for i in range(rounds):
        k = i % len(engines)
        for engine in engines[k:] + engines[:k]:
            if engine == "pyflight":
                ms, _ = timed(lambda: pyflight_run(server.client, q.sheaf_sql))
                q.pyflight_ms.add(ms)
            elif engine == "kept":
                ms, _ = timed(lambda: adbc_run(kept_conn, q.sheaf_sql))
                q.kept_ms.add(ms)
            elif engine == "sheaf":
                cpu0, c0 = server.cpu(), time.process_time()
                ms, _ = timed(lambda: adbc_run(conn, q.sheaf_sql))
                q.sheaf_ms.add(ms)
                q.sheaf_server_cpu.add(server.cpu() - cpu0)
                q.sheaf_client_cpu.add(time.process_time() - c0)
            else:
                c0 = time.process_time()
                ms, _ = timed(lambda: duckdb_run(con, q.duckdb_sql))
                q.duckdb_ms.add(ms)
                q.duckdb_cpu.add(time.process_time() - c0)
    delta = h.metrics_delta(before, h.sheaf_metrics(kept_server.client))
    if delta is not None:
        q.cached_gets = int(delta.get("do_get_cached", 0))


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def mean(s: h.Samples) -> float:
    """The mean (a server's CPU time is read in 10 ms ticks, so one run's figure is coarse)."""
    return sum(s.values) / len(s.values) if s.values else float("nan")


def fmt_ms(v: float | None) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def rows_text(n: int | None) -> str:
    if n is None:
        return "? rows"
    return "1 row" if n == 1 else f"{n:,} rows"


def report(opts, cfg: dict, results: list[QueryResult], floor: QueryResult, facts: dict) -> h.Result:
    res = h.Result("7", "sql", "Flight SQL through ADBC vs DuckDB on local Parquet", opts.quick)
    res.params = {
        **cfg,
        **facts,
        "queries": {
            q.key: {
                "sql": q.sheaf_sql,
                "duckdb_sql": q.duckdb_sql,
                "sheaf_ms": q.sheaf_ms.to_json(),
                "sheaf_pyarrow_flight_ms": q.pyflight_ms.to_json(),
                "sheaf_kept_ms": q.kept_ms.to_json(),
                "duckdb_ms": q.duckdb_ms.to_json(),
                "sheaf_first_ms": q.sheaf_first_ms,
                "duckdb_first_ms": q.duckdb_first_ms,
                "sheaf_server_cpu_s": q.sheaf_server_cpu.to_json(),
                "sheaf_client_cpu_s": q.sheaf_client_cpu.to_json(),
                "duckdb_cpu_s": q.duckdb_cpu.to_json(),
                "rows": {"sheaf": q.sheaf_rows, "duckdb": q.duckdb_rows},
                "error": q.error,
                "mismatch": q.mismatch,
            }
            for q in [*results, floor]
        },
    }
    for q in results:
        if q.error:
            sheaf_cell = f"error: {q.error}"
        else:
            sheaf_cell = f"{fmt_ms(q.sheaf_ms.median)} ms (first run {fmt_ms(q.sheaf_first_ms)} ms)"
            if q.mismatch:
                sheaf_cell += f"; WRONG ANSWER: {q.mismatch}"
        res.rows.append(
            h.Row(
                f"{q.name}, {rows_text(q.duckdb_rows if q.sheaf_rows is None else q.sheaf_rows)}",
                sheaf_cell,
                f"DuckDB {fmt_ms(q.duckdb_ms.median)} ms (new connection {fmt_ms(q.duckdb_first_ms)} ms)",
                h.fmt_ratio(q.ratio()),
                "-",
                "failed" if q.error or q.mismatch else "info",
            )
        )
    res.detail = [
        f"Data: `sales` {facts['rows']:,} rows in {cfg['parts']} Parquet parts "
        f"({facts['row_groups']} row groups, {h.fmt_bytes(facts['parquet_bytes'])} on disk, "
        f"{h.fmt_bytes(facts['arrow_bytes'])} in Arrow), `stores.parquet` {STORES:,} rows; revision B "
        f"rewrites part 0. Milliseconds: median (min-max) of {cfg['rounds']} warm runs each (after a warm-up), "
        "engines alternating; first run = a fresh server / a new DuckDB connection. Ratio = DuckDB / Sheaf "
        "(above 1: Sheaf faster); the first column of ratios is the warm one. Warm Sheaf runs are on a server "
        'with its stream cache off (every run executes the statement); "answer kept" runs are on a server '
        "with its default cache, which sends a deterministic statement's answer from memory after its first run.",
        "",
        *h.md_table(
            [
                "query",
                "Sheaf ms",
                "DuckDB ms",
                "Sheaf, pyarrow Flight ms",
                "ratio to it",
                "Sheaf, answer kept ms",
                "ratio to it",
                "Sheaf first run ms",
                "DuckDB new connection ms",
                "first-run ratio",
                "rows (Sheaf / DuckDB)",
                "Sheaf server CPU ms (mean)",
                "DuckDB CPU ms (mean)",
                "answer",
            ],
            [
                [
                    q.key,
                    h.fmt_range(q.sheaf_ms, 1) if q.sheaf_ms.values else "error",
                    h.fmt_range(q.duckdb_ms, 1),
                    h.fmt_range(q.pyflight_ms, 1) if q.pyflight_ms.values else "-",
                    f"{q.duckdb_ms.median / q.pyflight_ms.median:.2f}" if q.pyflight_ms.values else "-",
                    h.fmt_range(q.kept_ms, 1) if q.kept_ms.values else "-",
                    f"{q.duckdb_ms.median / q.kept_ms.median:.2f}" if q.kept_ms.values else "-",
                    fmt_ms(q.sheaf_first_ms),
                    fmt_ms(q.duckdb_first_ms),
                    f"{q.first_ratio():.2f}" if q.first_ratio() else "n/a",
                    f"{'-' if q.sheaf_rows is None else f'{q.sheaf_rows:,}'} / {q.duckdb_rows:,}",
                    fmt_ms(mean(q.sheaf_server_cpu) * 1000) if q.sheaf_server_cpu.values else "-",
                    fmt_ms(mean(q.duckdb_cpu) * 1000) if q.duckdb_cpu.values else "-",
                    "error"
                    if q.error
                    else (f"differs from {q.checked}" if q.mismatch else f"same as {q.checked}" if q.checked else "-"),
                ]
                for q in results
            ],
        ),
        "",
        "Statements (Sheaf; DuckDB's differ only in the table names: views over `read_parquet` of the "
        "local files, and `sales USING SAMPLE 1 PERCENT (bernoulli, 1)` for the sample):",
        "",
        *[f"- `{q.key}`: `{q.sheaf_sql}`" for q in results],
    ]
    errors = [q for q in results if q.error]
    wrong = [q for q in results if q.mismatch]
    if errors:
        res.notes.append("Sheaf failed: " + "; ".join(f"`{q.key}`: {q.error}" for q in errors))
    if wrong:
        res.notes.append("Sheaf answered differently: " + "; ".join(f"`{q.key}`: {q.mismatch}" for q in wrong))
    cached = sum(q.cached_gets or 0 for q in results)
    if floor.sheaf_ms.values:
        res.notes.append(
            f"Round-trip floor, `SELECT 1 AS one`: Sheaf through ADBC {fmt_ms(floor.sheaf_ms.median)} ms "
            f"({mean(floor.sheaf_client_cpu) * 1000:.1f} ms of this process's CPU, "
            f"{mean(floor.sheaf_server_cpu) * 1000:.1f} ms of the server's), through pyarrow Flight "
            f"{fmt_ms(floor.pyflight_ms.median)} ms, DuckDB {fmt_ms(floor.duckdb_ms.median)} ms. ADBC's dbapi "
            "prepares every statement (CreatePreparedStatement, GetFlightInfo, DoGet, ClosePreparedStatement); "
            "the pyarrow Flight column sends one CommandStatementQuery (GetFlightInfo, DoGet)."
        )
    elif floor.error:
        res.notes.append(f"Round-trip floor, `SELECT 1 AS one`: Sheaf failed: {floor.error}")
    res.notes += [
        "Sheaf's time is the whole round trip through the ADBC driver (planning the statement, DoGet of every "
        "endpoint over loopback, Arrow into the client); DuckDB's is in-process on the local files. Both "
        "engines use both cores; the client, the server and DuckDB share them.",
        "Sheaf's sample is its row-position sample (the README's formula, checked here); DuckDB's Bernoulli "
        "sample keeps other rows, so the two answers differ by design.",
        f"DoGets the server keeping answers sent from its stream cache during the warm runs: {cached} "
        f"(of {sum(len(q.kept_ms.values) for q in results)} statements run against it)"
        if any(q.cached_gets is not None for q in results)
        else "The server offered no metrics action (stream cache hits unknown).",
        f"Load average {facts['load_start']} at the start, {h.loadavg()} at the end; busy beside the run: "
        f"{', '.join(facts['busy']) or 'nothing above 5% CPU'}.",
    ]
    if facts.get("server_errors_logged"):
        res.notes.append(
            "The warm server logged: " + " / ".join(f"`{line.strip()[:200]}`" for line in facts["server_errors_logged"])
        )
    res.plot = {
        "bars": [{"label": f"{q.key} Sheaf", **q.sheaf_ms.to_json()} for q in results]
        + [{"label": f"{q.key} DuckDB", **q.duckdb_ms.to_json()} for q in results],
        "unit": "ms",
    }
    return res


def main() -> None:
    ap = h.common_args(__doc__)
    ap.add_argument("--rounds", type=int, help="warm runs per query and engine (default 3 quick, 7 full)")
    ap.add_argument("--only", help="comma-separated query keys (default: all)")
    opts = ap.parse_args()
    h.check_sheaf_binary()
    cfg = dict(SIZES["quick" if opts.quick else "full"])
    if opts.rounds:
        cfg["rounds"] = opts.rounds
    facts = {"load_start": h.loadavg(), "busy": h.busy_processes()}
    data = generate(cfg["rows"], cfg["parts"])
    parts = sorted((data / "b" / "sales").glob("*.parquet"))
    facts["rows"] = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    facts["row_groups"] = sum(pq.ParquetFile(p).metadata.num_row_groups for p in parts)
    facts["parquet_bytes"] = sum(p.stat().st_size for p in parts)
    facts["arrow_bytes"] = sum(pq.read_table(p).nbytes for p in parts)
    want_sample = expected_sample(data)

    scratch = h.scratch_dir("sql")
    logs = scratch / "logs"
    registry = scratch / "registry"
    registry.mkdir(parents=True)
    failed = False
    try:
        hash_a = h.push(registry, PACKAGE, data / "a")
        hash_b = h.push(registry, PACKAGE, data / "b")
        facts.update(revision_a=hash_a, revision_b=hash_b)
        names = sheaf_names(hash_a, hash_b)
        floor = QueryResult("floor", "round-trip floor", "SELECT 1 AS one", "SELECT 1 AS one")
        results = [
            QueryResult(key, name, sql.format(**names), sql.format(**DUCKDB_NAMES))
            for key, name, sql in QUERIES
            if not opts.only or key in opts.only.split(",")
        ]
        for q in results:
            h.progress(f"{q.key}: first runs")
            first_runs(q, registry, logs, data)
        with h.start_sheaf(registry, logs, "--cache-mib", "0") as server, h.start_sheaf(registry, logs) as keeper:
            conn = adbc_connect(server.url)
            kept = (keeper, adbc_connect(keeper.url))
            con = duckdb_connect(data)
            try:
                for q in results:
                    h.progress(f"{q.key}: warm runs")
                    warm_runs(q, server, conn, kept, con, cfg["rounds"], want_sample)
                h.progress("round-trip floor (SELECT 1)")
                warm_runs(floor, server, conn, kept, con, max(cfg["rounds"], 10), want_sample)
            finally:
                conn.close()
                kept[1].close()
                con.close()
            facts["server_peak_rss"] = server.hwm()
            errors_logged = [
                line for line in server.stderr_tail(200_000).splitlines() if " ERROR " in line or "panicked" in line
            ]
        facts["server_errors_logged"] = errors_logged[:20]
        res = report(opts, cfg, results, floor, facts)
        res.write(opts.out)
        failed = any(q.error or q.mismatch for q in [*results, floor])
    finally:
        if opts.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        h.progress("FAILED: Sheaf failed or answered differently (see the notes)")
        sys.exit(1)


if __name__ == "__main__":
    main()
