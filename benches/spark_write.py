#!/usr/bin/env python3
"""Spark write through the Sheaf connector against `df.write.parquet` of the same DataFrame, one run.

    SHEAF_BIN=... python benches/spark_write.py [--quick] [--out PATH.md] [--jar CONNECTOR.jar]

Builds a deterministic DataFrame (id int64, f64 float64, f32 float32, i32 int32, station
string) in a local Spark (local[2], PySpark with the shaded connector jar), caches it in
memory, then writes it in alternating rounds: once with `df.write.format("sheaf")` (each task
streams its rows as Arrow batches over Flight as one part of a write session; the server writes
Parquet into the registry; one commit makes the revision), once with `df.write.parquet` to a
local folder (Spark's own Parquet writer). Both write every round in mode overwrite, from the
same cached DataFrame and the same partitions. Reports medians, rows/s, bytes written, and the
ratio parquet time / sheaf time (above 1 means the connector is faster). Each write is read
back and counted; no timing is asserted.

Results: benches/results/spark_write[.quick].md and .json (harness conventions; scenario 7,
the clients). Needs pyarrow and pyspark in this Python (clients/jvm/ci/test.sh installs PySpark
and builds the jar; --jar defaults to clients/jvm/sheaf-spark/target/sheaf-spark-*.jar).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import harness as h  # noqa: E402  (sets the client environment before pyarrow loads)
import pyarrow.flight as flight  # noqa: E402

STATIONS = ["oslo", "lisbon", "nairobi", "lima", "osaka", "quito", "perth", "reykjavik"]
SIZES = {
    "quick": {"rows": 500_000, "partitions": 2, "rounds": 2},
    "full": {"rows": 5_000_000, "partitions": 4, "rounds": 4},
}


def find_jar(given: str | None) -> Path:
    if given:
        return Path(given).resolve()
    target = h.ROOT / "clients" / "jvm" / "sheaf-spark" / "target"
    jars = sorted(
        p
        for p in target.glob("sheaf-spark-*.jar")
        if not p.name.startswith("original-") and not re.search(r"-(sources|javadoc|tests)\.jar$", p.name)
    )
    if not jars:
        raise SystemExit(f"no connector jar in {target}: run clients/jvm/ci/test.sh (or mvn package) first")
    return jars[-1]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def main() -> int:
    ap = h.common_args(__doc__.split("\n")[0])
    ap.add_argument("--jar", help="the shaded connector jar")
    opts = ap.parse_args()
    h.check_sheaf_binary()
    size = SIZES["quick" if opts.quick else "full"]
    rows, partitions, rounds = size["rows"], size["partitions"], size["rounds"]
    jar = find_jar(opts.jar)

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # Spark binds and advertises loopback only
    from pyspark.sql import SparkSession  # late: argument errors first

    work = h.scratch_dir("spark-write")
    server = None
    spark = None
    try:
        registry = work / "registry"
        registry.mkdir()
        server = h.start_sheaf(registry, work / "logs")
        url = server.url
        h.progress(f"sheaf serve at {url}; Spark local[2] with {jar.name}")
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("sheaf-bench-write")
            .config("spark.jars", str(jar))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "2g")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("WARN")
        stations = "array(" + ", ".join(f"'{s}'" for s in STATIONS) + ")"
        df = (
            spark.range(0, rows, 1, partitions)
            .selectExpr(
                "id",
                "rand(1) * 200 - 100 AS f64",
                "cast(rand(2) * 50 AS float) AS f32",
                "cast((id * 7919) % 100000 AS int) AS i32",
                f"element_at({stations}, cast(id % {len(STATIONS)} AS int) + 1) AS station",
            )
            .cache()
        )
        assert df.count() == rows
        sample = df.limit(100_000).toArrow()
        arrow_bytes = sample.nbytes / sample.num_rows * rows
        out_dir = work / "parquet-out"

        def via_sheaf():
            df.write.format("sheaf").option("server", url).mode("overwrite").save("bench/write/t")

        def via_parquet():
            df.write.mode("overwrite").parquet(str(out_dir))

        results = {"sheaf": h.Samples(), "parquet": h.Samples()}
        server_cpu = h.Samples()  # CPU seconds of `sheaf serve` per Sheaf write
        for r in range(rounds + 1):  # round 0 warms both up (JIT, page cache, connections)
            order = (("sheaf", via_sheaf), ("parquet", via_parquet))
            for name, run in order if r % 2 == 0 else order[::-1]:
                cpu = server.cpu()
                t = time.perf_counter()
                run()
                elapsed = time.perf_counter() - t
                if r > 0:
                    results[name].add(elapsed)
                    if name == "sheaf":
                        server_cpu.add(server.cpu() - cpu)
                h.progress(f"round {r} {name}: {elapsed:.2f} s")

        back_sheaf = spark.read.format("sheaf").option("server", url).load("bench/write/t")
        back_parquet = spark.read.parquet(str(out_dir))
        if back_sheaf.count() != rows or back_parquet.count() != rows:
            raise SystemExit(f"a write lost rows: sheaf {back_sheaf.count()}, parquet {back_parquet.count()} of {rows}")
        agg = ["sum(id)", "sum(i32)", "sum(length(station))"]
        a, b = back_sheaf.selectExpr(*agg).first(), back_parquet.selectExpr(*agg).first()
        if tuple(a) != tuple(b):
            raise SystemExit(f"the two writes disagree: sheaf {a} vs parquet {b}")
        client = flight.FlightClient(url)
        body = json.dumps({"ref": "bench/write", "prefix": "t/"}).encode()
        browse = json.loads(next(iter(client.do_action(flight.Action("browse", body)))).body.to_pybytes())
        client.close()
        sheaf_bytes = sum(int(e.get("size", 0)) for e in browse.get("entries", []))
        sheaf_files = len(browse.get("entries", []))
        parquet_bytes = folder_bytes(out_dir)
        parquet_files = len(list(out_dir.glob("*.parquet")))
    finally:
        if spark is not None:
            spark.stop()
        if server is not None:
            server.stop()
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)

    import pyspark

    med = {k: v.median for k, v in results.items()}
    ratio = med["parquet"] / med["sheaf"]
    mib = arrow_bytes / h.MIB
    res = h.Result(
        scenario="7",
        name="spark_write",
        title="Spark write: Sheaf connector vs df.write.parquet",
        quick=opts.quick,
        params={
            "rows": rows,
            "partitions": partitions,
            "rounds": rounds,
            "spark": pyspark.__version__,
            "jar": jar.name,
            "arrow_mib": round(mib, 1),
            "server_cpu_s": server_cpu.to_json(),
        },
    )
    res.rows.append(
        h.Row(
            what=f"Spark write of {rows:,} rows, {partitions} tasks (median s)",
            sheaf=f"{med['sheaf']:.2f} s ({rows / med['sheaf'] / 1e6:.2f} M rows/s)",
            baseline=f"{med['parquet']:.2f} s ({rows / med['parquet'] / 1e6:.2f} M rows/s)",
            ratio=f"{ratio:.2f}x",
            goal="parquet time / sheaf time; above 1: the connector is faster",
        )
    )
    s, p = results["sheaf"], results["parquet"]
    res.detail += [
        "| write | seconds (median) | min-max | M rows/s | MiB/s (Arrow) | bytes written | files |",
        "|---|---|---|---|---|---|---|",
        f'| `df.write.format("sheaf")` (Flight DoPut parts, one commit) | {s.median:.3f} | '
        f"{s.min:.3f}-{s.max:.3f} | {rows / s.median / 1e6:.2f} | {mib / s.median:.0f} | "
        f"{h.fmt_bytes(sheaf_bytes)} | {sheaf_files} |",
        f"| `df.write.parquet` (local folder) | {p.median:.3f} | {p.min:.3f}-{p.max:.3f} | "
        f"{rows / p.median / 1e6:.2f} | {mib / p.median:.0f} | {h.fmt_bytes(parquet_bytes)} | "
        f"{parquet_files} |",
        "",
        f"{rows:,} rows (id int64, f64 float64, f32 float32, i32 int32, station string), {mib:.0f} MiB in Arrow, "
        f"cached in Spark's memory and written by {partitions} tasks in mode overwrite; Spark {pyspark.__version__} "
        f"local[2]; median of {rounds} round(s) after one warm-up, alternating. Both writes are read back and "
        "checked (count and sums).",
        "",
        f"Ratio parquet / sheaf time: **{ratio:.2f}** (above 1: the connector is faster). "
        "Server and Spark share the machine's cores: `sheaf serve` used "
        f"{server_cpu.median:.2f} CPU seconds per Sheaf write (median; receiving Arrow, writing Parquet, "
        "hashing, profiling each table, committing the revision), on top of Spark's own work.",
    ]
    res.write(opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
