package dev.sheaf.spark;

import static dev.sheaf.spark.SparkSupport.metric;
import static dev.sheaf.spark.SparkSupport.scan;
import static dev.sheaf.spark.SparkSupport.sheaf;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.DatasetReader;
import dev.sheaf.client.DatasetRequest;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.arrow.vector.BigIntVector;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** One Spark partition per endpoint, endpoints read where they are, and seeded samples. */
@ExtendWith(SheafServerExtension.class)
class PartitionsAndSamplingTest {
  private static final String TABLE = "test/types/tables/types.parquet";
  private static final DatasetRequest TYPES =
      DatasetRequest.of("test/types").withPath("tables/types.parquet");
  private static TestServer server;
  private static SparkSession spark;

  @BeforeAll
  static void start(TestServer s) {
    server = s;
    spark = SparkSupport.session("PartitionsAndSamplingTest");
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  private static List<Long> ids(org.apache.spark.sql.Dataset<Row> df) {
    return df.select("id").collectAsList().stream()
        .map(r -> r.getLong(0))
        .sorted()
        .collect(Collectors.toList());
  }

  /** What the Java client reads for the same URI (the server's own answer). */
  private static List<Long> clientIds(DatasetRequest uri) {
    List<Long> out = new ArrayList<>();
    try (SheafClient client = SheafClient.connect(server.url());
        DatasetReader r = client.read(client.dataset(uri), 2)) {
      while (r.next()) {
        BigIntVector id = (BigIntVector) r.root().getVector("id");
        for (int i = 0; i < r.root().getRowCount(); i++) {
          out.add(id.get(i));
        }
      }
    }
    return out.stream().sorted().collect(Collectors.toList());
  }

  @ParameterizedTest
  @ValueSource(ints = {1, 3, 8, 50})
  void onePartitionPerEndpoint(int asked) {
    org.apache.spark.sql.Dataset<Row> df =
        sheaf(spark, server).option("partitions", String.valueOf(asked)).load(TABLE);
    int endpoints;
    try (SheafClient client = SheafClient.connect(server.url())) {
      endpoints = client.dataset(scan(df).request()).endpoints().size();
    }
    assertEquals(Math.min(asked, 8), endpoints, "8 row groups: at most 8 endpoints");
    assertEquals(endpoints, df.rdd().getNumPartitions());
    assertEquals(20_000, df.count());
  }

  @Test
  void theDefaultIsAtLeastSparksParallelism() {
    // 20,000 rows in 8 row groups: the server's default is one endpoint (well under 64 MiB);
    // the connector asks for Spark's default parallelism (2 on local[2]).
    org.apache.spark.sql.Dataset<Row> df = sheaf(spark, server).load(TABLE);
    int parallelism = spark.sparkContext().defaultParallelism();
    assertEquals(2, parallelism);
    try (SheafClient client = SheafClient.connect(server.url())) {
      assertEquals(1, client.dataset(TYPES).endpoints().size(), "the server's own default");
      assertEquals(
          client.dataset(scan(df).request()).endpoints().size(), df.rdd().getNumPartitions());
    }
    assertEquals(Integer.valueOf(parallelism), scan(df).request().partitions());
    assertEquals(parallelism, df.rdd().getNumPartitions());
    assertEquals(20_000, df.count());
    // A limit still plans one endpoint, and the partitions option still wins.
    assertEquals(null, scan(df.limit(5)).request().partitions());
    assertEquals(
        Integer.valueOf(1),
        scan(sheaf(spark, server).option("partitions", "1").load(TABLE)).request().partitions());
  }

  /**
   * The issue's case: a 3,000,000-row table (one file of 15 row groups, about 44 MB) was read as
   * one partition on local[2], where {@code spark.read.parquet} of the same file uses two.
   */
  @Test
  void aMediumTableUsesEveryCore() throws Exception {
    java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("sheaf-big-");
    TestServer.run(
        List.of(
            TestServer.python().toString(),
            TestServer.jvmRoot().resolve("testdata/make_tables.py").toString(),
            "--big",
            dir.toString()));
    java.nio.file.Path file = dir.resolve("big/big.parquet");
    server.push("test/big", dir.resolve("big"));
    org.apache.spark.sql.Dataset<Row> df = sheaf(spark, server).load("test/big/big.parquet");
    int stock = spark.read().parquet(file.toString()).rdd().getNumPartitions();
    assertEquals(2, stock, "stock Spark's partitions of the file on local[2]");
    assertTrue(
        df.rdd().getNumPartitions() >= stock,
        "the connector planned " + df.rdd().getNumPartitions() + " partition(s)");
    assertEquals(3_000_000L, df.count());
    assertEquals(
        spark
            .read()
            .parquet(file.toString())
            .selectExpr("sum(id)", "sum(cast(x * 1e6 as bigint))")
            .first(),
        df.selectExpr("sum(id)", "sum(cast(x * 1e6 as bigint))").first());
    try (java.util.stream.Stream<java.nio.file.Path> files = java.nio.file.Files.walk(dir)) {
      files
          .sorted(java.util.Comparator.reverseOrder())
          .map(java.nio.file.Path::toFile)
          .forEach(java.io.File::delete);
    }
  }

  @Test
  void aSeededSampleIsTheSameOnEveryRead() {
    org.apache.spark.sql.Dataset<Row> df =
        sheaf(spark, server)
            .option("sample", "0.1")
            .option("seed", "7")
            .option("partitions", "4")
            .load(TABLE);
    List<Long> first = ids(df);
    List<Long> second =
        ids(
            sheaf(spark, server)
                .option("sample", "0.1")
                .option("seed", "7")
                .option("partitions", "2")
                .load(TABLE));
    assertEquals(first, second);
    assertTrue(first.size() > 1_500 && first.size() < 2_500, "about 10% of 20000: " + first.size());
    assertEquals(
        clientIds(TYPES.withColumns(List.of("id")).withSample(0.1).withSeed(7)),
        first,
        "the sample is the server's");
    assertNotEquals(
        first, ids(sheaf(spark, server).option("sample", "0.1").option("seed", "8").load(TABLE)));
  }

  @Test
  void tablesampleAndDatasetSampleArePushedToTheServer() {
    sheaf(spark, server)
        .option("partitions", "4")
        .load(TABLE)
        .createOrReplaceTempView("types_sampled");
    org.apache.spark.sql.Dataset<Row> sql =
        spark.sql("SELECT id FROM types_sampled TABLESAMPLE (10 PERCENT) REPEATABLE (7)");
    List<Long> viaSql =
        sql.collectAsList().stream().map(r -> r.getLong(0)).sorted().collect(Collectors.toList());
    assertEquals(Double.valueOf(0.1), scan(sql).request().sample());
    assertEquals(7L, scan(sql).request().seed());
    assertEquals(
        viaSql.size(),
        metric(sql, SheafMetrics.ROWS),
        "the server sampled: it sent only the sample");
    assertEquals(
        viaSql,
        ids(spark.sql("SELECT id FROM types_sampled TABLESAMPLE (10 PERCENT) REPEATABLE (7)")));
    org.apache.spark.sql.Dataset<Row> ds = sheaf(spark, server).load(TABLE).sample(0.1, 7);
    assertEquals(viaSql, ids(ds));
    assertEquals(clientIds(TYPES.withColumns(List.of("id")).withSample(0.1).withSeed(7)), viaSql);
  }

  @Test
  void negativeSeedsAreValid() {
    org.apache.spark.sql.Dataset<Row> ds = sheaf(spark, server).load(TABLE).sample(0.05, -3L);
    assertEquals(
        clientIds(TYPES.withColumns(List.of("id")).withSample(0.05).withSeed(-3L)), ids(ds));
  }

  @Test
  void samplesNotExpressibleOnTheServerStayInSpark() {
    org.apache.spark.sql.Dataset<Row> df = sheaf(spark, server).load(TABLE);
    org.apache.spark.sql.Dataset<Row> withReplacement = df.sample(true, 0.1, 7);
    assertEquals(null, scan(withReplacement).request().sample());
    assertTrue(withReplacement.count() > 0);
    // A sample option already set: TABLESAMPLE composes on top, in Spark.
    org.apache.spark.sql.Dataset<Row> twice =
        sheaf(spark, server).option("sample", "0.5").option("seed", "1").load(TABLE).sample(0.5, 2);
    assertEquals(Double.valueOf(0.5), scan(twice).request().sample());
    assertEquals(1L, scan(twice).request().seed());
  }

  @Test
  void anExactSampleSize() {
    assertEquals(
        123,
        sheaf(spark, server).option("sampleRows", "123").option("seed", "5").load(TABLE).count());
  }

  @Test
  void executorsReadEndpointsAtTheirLocation() throws Exception {
    int mark = server.logMark();
    try (TestServer front = server.another(List.of("--advertise", server.url()))) {
      org.apache.spark.sql.Dataset<Row> df =
          spark
              .read()
              .format("sheaf")
              .option("server", front.url())
              .option("partitions", "3")
              .load(TABLE);
      assertEquals(20_000, df.select("id").collectAsList().size());
      List<String> frontLog = front.logLinesSince(0, l -> l.contains("GetFlightInfo"));
      assertTrue(frontLog.stream().anyMatch(l -> l.contains("GetFlightInfo")), frontLog.toString());
      assertTrue(
          frontLog.stream().noneMatch(l -> l.contains("DoGet")),
          "the planning server served endpoints: " + frontLog);
    }
    List<String> lines = server.logLinesSince(mark, l -> l.contains("DoGet"));
    assertEquals(
        3,
        lines.stream()
            .filter(l -> l.contains("DoGet finished") && l.contains("tables/types.parquet"))
            .count(),
        lines.toString());
  }

  @Test
  void anEndpointAtADeadLocationFailsNamingItAndTheDataset() throws Exception {
    int dead;
    try (java.net.ServerSocket socket = new java.net.ServerSocket(0)) {
      dead = socket.getLocalPort();
    }
    try (TestServer front = server.another(List.of("--advertise", "grpc://127.0.0.1:" + dead))) {
      org.apache.spark.sql.Dataset<Row> df =
          spark.read().format("sheaf").option("server", front.url()).load(TABLE);
      Exception e =
          org.junit.jupiter.api.Assertions.assertThrows(
              Exception.class, () -> df.select("id").collectAsList());
      StringBuilder m = new StringBuilder();
      for (Throwable c = e; c != null; c = c.getCause()) {
        m.append(c.getMessage()).append(" | ");
      }
      String text = m.toString();
      assertTrue(
          text.contains("127.0.0.1:" + dead)
              && text.contains("UNAVAILABLE")
              && text.contains("sheaf://test/types@" + server.latestRevision),
          text);
    }
  }
}
