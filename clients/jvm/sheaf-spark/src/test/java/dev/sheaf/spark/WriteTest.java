package dev.sheaf.spark;

import static dev.sheaf.spark.SparkSupport.checksum;
import static dev.sheaf.spark.SparkSupport.shape;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.DatasetReader;
import dev.sheaf.client.LineageNode;
import dev.sheaf.client.RevisionInfo;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import org.apache.spark.TaskContext;
import org.apache.spark.sql.DataFrameWriter;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.types.DataTypes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * {@code df.write.format("sheaf")} and {@code INSERT INTO} a {@code USING sheaf} table, against the
 * real server: round trips, modes, retried and failed tasks, concurrent jobs, lineage.
 */
@ExtendWith(SheafServerExtension.class)
class WriteTest {
  private static TestServer server;
  private static SparkSession spark;

  @BeforeAll
  static void start(TestServer s) {
    server = s;
    // local[2, 4]: two cores, and a failed task is retried (up to 4 attempts), as on a cluster.
    spark =
        SparkSession.builder()
            .appName("WriteTest")
            .master("local[2,4]")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.adaptive.enabled", "false")
            .getOrCreate();
    // Throws on the first attempt of partition 1, after the task has sent some batches.
    spark
        .udf()
        .register(
            "fail_first_attempt",
            (UDF1<Long, Long>)
                id -> {
                  TaskContext t = TaskContext.get();
                  if (t.partitionId() == 1 && t.attemptNumber() == 0 && id % 10_000 == 7_000) {
                    throw new IllegalStateException("task killed mid-write (test)");
                  }
                  return id;
                },
            DataTypes.LongType);
    spark
        .udf()
        .register(
            "fail_always",
            (UDF1<Long, Long>)
                id -> {
                  if (id == 1234) {
                    throw new IllegalStateException("a job that fails (test)");
                  }
                  return id;
                },
            DataTypes.LongType);
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  private static String fresh() {
    return "sparkw/p" + UUID.randomUUID().toString().replace("-", "").substring(0, 12);
  }

  private static DataFrameWriter<Row> writer(Dataset<Row> df) {
    return df.write().format("sheaf").option("server", server.url());
  }

  private static Dataset<Row> read(String table) {
    return spark.read().format("sheaf").option("server", server.url()).load(table);
  }

  private static List<RevisionInfo> revisions(String pkg) {
    try (SheafClient c = SheafClient.connect(server.url())) {
      return c.listRevisions(pkg);
    } catch (SheafException e) {
      if (e.code() == dev.sheaf.client.ErrorCode.NOT_FOUND) {
        return List.of();
      }
      throw e;
    }
  }

  private static String messages(Throwable t) {
    StringBuilder b = new StringBuilder();
    for (Throwable c = t; c != null; c = c.getCause()) {
      b.append(c.getMessage()).append(" | ");
    }
    return b.toString();
  }

  /** Rows of many types, with nulls, in 3 partitions. */
  private static Dataset<Row> sample(long rows) {
    return spark
        .range(0, rows, 1, 3)
        .selectExpr(
            "id",
            "CASE WHEN id % 7 = 0 THEN NULL ELSE cast(id AS int) END AS i",
            "CASE WHEN id % 5 = 0 THEN NULL ELSE concat('n''', id, ' ✓') END AS s",
            "id * 0.5 AS d",
            "cast(id % 3 AS boolean) AS b",
            "timestamp_seconds(id * 3600) AS ts",
            "cast(timestamp_seconds(id) AS timestamp_ntz) AS ts_local",
            "date_add(DATE'2020-01-01', cast(id % 400 AS int)) AS day",
            "cast(id / 3 AS decimal(18, 3)) AS dec",
            "cast(concat('b', id) AS binary) AS bin",
            "array(id, id + 1) AS arr",
            "named_struct('a', id, 'b', concat('x', id)) AS st",
            "map('k', id) AS m");
  }

  @Test
  void aWrittenDataFrameReadsBackEqual() {
    String pkg = fresh();
    Dataset<Row> df = sample(10_000);
    writer(df).mode("append").save(pkg + "/features");
    Dataset<Row> back = read(pkg + "/features");
    assertEquals(shape(df.schema()), shape(back.schema()));
    assertEquals(checksum(df), checksum(back));
    List<RevisionInfo> revs = revisions(pkg);
    assertEquals(1, revs.size(), "one write, one revision");
    // One part file per task, read by the Java client too.
    try (SheafClient c = SheafClient.connect(server.url())) {
      List<String> keys =
          c.listTables(pkg).stream().map(t -> t.path()).collect(Collectors.toList());
      assertTrue(keys.contains("features"), keys.toString());
      long rows = 0;
      try (DatasetReader r = c.read(c.dataset(pkg + "/features"), 2)) {
        while (r.next()) {
          rows += r.root().getRowCount();
        }
      }
      assertEquals(10_000, rows);
    }
  }

  @Test
  void aTaskKilledMidWriteIsRetriedWithoutDuplicates() {
    String pkg = fresh();
    Dataset<Row> df = spark.range(0, 30_000, 1, 3).selectExpr("fail_first_attempt(id) AS id");
    writer(df).option("batchRows", "1000").mode("append").save(pkg + "/t");
    Dataset<Row> back = read(pkg + "/t");
    assertEquals(30_000, back.count());
    assertEquals(30_000, back.distinct().count());
    assertEquals(1, revisions(pkg).size());
  }

  @Test
  void aFailedJobLeavesNoRevision() {
    String pkg = fresh();
    writer(spark.range(0, 10).toDF()).mode("append").save(pkg + "/t");
    List<RevisionInfo> before = revisions(pkg);
    Dataset<Row> bad = spark.range(0, 5_000, 1, 2).selectExpr("fail_always(id) AS id");
    Exception e = assertThrows(Exception.class, () -> writer(bad).mode("append").save(pkg + "/t"));
    assertTrue(messages(e).contains("a job that fails"), messages(e));
    assertEquals(before, revisions(pkg));
    assertEquals(10, read(pkg + "/t").count());
    // A new package is not even created.
    String other = fresh();
    assertThrows(Exception.class, () -> writer(bad).mode("append").save(other + "/t"));
    assertEquals(List.of(), revisions(other));
  }

  @Test
  void twoConcurrentAppendsBothLand() throws Exception {
    String pkg = fresh();
    writer(spark.range(0, 100).toDF()).mode("append").save(pkg + "/t");
    ExecutorService pool = Executors.newFixedThreadPool(2);
    try {
      Future<?> a =
          pool.submit(
              () -> writer(spark.range(1_000, 6_000, 1, 2).toDF()).mode("append").save(pkg + "/t"));
      Future<?> b =
          pool.submit(
              () ->
                  writer(spark.range(10_000, 13_000, 1, 2).toDF()).mode("append").save(pkg + "/t"));
      a.get();
      b.get();
    } finally {
      pool.shutdown();
    }
    Dataset<Row> back = read(pkg + "/t");
    assertEquals(100 + 5_000 + 3_000, back.count());
    assertEquals(100 + 5_000 + 3_000, back.distinct().count());
    assertEquals(3, revisions(pkg).size());
  }

  @Test
  void overwriteReplacesTheTable() {
    String pkg = fresh();
    writer(spark.range(0, 100).toDF()).mode("append").save(pkg + "/t");
    writer(spark.range(0, 100).toDF()).mode("append").save(pkg + "/t");
    assertEquals(200, read(pkg + "/t").count());
    // Another schema is fine: the table is replaced.
    writer(spark.range(0, 7).selectExpr("concat('x', id) AS name"))
        .mode("overwrite")
        .save(pkg + "/t");
    Dataset<Row> back = read(pkg + "/t");
    assertEquals("name:string", shape(back.schema()));
    assertEquals(7, back.count());
    assertEquals(3, revisions(pkg).size());
  }

  @Test
  void errorIfExistsAndIgnore() {
    String pkg = fresh();
    // The default mode is errorifexists: a new table is written.
    writer(spark.range(0, 10).toDF()).save(pkg + "/t");
    assertEquals(10, read(pkg + "/t").count());
    Exception e =
        assertThrows(
            Exception.class,
            () -> writer(spark.range(0, 5).toDF()).mode("errorifexists").save(pkg + "/t"));
    assertTrue(messages(e).contains("ALREADY_EXISTS"), messages(e));
    assertTrue(messages(e).contains(pkg + "/t"), messages(e));
    assertEquals(1, revisions(pkg).size());
    // ignore: nothing happens when the table exists...
    writer(spark.range(0, 5).toDF()).mode("ignore").save(pkg + "/t");
    assertEquals(1, revisions(pkg).size());
    assertEquals(10, read(pkg + "/t").count());
    // ...and it is written when it does not.
    writer(spark.range(0, 5).toDF()).mode("ignore").save(pkg + "/u");
    assertEquals(2, revisions(pkg).size());
    assertEquals(5, read(pkg + "/u").count());
  }

  @Test
  void anAppendOfAnotherSchemaNamesTheColumn() {
    String pkg = fresh();
    writer(spark.range(0, 10).toDF()).mode("append").save(pkg + "/t");
    Exception e =
        assertThrows(
            Exception.class,
            () ->
                writer(spark.range(0, 10).selectExpr("cast(id AS string) AS id"))
                    .mode("append")
                    .save(pkg + "/t"));
    assertTrue(messages(e).contains("SCHEMA_MISMATCH"), messages(e));
    assertTrue(messages(e).contains("id"), messages(e));
    assertEquals(1, revisions(pkg).size());
  }

  @Test
  void aFileTableIsWrittenByOneTask() {
    String pkg = fresh();
    writer(sample(3_000)).mode("overwrite").save(pkg + "/out.parquet");
    Dataset<Row> back = read(pkg + "/out.parquet");
    assertEquals(checksum(sample(3_000)), checksum(back));
    try (SheafClient c = SheafClient.connect(server.url())) {
      assertTrue(
          c.listTables(pkg).stream().anyMatch(t -> t.path().equals("out.parquet")),
          c.listTables(pkg).toString());
    }
  }

  @Test
  void anEmptyDataFrameMakesAnEmptyTable() {
    String pkg = fresh();
    writer(spark.range(0, 0, 1, 2).selectExpr("id", "cast(id AS string) AS s"))
        .mode("append")
        .save(pkg + "/t");
    Dataset<Row> back = read(pkg + "/t");
    assertEquals("id:bigint, s:string", shape(back.schema()));
    assertEquals(0, back.count());
  }

  @Test
  void insertIntoAUsingSheafTable() {
    String pkg = fresh();
    String url = server.url();
    spark.sql(
        "CREATE TABLE sheaf_insert (id BIGINT, name STRING) USING sheaf OPTIONS (server '"
            + url
            + "', path 'sheaf://"
            + pkg
            + "/people')");
    try {
      spark.sql("INSERT INTO sheaf_insert VALUES (1, 'ada'), (2, 'grace')");
      spark.sql("INSERT INTO sheaf_insert SELECT id + 10, concat('p', id) FROM range(3)");
      assertEquals(
          List.of(1L, 2L, 10L, 11L, 12L),
          spark.sql("SELECT id FROM sheaf_insert ORDER BY id").collectAsList().stream()
              .map(r -> r.getLong(0))
              .collect(Collectors.toList()));
      assertEquals(2, revisions(pkg).size());
      spark.sql("INSERT OVERWRITE sheaf_insert VALUES (42, 'only')");
      assertEquals(
          List.of(42L),
          spark.sql("SELECT id FROM sheaf_insert").collectAsList().stream()
              .map(r -> r.getLong(0))
              .collect(Collectors.toList()));
      assertEquals(1, read(pkg + "/people").count());
    } finally {
      spark.sql("DROP TABLE IF EXISTS sheaf_insert");
    }
    // A table over an existing package table: its schema comes from the server.
    spark.sql(
        "CREATE TABLE sheaf_existing USING sheaf OPTIONS (server '"
            + url
            + "', path 'sheaf://"
            + pkg
            + "/people')");
    try {
      spark.sql("INSERT INTO sheaf_existing SELECT 7, 'seven'");
      assertEquals(2, spark.sql("SELECT * FROM sheaf_existing").count());
    } finally {
      spark.sql("DROP TABLE IF EXISTS sheaf_existing");
    }
  }

  @Test
  void lineageNamesTheInputsTopHash() {
    String pkg = fresh();
    Dataset<Row> in =
        read("test/types/tables/types.parquet").where("id % 2 = 0").select("id", "station");
    writer(in).mode("append").save(pkg + "/evens");
    try (SheafClient c = SheafClient.connect(server.url())) {
      List<LineageNode> nodes = c.lineage(pkg);
      LineageNode self = nodes.get(0);
      assertEquals(1, self.inputs().size(), nodes.toString());
      assertEquals("test/types", self.inputs().get(0).packageName());
      assertEquals(server.latestRevision, self.inputs().get(0).topHash());
      assertTrue(
          self.inputs().get(0).uri().contains(server.latestRevision),
          self.inputs().get(0).toString());
      assertTrue(self.tool().startsWith("spark " + spark.version() + " sheaf-spark "), self.tool());
      String meta = c.userMetadata(pkg);
      assertTrue(meta.contains(server.latestRevision), meta);
    }
    // A write from a DataFrame read from no Sheaf table records no inputs.
    String plain = fresh();
    writer(spark.range(0, 3).toDF()).mode("append").save(plain + "/t");
    try (SheafClient c = SheafClient.connect(server.url())) {
      assertEquals(List.of(), c.lineage(plain).get(0).inputs());
    }
  }

  @Test
  void anIntervalColumnIsRefusedNamingIt() {
    String pkg = fresh();
    spark.sql(
        "CREATE TABLE sheaf_interval (id BIGINT, span INTERVAL DAY TO SECOND) USING sheaf OPTIONS"
            + " (server '"
            + server.url()
            + "', path '"
            + pkg
            + "/t')");
    try {
      Exception e =
          assertThrows(
              Exception.class,
              () ->
                  spark
                      .sql(
                          "INSERT INTO sheaf_interval SELECT 1, INTERVAL '1 02:03:04' DAY TO SECOND")
                      .collect());
      assertTrue(
          messages(e).contains("column \"span\"") && messages(e).contains("interval"), messages(e));
    } finally {
      spark.sql("DROP TABLE IF EXISTS sheaf_interval");
    }
    assertEquals(List.of(), revisions(pkg));
  }

  @Test
  void aWriteTargetMustNameATableAndNoRevision() {
    Exception noPath =
        assertThrows(
            Exception.class, () -> writer(spark.range(0, 3).toDF()).save("sparkw/onlypackage"));
    assertTrue(messages(noPath).contains("OWNER/NAME/PATH"), messages(noPath));
    Exception revision =
        assertThrows(
            Exception.class, () -> writer(spark.range(0, 3).toDF()).save("sparkw/x@abcdef12/t"));
    assertTrue(messages(revision).contains("names no revision"), messages(revision));
    Exception partitioned =
        assertThrows(
            Exception.class,
            () -> writer(spark.range(0, 3).toDF()).partitionBy("id").save("sparkw/x/t"));
    assertTrue(messages(partitioned).contains("partitionBy"), messages(partitioned));
  }
}
