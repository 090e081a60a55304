#!/usr/bin/env python3
"""Spark read through the Sheaf connector against `spark.read.parquet` of the same file, one run.

    SHEAF_BIN=... python benches/spark_read.py [--quick] --out PATH.md [--jar CONNECTOR.jar]

Writes a deterministic table (id int64, f64 float64, f32 float32, i32 int32, station string)
as one Parquet file, pushes its folder as `bench/spark`, starts `sheaf serve` on loopback, and
runs the same aggregation over every column with a local Spark (local[2], PySpark with the
shaded connector jar) in alternating rounds: once with `spark.read.format("sheaf")` (the
server scans Parquet and streams Arrow over Flight; Spark wraps the batches), once with
`spark.read.parquet` of the local file (Spark's vectorized Parquet reader). Reports medians,
rows/s, and the ratio parquet time / sheaf time (>1 means the connector is faster). Both
reads must give the same result; no timing is asserted.

Needs pyarrow and pyspark in this Python (clients/jvm/ci/test.sh installs PySpark and builds
the jar; --jar defaults to clients/jvm/sheaf-spark/target/sheaf-spark-*.jar).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIONS = ["oslo", "lisbon", "nairobi", "lima", "osaka", "quito", "perth", "reykjavik"]
QUERY = ["count(*)", "sum(id)", "sum(f64)", "sum(f32)", "sum(i32)", "sum(length(station))"]


def make_table(path: Path, rows: int, row_group: int) -> int:
    """Writes the table (deterministic: fixed seeds) and returns its size in memory (bytes)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    stations = pa.array(STATIONS)
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("f64", pa.float64()),
            ("f32", pa.float32()),
            ("i32", pa.int32()),
            ("station", pa.string()),
        ]
    )
    chunk = 1_000_000
    size = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = pa.array(range(start, start + n), pa.int64())
            u = pc.random(n, initializer=start + 1)
            table = pa.Table.from_arrays(
                [
                    ids,
                    pc.subtract(pc.multiply(u, 200.0), 100.0),
                    pc.cast(pc.multiply(u, 50.0), pa.float32()),
                    pc.cast(pc.modulo(pc.multiply(ids, 7919), 100_000), pa.int32()),
                    stations.take(pc.modulo(ids, len(STATIONS))),
                ],
                schema=schema,
            )
            size += table.nbytes
            w.write_table(table, row_group_size=row_group)
    return size


def start_server(sheaf_bin: str, registry: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, RUST_LOG="warn", RUST_BACKTRACE="0")
    proc = subprocess.Popen(
        [sheaf_bin, "--registry", str(registry), "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        env=env,
        text=True,
    )
    for line in proc.stdout:
        m = re.search(r"on (grpc://\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit(f"sheaf serve did not start:\n{log.read_text()}")


def find_jar(given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    target = ROOT / "clients" / "jvm" / "sheaf-spark" / "target"
    jars = sorted(
        p
        for p in target.glob("sheaf-spark-*.jar")
        if not p.name.startswith("original-") and not re.search(r"-(sources|javadoc|tests)\.jar$", p.name)
    )
    if not jars:
        raise SystemExit(f"no connector jar in {target}: run clients/jvm/ci/test.sh (or mvn package) first")
    return jars[-1]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small data, for CI (no timing asserted)")
    ap.add_argument("--out", required=True, help="markdown file to write")
    ap.add_argument("--jar", help="the shaded connector jar")
    args = ap.parse_args()
    sheaf_bin = os.environ.get("SHEAF_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "sheaf"
    )
    if not os.access(sheaf_bin, os.X_OK):
        raise SystemExit(f"no sheaf binary at {sheaf_bin}: set SHEAF_BIN")
    jar = find_jar(args.jar)
    rows, row_group, rounds = (500_000, 100_000, 2) if args.quick else (10_000_000, 1_000_000, 5)

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # Spark binds and advertises loopback only
    from pyspark.sql import SparkSession  # late: argument errors first

    work = Path(tempfile.mkdtemp(prefix="sheaf-bench-spark-"))
    proc = None
    spark = None
    try:
        data = work / "data"
        data.mkdir()
        parquet_file = data / "table.parquet"
        memory = make_table(parquet_file, rows, row_group)
        registry = work / "registry"
        subprocess.run(
            [sheaf_bin, "--registry", str(registry), "push", "bench/spark", str(data)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        proc, url = start_server(sheaf_bin, registry, work / "server.log")
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("sheaf-bench")
            .config("spark.jars", str(jar))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "2g")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("WARN")

        def via_sheaf():
            return spark.read.format("sheaf").option("server", url).load("bench/spark/table.parquet")

        def via_parquet():
            return spark.read.parquet(str(parquet_file))

        endpoints = via_sheaf().rdd.getNumPartitions()
        results: dict[str, list[float]] = {"sheaf": [], "parquet": []}
        answers = {}
        for r in range(rounds + 1):  # round 0 warms both up (JIT, page cache, footers)
            for name, make in (
                (("sheaf", via_sheaf), ("parquet", via_parquet))
                if r % 2 == 0
                else (("parquet", via_parquet), ("sheaf", via_sheaf))
            ):
                t = time.perf_counter()
                answer = make().selectExpr(*QUERY).collect()[0]
                elapsed = time.perf_counter() - t
                answers[name] = tuple(round(x, 3) if isinstance(x, float) else x for x in answer)
                if r > 0:
                    results[name].append(elapsed)
        if (
            answers["sheaf"][0] != rows
            or answers["sheaf"][0:2] != answers["parquet"][0:2]
            or answers["sheaf"][4:] != answers["parquet"][4:]
        ):
            raise SystemExit(f"the two reads disagree: sheaf {answers['sheaf']} vs parquet {answers['parquet']}")
    finally:
        if spark is not None:
            spark.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["parquet"] / med["sheaf"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    file_mb = memory / 2**20
    title = "Spark read: Sheaf connector vs spark.read.parquet" + (" (quick)" if args.quick else " (full)")
    lines = [
        f"# {title}",
        "",
        f"{dt.datetime.now():%Y-%m-%d %H:%M}, {machine()}, load average {load} at the end; "
        f"Spark {spark_version()} local[2]; connector {jar.name}; sheaf {sheaf_bin}.",
        "",
        f"{rows:,} rows (id int64, f64 float64, f32 float32, i32 int32, station string), {file_mb:.0f} MiB in Arrow, "
        f"row groups of {row_group:,}; the server planned {endpoints} endpoint(s) = Spark partitions. "
        f"Query: `SELECT {', '.join(QUERY)}`; median of {rounds} round(s) after one warm-up, alternating.",
        "",
        "| read | seconds (median) | min-max | M rows/s | MiB/s (Arrow) | speed vs parquet |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("sheaf", '`spark.read.format("sheaf")` (Flight, server scans Parquet)'),
        ("parquet", "`spark.read.parquet` (local file)"),
    ):
        m = med[name]
        lines.append(
            f"| {label} | {m:.3f} | {min(results[name]):.3f}-{max(results[name]):.3f} | "
            f"{rows / m / 1e6:.2f} | {file_mb / m:.0f} | {med['parquet'] / m:.2f}x |"
        )
    lines += [
        "",
        f"Ratio parquet / sheaf time: **{ratio:.2f}** (above 1: the connector is faster). "
        "Server and Spark share the machine's cores.",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def spark_version() -> str:
    import pyspark

    return pyspark.__version__


if __name__ == "__main__":
    sys.exit(main())
