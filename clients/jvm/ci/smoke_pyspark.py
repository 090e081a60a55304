"""Stock-Spark smoke test of the shaded connector jar.

Runs PySpark from PyPI (a stock Spark 4 distribution, not the Maven build's classpath) with
only the connector jar added through `spark.jars`, against the real server:

    SHEAF_BIN=... python smoke_pyspark.py --jar clients/jvm/sheaf-spark/target/sheaf-spark-VERSION.jar

Checks reads, pushdown, SQL, sampling, partitions and errors from Python, a read over TLS
from a server with --auth (API token; user name and password), and writes: a DataFrame
written with `df.write.format("sheaf")` reads back equal (through the connector and through
pyarrow's Flight client), the save modes, a task that fails on its first attempt (retried
without duplicates), a failed job (no revision), `INSERT INTO` a `USING sheaf` table, the
lineage a write records, and a write refused without a write grant. With a binary whose
`serve` takes --peer, a replica failover: three replicas listing each other, one SIGKILLed
while a job reads from it, the job's result exact with no failed task (skipped, and said so,
with an older binary). Prints "N passed, M failed" and exits non-zero on any failure. The certificates come from
testdata/make_certs.py (trustme, in the project venv).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Skipped(Exception):
    """A check that cannot run here (its reason is printed)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    bin_path: str, registry: Path, log: Path, *extra: str, listen: str = "127.0.0.1:0", rust_log: str = "info"
) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, RUST_LOG=rust_log, RUST_BACKTRACE="0")
    proc = subprocess.Popen(
        [bin_path, "--registry", str(registry), "serve", "--listen", listen, *extra],
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


class MotoS3:
    """moto's S3 server on a free loopback port with one bucket, for the replica check: the
    registry the replicas share is on S3, as in a deployment. `env` is what sheaf needs."""

    BUCKET = "sheaf-replicas"

    def __init__(self, work: Path) -> None:
        exe = Path(sys.executable).parent / "moto_server"
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log = work / "moto.log"
        self.proc = subprocess.Popen(
            [str(exe if exe.exists() else "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=self.BUCKET)
                break
            except Exception as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"moto_server did not start:\n{self.log.read_text(errors='replace')}") from e
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


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
    os.environ["PYSPARK_PYTHON"] = sys.executable  # Python UDFs run in this Python (with pyarrow)
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
        # local[2, 4]: two cores, and failed tasks are retried (up to 4 attempts) as on a cluster.
        SparkSession.builder.master("local[2,4]")
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

    import pyarrow.flight as flight

    fclient = flight.FlightClient(url)

    def action(name: str, body: dict):
        """A Sheaf action in its JSON form (the server answers JSON)."""
        results = list(fclient.do_action(flight.Action(name, json.dumps(body).encode())))
        return json.loads(results[0].body.to_pybytes())

    def revisions(pkg: str) -> list:
        try:
            return action("list_revisions", {"package": pkg})
        except flight.FlightError as e:
            if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
                return []
            raise

    def fresh() -> str:
        return "pyw/p" + secrets.token_hex(6)

    def writer(df):
        return df.write.format("sheaf").option("server", url)

    def sample_df(rows: int):
        return spark.range(0, rows, 1, 3).selectExpr(
            "id",
            "CASE WHEN id % 7 = 0 THEN NULL ELSE cast(id AS int) END AS i",
            "concat('n''', id, ' ✓') AS s",
            "id * 0.5 AS d",
            "timestamp_seconds(id * 3600) AS ts",
            "date_add(DATE'2020-01-01', cast(id % 400 AS int)) AS day",
            "cast(id / 3 AS decimal(18, 3)) AS dec",
            "array(id, id + 1) AS arr",
            "named_struct('a', id, 'b', concat('x', id)) AS st",
        )

    def flight_read(info):
        import pyarrow as pa

        return pa.concat_tables([fclient.do_get(ep.ticket).read_all() for ep in info.endpoints])

    def check_write_reads_back_equal():
        pkg = fresh()
        df = sample_df(5_000)
        writer(df).mode("append").save(f"{pkg}/features")
        back = sheaf().load(f"{pkg}/features")
        assert [(f.name, f.dataType.simpleString()) for f in back.schema.fields] == [
            (f.name, f.dataType.simpleString()) for f in df.schema.fields
        ], (back.schema, df.schema)
        assert checksum(back) == checksum(df)
        assert len(revisions(pkg)) == 1
        # The same rows through pyarrow's Flight client (a text URI: the server answers JSON).
        info = fclient.get_flight_info(flight.FlightDescriptor.for_command(f"sheaf://{pkg}/features"))
        t = flight_read(info)
        assert t.num_rows == 5_000
        assert sorted(t.column("id").to_pylist()) == list(range(5_000))

    def check_write_modes():
        pkg = fresh()
        writer(spark.range(0, 10)).save(f"{pkg}/t")  # default mode errorifexists: a new table
        try:
            writer(spark.range(0, 5)).save(f"{pkg}/t")
        except Exception as e:  # noqa: BLE001 - any Spark/Py4J error type
            assert "ALREADY_EXISTS" in str(e) and f"{pkg}/t" in str(e), str(e)[:800]
        else:
            raise AssertionError("errorifexists on an existing table should fail")
        writer(spark.range(0, 5)).mode("ignore").save(f"{pkg}/t")
        assert sheaf().load(f"{pkg}/t").count() == 10 and len(revisions(pkg)) == 1
        writer(spark.range(0, 5)).mode("append").save(f"{pkg}/t")
        assert sheaf().load(f"{pkg}/t").count() == 15
        writer(spark.range(0, 3).selectExpr("concat('x', id) AS name")).mode("overwrite").save(f"{pkg}/t")
        back = sheaf().load(f"{pkg}/t")
        assert back.columns == ["name"] and back.count() == 3
        assert len(revisions(pkg)) == 3

    def check_write_retried_task_and_failed_job():
        from pyspark import TaskContext
        from pyspark.sql.functions import udf

        @udf("bigint")
        def fail_first_attempt(i):
            ctx = TaskContext.get()
            if ctx.partitionId() == 1 and ctx.attemptNumber() == 0 and i % 10_000 == 7_000:
                raise RuntimeError("task killed mid-write (smoke)")
            return i

        pkg = fresh()
        df = spark.range(0, 30_000, 1, 3).select(fail_first_attempt("id").alias("id"))
        writer(df).option("batchRows", 1000).mode("append").save(f"{pkg}/t")
        back = sheaf().load(f"{pkg}/t")
        assert back.count() == 30_000 and back.distinct().count() == 30_000

        @udf("bigint")
        def fail_always(i):
            if i == 1234:
                raise RuntimeError("a job that fails (smoke)")
            return i

        before = revisions(pkg)
        bad = spark.range(0, 5_000, 1, 2).select(fail_always("id").alias("id"))
        try:
            writer(bad).mode("append").save(f"{pkg}/t")
        except Exception as e:  # noqa: BLE001 - any Spark/Py4J error type
            assert "a job that fails" in str(e), str(e)[:800]
        else:
            raise AssertionError("the failing job should fail")
        assert revisions(pkg) == before
        assert sheaf().load(f"{pkg}/t").count() == 30_000

    def check_insert_into_table():
        pkg = fresh()
        spark.sql(
            f"CREATE TABLE smoke_people (id BIGINT, name STRING) USING sheaf "
            f"OPTIONS (server '{url}', path '{pkg}/people')"
        )
        try:
            spark.sql("INSERT INTO smoke_people VALUES (1, 'ada'), (2, 'grace')")
            spark.sql("INSERT INTO smoke_people SELECT id + 10, concat('p', id) FROM range(2)")
            assert [r.id for r in spark.sql("SELECT id FROM smoke_people ORDER BY id").collect()] == [1, 2, 10, 11]
            spark.sql("INSERT OVERWRITE smoke_people VALUES (42, 'only')")
            assert [r.id for r in spark.sql("SELECT id FROM smoke_people").collect()] == [42]
        finally:
            spark.sql("DROP TABLE IF EXISTS smoke_people")

    def check_write_lineage():
        types_hash = action("resolve", {"ref": "test/types"})["top_hash"]
        pkg = fresh()
        src = sheaf().load(table).where("id % 2 = 0").select("id", "station")
        writer(src).mode("append").save(f"{pkg}/evens")
        answer = action("lineage", {"ref": pkg})
        nodes = answer["nodes"] if isinstance(answer, dict) else answer
        first = nodes[0]
        inputs = first.get("inputs", [])
        assert [i["package"] for i in inputs] == ["test/types"], nodes
        assert inputs[0]["top_hash"] == types_hash, (inputs, types_hash)
        assert first["tool"].startswith(f"spark {spark.version} sheaf-spark "), first

    def check_write_refused_without_grant():
        # The TLS server grants group ml read access only: a write is refused, naming no secret.
        try:
            (
                spark.range(0, 3)
                .write.format("sheaf")
                .option("server", tls_url)
                .option("tlsRootCerts", creds["ca"])
                .option("token", creds["token"])
                .mode("append")
                .save("test/types/refused")
            )
        except Exception as e:  # noqa: BLE001 - any Spark/Py4J error type
            assert "PERMISSION_DENIED" in str(e), str(e)[:800]
            assert creds["token"] not in str(e)
        else:
            raise AssertionError("a write without a write grant should fail")

    def check_replica_failover():
        """Three replicas (each --advertise itself, --peer the others) over one registry on S3
        (moto on loopback); a job
        reading a 3,000,000-row table in two partitions, slowed down by its Python consumer, while
        the first replica to start serving it is SIGKILLed: the job's result is exact (every row
        once, in order within each partition) with no failed task, so the failover happened inside
        the task (the connector's EndpointStream), not through Spark's task retries."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        help_text = subprocess.run([sheaf_bin, "serve", "--help"], capture_output=True, text=True).stdout
        if "--peer" not in help_text:
            raise Skipped(f"{sheaf_bin} serve has no --peer: its endpoints list no replicas to fail over to")
        rows = 3_000_000
        subprocess.run(
            [sys.executable, str(HERE.parent / "testdata" / "make_tables.py"), "--big", str(work / "gen-big")],
            check=True,
        )
        big = work / "gen-big" / "big" / "big.parquet"
        # The replicas share a registry on S3 (moto on loopback), as deployed replicas do.
        s3 = MotoS3(work)
        saved_env = {k: os.environ.get(k) for k in s3.env}
        os.environ.update(s3.env)
        s3_registry = f"s3://{MotoS3.BUCKET}/registry"
        procs: list[subprocess.Popen] = []
        try:
            subprocess.run(
                [sheaf_bin, "--registry", s3_registry, "push", "replica/big", str(big.parent)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        except BaseException:
            s3.stop()
            raise
        ports: list[int] = []
        while len(ports) < 3:
            p = free_port()
            if p not in ports:
                ports.append(p)
        urls = [f"grpc://127.0.0.1:{p}" for p in ports]
        logs = [work / f"replica-{i}.log" for i in range(3)]
        try:
            for i, port in enumerate(ports):
                peers = [a for u in urls if u != urls[i] for a in ("--peer", u)]
                proc_i, _ = start_server(
                    sheaf_bin,
                    s3_registry,
                    logs[i],
                    "--advertise",
                    urls[i],
                    *peers,
                    listen=f"127.0.0.1:{port}",
                    rust_log="info,sheaf::flight::doget=debug",  # logs "DoGet ticket=..." as a read starts
                )
                procs.append(proc_i)
            # Peers join once they answer the health check: wait until an endpoint lists all three.
            planner = flight.FlightClient(urls[0])
            deadline = time.monotonic() + 30
            while True:
                info = planner.get_flight_info(flight.FlightDescriptor.for_command("sheaf://replica/big/big.parquet"))
                listed = {loc.uri.decode().rstrip("/") for loc in info.endpoints[0].locations}
                if listed == set(urls):
                    break
                assert time.monotonic() < deadline, f"after 30 s the endpoints list {listed}, not {urls}"
                time.sleep(0.2)
            planner.close()

            table = pq.read_table(big)
            expected_x = int(pc.sum(pc.cast(pc.multiply(table.column("x"), 1e6), pa.int64(), safe=False)).as_py())

            def consume(batches):
                # One endpoint per partition: its ids must be consecutive, each once.
                first = last = None
                n = xsum = 0
                ok = True
                for b in batches:
                    if b.num_rows == 0:
                        continue
                    ids = b.column("id").to_numpy()
                    ok = ok and bool(np.all(np.diff(ids) == 1)) and (last is None or ids[0] == last + 1)
                    first = int(ids[0]) if first is None else first
                    last = int(ids[-1])
                    n += b.num_rows
                    xsum += int(pc.sum(pc.cast(pc.multiply(b.column("x"), 1e6), pa.int64(), safe=False)).as_py())
                    time.sleep(0.04)  # a slow consumer: the read is still running when a replica dies
                yield pa.RecordBatch.from_pydict(
                    {"first": [first], "last": [last], "n": [n], "ok": [ok], "xsum": [xsum]},
                    schema=pa.schema(
                        [
                            ("first", pa.int64()),
                            ("last", pa.int64()),
                            ("n", pa.int64()),
                            ("ok", pa.bool_()),
                            ("xsum", pa.int64()),
                        ]
                    ),
                )

            killed: list[int] = []

            def read_log(log: Path) -> str:
                return re.sub(r"\x1b\[[;\d]*m", "", log.read_text(errors="replace"))  # without colours

            # A replica starting to serve the table (RUST_LOG has sheaf::flight::doget=debug).
            started = re.compile(r"DEBUG .*DoGet (?:from the cache )?ticket=replica/big")

            def killer():
                stop = time.monotonic() + 120
                while time.monotonic() < stop:
                    for i, log in enumerate(logs):
                        if log.exists() and started.search(read_log(log)):
                            time.sleep(1.0)  # its stream is running: a few batches out
                            procs[i].kill()  # SIGKILL
                            procs[i].wait()
                            killed.append(i)
                            return
                    time.sleep(0.05)

            k = threading.Thread(target=killer, daemon=True)
            k.start()
            spark.sparkContext.setJobGroup("sheaf-failover", "replica failover smoke")
            try:
                df = (
                    spark.read.format("sheaf")
                    .option("server", urls[0])
                    .option("partitions", 2)
                    .load("replica/big/big.parquet")
                    .select("id", "x")
                )
                parts = df.mapInArrow(consume, "first long, last long, n long, ok boolean, xsum long").collect()
            finally:
                spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
            k.join(timeout=5)
            assert killed, "no replica started serving replica/big (no DoGet in the replicas' logs)"
            victim = killed[0]
            parts = sorted(parts, key=lambda r: r.first)
            assert all(r.ok for r in parts), parts
            assert parts[0].first == 0 and parts[-1].last == rows - 1, parts
            assert all(a.last + 1 == b.first for a, b in zip(parts, parts[1:], strict=False)), parts
            assert sum(r.n for r in parts) == rows, parts
            assert sum(r.xsum for r in parts) == expected_x, (sum(r.xsum for r in parts), expected_x)
            tracker = spark.sparkContext.statusTracker()
            for job in tracker.getJobIdsForGroup("sheaf-failover"):
                for stage in tracker.getJobInfo(job).stageIds:
                    info = tracker.getStageInfo(stage)
                    assert info.numFailedTasks == 0 and info.currentAttemptId == 0, info
            # The killed replica was serving: some ticket was read again elsewhere, in the same task.
            starts = [len(started.findall(read_log(log))) for log in logs]
            assert starts[victim] >= 1 and sum(starts) > 2, (victim, starts)
            print(f"     replica {urls[victim]} killed mid-read; DoGet starts per replica: {starts}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=30)
            s3.stop()
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    checks = [
        check_equal_to_parquet,
        check_pushdown_and_top_hash,
        check_sql_view,
        check_tablesample,
        check_demo_and_limit,
        check_error_names_path,
        check_tls_token_and_login,
        check_write_reads_back_equal,
        check_write_modes,
        check_write_retried_task_and_failed_job,
        check_insert_into_table,
        check_write_lineage,
        check_write_refused_without_grant,
        check_replica_failover,
    ]
    try:
        for check in checks:
            try:
                check()
                passed += 1
                print(f"ok   {check.__name__}")
            except Skipped as why:
                print(f"skip {check.__name__}: {why}")
            except Exception:  # noqa: BLE001 - report every failure
                failed += 1
                print(f"FAIL {check.__name__}")
                traceback.print_exc()
    finally:
        spark.stop()
        fclient.close()
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
