package dev.sheaf.spark;

import static dev.sheaf.spark.SparkSupport.checksum;
import static dev.sheaf.spark.SparkSupport.sheaf;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** SQL views, the pinned revision in plans, tokens, and errors that name what is wrong. */
@ExtendWith(SheafServerExtension.class)
class SqlPinningAndErrorsTest {
  private static final String TABLE = "test/types/tables/types.parquet";
  private static TestServer server;
  private static SparkSession spark;

  @BeforeAll
  static void start(TestServer s) {
    server = s;
    spark = SparkSupport.session("SqlPinningAndErrorsTest");
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  /** The message of an exception and of its causes. */
  private static String messages(Throwable t) {
    StringBuilder b = new StringBuilder();
    for (Throwable c = t; c != null; c = c.getCause()) {
      b.append(c.getMessage()).append(" | ");
    }
    return b.toString();
  }

  @Test
  void aTemporaryViewInSql() {
    spark.sql(
        "CREATE OR REPLACE TEMPORARY VIEW readings USING sheaf OPTIONS (server '"
            + server.url()
            + "', path '"
            + TABLE
            + "', partitions '2')");
    spark
        .read()
        .parquet(server.file("tables/types.parquet").toString())
        .createOrReplaceTempView("readings_parquet");
    String q =
        "SELECT station, count(*) AS n, sum(i32) AS s, max(ts) AS latest FROM %s WHERE id >= 100 AND flag "
            + "GROUP BY station ORDER BY station";
    assertEquals(
        spark.sql(String.format(q, "readings_parquet")).collectAsList(),
        spark.sql(String.format(q, "readings")).collectAsList());
    List<Row> described = spark.sql("SELECT count(*) FROM readings").collectAsList();
    assertEquals(20_000L, described.get(0).getLong(0));
  }

  @Test
  void thePlanShowsTheResolvedTopHash() {
    Dataset<Row> df =
        sheaf(spark, server).load("test/types:v1/" + "tables/types.parquet").where("id < 10");
    String plan = df.queryExecution().executedPlan().toString();
    assertTrue(plan.contains("top_hash=" + server.firstRevision), plan);
    assertTrue(
        plan.contains("sheaf:test/types@" + server.firstRevision + "/tables/types.parquet"), plan);
  }

  @Test
  void aLoadedDataFrameKeepsItsRevisionWhenThePackageMoves() throws Exception {
    Path dir = Files.createTempDirectory("sheaf-moving-");
    Files.copy(server.file("tables/parts/part-0.parquet"), dir.resolve("data.parquet"));
    String first = server.push("test/moving", dir);
    Dataset<Row> pinned = sheaf(spark, server).load("test/moving/data.parquet");
    List<Object> before = checksum(pinned);
    Files.copy(
        server.file("tables/parts/part-1.parquet"),
        dir.resolve("data.parquet"),
        StandardCopyOption.REPLACE_EXISTING);
    String second = server.push("test/moving", dir);
    assertEquals(before, checksum(pinned), "the DataFrame reads the revision it resolved");
    assertTrue(pinned.queryExecution().executedPlan().toString().contains(first));
    Dataset<Row> fresh = sheaf(spark, server).load("test/moving/data.parquet");
    assertTrue(fresh.queryExecution().executedPlan().toString().contains(second));
    assertEquals(
        checksum(spark.read().parquet(dir.resolve("data.parquet").toString())), checksum(fresh));
  }

  @Test
  void aTokenIsAccepted() {
    assertEquals(20_000, sheaf(spark, server).option("token", "secret-token").load(TABLE).count());
  }

  @Test
  void unknownPathsPackagesAndTagsAreNamed() {
    String path =
        messages(
            assertThrows(
                Exception.class,
                () -> sheaf(spark, server).load("test/types/tables/missing.parquet")));
    assertTrue(path.contains("NOT_FOUND") && path.contains("tables/missing.parquet"), path);
    String pkg =
        messages(
            assertThrows(
                Exception.class, () -> sheaf(spark, server).load("test/absent/x.parquet")));
    assertTrue(pkg.contains("test/absent"), pkg);
    String tag =
        messages(
            assertThrows(
                Exception.class,
                () -> sheaf(spark, server).load("test/types:nope/" + "tables/types.parquet")));
    assertTrue(tag.contains("nope"), tag);
  }

  @Test
  void badOptionsAreNamed() {
    String noServer =
        messages(assertThrows(Exception.class, () -> spark.read().format("sheaf").load(TABLE)));
    assertTrue(noServer.contains("\"server\" option is required"), noServer);
    String partitions =
        messages(
            assertThrows(
                Exception.class,
                () -> sheaf(spark, server).option("partitions", "many").load(TABLE)));
    assertTrue(partitions.contains("partitions"), partitions);
    String filter =
        messages(
            assertThrows(
                Exception.class,
                () -> sheaf(spark, server).option("filter", "nosuch > 1").load(TABLE)));
    assertTrue(filter.contains("INVALID_ARGUMENT") && filter.contains("nosuch"), filter);
    String query =
        messages(
            assertThrows(Exception.class, () -> sheaf(spark, server).load(TABLE + "?columns=id")));
    assertTrue(query.contains("no query"), query);
  }

  @Test
  void unsupportedColumnsAreNamedOrDropped() {
    String why =
        messages(
            assertThrows(
                Exception.class,
                () -> sheaf(spark, server).load("test/types/tables/reject.arrow")));
    assertTrue(
        why.contains("\"clock\"") && why.contains("Time") && why.contains("unsupportedColumns"),
        why);
    Dataset<Row> kept =
        sheaf(spark, server)
            .option("unsupportedColumns", "drop")
            .load("test/types/tables/reject.arrow");
    assertEquals(List.of("id"), List.of(kept.columns()));
    assertEquals(4950L, kept.selectExpr("sum(id)").collectAsList().get(0).getLong(0));
    assertEquals(100, kept.count());
  }

  @Test
  void anUnreachableServerFailsWithItsAddress() throws Exception {
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort();
    }
    int dead = port;
    String why =
        messages(
            assertThrows(
                Exception.class,
                () ->
                    spark
                        .read()
                        .format("sheaf")
                        .option("server", "grpc://127.0.0.1:" + dead)
                        .load(TABLE)));
    assertTrue(why.contains("UNAVAILABLE") && why.contains("127.0.0.1:" + dead), why);
  }
}
