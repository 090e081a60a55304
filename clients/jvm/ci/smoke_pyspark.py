"""Stock-Spark smoke test of the shaded connector jar.

Runs PySpark from PyPI (a stock Spark 4 distribution, not the Maven build's classpath) with
only the connector jar added through `spark.jars`, against the real server:

    SHEAF_BIN=... python smoke_pyspark.py --jar clients/jvm/sheaf-spark/target/sheaf-spark-VERSION.jar

Checks reads, pushdown, SQL, sampling, partitions and errors from Python, and a read over
TLS from a server with --auth (API token; user name and password); prints "N passed,
M failed" and exits non-zero on any failure. The certificates come from
testdata/make_certs.py (trustme, in the project venv).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def start_server(bin_path: str, registry: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, RUST_LOG="info", RUST_BACKTRACE="0")
    proc = subprocess.Popen(
        [bin_path, "--registry", str(registry), "serve", "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        env=env,
        text=True,
    )
    for line in proc.stdout:
        m = re.search(r"on (grpc(?:\+tls)?://\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit(f"sheaf serve did not start:\n{log.read_text()}")


def sheaf_auth(bin_path: str, *args: str, input: str | None = None) -> dict:
    """`sheaf --json auth ARGS`."""
    r = subprocess.run([bin_path, "--json", "auth", *args], capture_output=True, text=True, input=input, check=True)
    return json.loads(r.stdout)


def start_tls_server(bin_path: str, registry: Path, work: Path) -> tuple[subprocess.Popen, str, dict]:
    """`sheaf serve --auth --tls-cert --tls-key` with a user (alice, group ml), an API token
    (job, group ml) and a read grant of test/* to ml; returns the process, its URL and the
    credentials and CA file."""
    pki = work / "pki"
    subprocess.run([sys.executable, str(HERE.parent / "testdata" / "make_certs.py"), str(pki)], check=True)
    password = "pw-" + secrets.token_hex(8)
    phc = sheaf_auth(bin_path, "hash-password", input=password + "\n")["password"]
    job = sheaf_auth(bin_path, "new-token", "job")
    auth = work / "auth.toml"
    auth.write_text(f"""[server]
key = {json.dumps(secrets.token_hex(24))}

[[user]]
name = "alice"
password = {json.dumps(phc)}
groups = ["ml"]

[[token]]
name = "job"
sha256 = {json.dumps(job["sha256"])}
groups = ["ml"]

[[grant]]
to = "group:ml"
packages = "test/*"
access = "read"
""")
    proc, url = start_server(
        bin_path,
        registry,
        work / "server-tls.log",
        "--auth",
        str(auth),
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
    )
    return proc, url, {"password": password, "token": job["token"], "ca": str(pki / "ca.pem")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jar", required=True, help="the shaded connector jar")
    args = ap.parse_args()
    sheaf_bin = os.environ.get("SHEAF_BIN")
    if not sheaf_bin or not os.access(sheaf_bin, os.X_OK):
        raise SystemExit("SHEAF_BIN must name the sheaf binary")
    jar = Path(args.jar).resolve()
    if not jar.is_file():
        raise SystemExit(f"no connector jar at {jar}: build it with mvn package")

    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"  # Spark binds and advertises loopback only
    from pyspark.sql import SparkSession  # imported late: fail on arguments first

    work = Path(tempfile.mkdtemp(prefix="sheaf-pyspark-"))
    registry = work / "registry"
    subprocess.run([sys.executable, str(HERE.parent / "testdata" / "make_tables.py"), str(work / "gen")], check=True)
    subprocess.run(
        [sheaf_bin, "--registry", str(registry), "push", "test/types", str(work / "gen" / "types")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    proc, url = start_server(sheaf_bin, registry, work / "server.log", "--demo")
    try:
        tls_proc, tls_url, creds = start_tls_server(sheaf_bin, registry, work)
    except BaseException:
        proc.terminate()
        raise
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("sheaf-smoke")
        .config("spark.jars", str(jar))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    parquet_file = str(work / "gen" / "types" / "tables" / "types.parquet")
    table = "test/types/tables/types.parquet"
    passed, failed = 0, 0

    def sheaf(**options):
        r = spark.read.format("sheaf").option("server", url)
        for k, v in options.items():
            r = r.option(k, str(v))
        return r

    def checksum(df):
        exprs = ["count(*)"]
        for f in df.schema.fields:
            q = "`" + f.name.replace("`", "``") + "`"
            value = f"array_sort(map_entries({q}))" if f.dataType.typeName() == "map" else q
            exprs += [f"count({q})", f"sum(cast(hash({value}) as bigint))"]
        return list(df.selectExpr(*exprs).collect()[0])

    def check_equal_to_parquet():
        a = sheaf(partitions=4).load(table)
        b = spark.read.parquet(parquet_file)
        assert [(f.name, f.dataType.simpleString()) for f in a.schema.fields] == [
            (f.name, f.dataType.simpleString()) for f in b.schema.fields
        ], (a.schema, b.schema)
        assert checksum(a) == checksum(b)
        assert a.rdd.getNumPartitions() == 4

    def check_pushdown_and_top_hash():
        df = sheaf().load(table).where("station = 'o''hare' AND i32 > 0").select("id", "station")
        b = spark.read.parquet(parquet_file).where("station = 'o''hare' AND i32 > 0").select("id", "station")
        assert sorted(df.collect()) == sorted(b.collect())
        plan = df._jdf.queryExecution().executedPlan().toString()
        assert "top_hash=" in plan and "filter=" in plan and "columns=" in plan, plan

    def check_sql_view():
        spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW t USING sheaf OPTIONS (server '{url}', path '{table}')")
        spark.read.parquet(parquet_file).createOrReplaceTempView("p")
        q = "SELECT station, count(*), sum(i16), min(day) FROM {} WHERE flag GROUP BY station ORDER BY station"
        assert spark.sql(q.format("t")).collect() == spark.sql(q.format("p")).collect()

    def check_tablesample():
        q = "SELECT id FROM t TABLESAMPLE (10 PERCENT) REPEATABLE (42)"
        a = sorted(r.id for r in spark.sql(q).collect())
        b = sorted(r.id for r in spark.sql(q).collect())
        assert a == b and 1000 < len(a) < 3000, len(a)
        c = sorted(r.id for r in sheaf(sample=0.1, seed=42).load(table).select("id").collect())
        assert a == c

    def check_demo_and_limit():
        df = sheaf().load("demo/weather/tables/readings.parquet")
        assert df.count() == 100_000
        assert len(df.limit(7).collect()) == 7

    def check_error_names_path():
        try:
            sheaf().load("test/types/tables/missing.parquet").count()
        except Exception as e:  # noqa: BLE001 - any Spark/Py4J error type
            assert "NOT_FOUND" in str(e) and "tables/missing.parquet" in str(e), str(e)[:500]
        else:
            raise AssertionError("reading a missing table should fail")

    def check_tls_token_and_login():
        def tls(**options):
            r = spark.read.format("sheaf").option("server", tls_url).option("tlsRootCerts", creds["ca"])
            for k, v in options.items():
                r = r.option(k, str(v))
            return r

        b = spark.read.parquet(parquet_file)
        assert checksum(tls(token=creds["token"], partitions=3).load(table)) == checksum(b)
        df = tls(username="alice", password=creds["password"], partitions=2).load(table)
        assert df.where("flag").count() == b.where("flag").count()
        try:
            tls().load(table)
        except Exception as e:  # noqa: BLE001 - any Spark/Py4J error type
            assert "UNAUTHENTICATED" in str(e), str(e)[:500]
        else:
            raise AssertionError("reading without credentials should fail")

    checks = [
        check_equal_to_parquet,
        check_pushdown_and_top_hash,
        check_sql_view,
        check_tablesample,
        check_demo_and_limit,
        check_error_names_path,
        check_tls_token_and_login,
    ]
    try:
        for check in checks:
            try:
                check()
                passed += 1
                print(f"ok   {check.__name__}")
            except Exception:  # noqa: BLE001 - report every failure
                failed += 1
                print(f"FAIL {check.__name__}")
                traceback.print_exc()
    finally:
        spark.stop()
        for p in (proc, tls_proc):
            p.terminate()
            p.wait(timeout=30)
        if failed:
            print(f"server logs: {work / 'server.log'}, {work / 'server-tls.log'}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
