package dev.sheaf.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import dev.sheaf.client.testing.FakeSheafServer;
import dev.sheaf.client.testing.FakeSheafServer.Mode;
import dev.sheaf.client.testing.TestServer;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.read.InputPartition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Spark against failing or misbehaving servers: streams contradicting their plan (a fake server)
 * fail the job with the client's message; a replica frozen (SIGSTOP) in a job is left for the next
 * location after the {@code stallTimeout} option; options that would leak or mangle what is sent
 * are refused.
 */
class FailingServersTest {
  private static SparkSession spark;

  @BeforeAll
  static void start() {
    spark = SparkSupport.session("FailingServersTest");
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

  private static Dataset<Row> fake(FakeSheafServer server) {
    return spark.read().format("sheaf").option("server", server.url()).load("qa/fake/t.parquet");
  }

  @Test
  void theFakeServerReadsWhenItBehaves() throws Exception {
    try (FakeSheafServer server = new FakeSheafServer(Mode.OK)) {
      Row r = fake(server).selectExpr("count(*)", "sum(id)", "sum(x)").first();
      assertEquals(2000L, r.getLong(0));
      assertEquals(1_999_000L, r.getLong(1));
      assertEquals(19_990_000L, r.getLong(2));
    }
  }

  @Test
  void aStreamEndingEarlyFailsTheJobNamingTheRows() throws Exception {
    try (FakeSheafServer server = new FakeSheafServer(Mode.TRUNCATE)) {
      Exception count = assertThrows(Exception.class, () -> fake(server).count());
      String m = messages(count);
      assertTrue(m.contains("DATA_LOSS") || m.contains("contradicts its plan"), m);
      assertTrue(m.contains("endpoint 1 of " + FakeSheafServer.pinnedUri()), m);
      assertTrue(m.contains("planned 1000, received 400"), m);
      Exception collect = assertThrows(Exception.class, () -> fake(server).collectAsList());
      assertTrue(messages(collect).contains("planned 1000, received 400"), messages(collect));
    }
  }

  @Test
  void aStreamOfAnotherTypeFailsTheJobNamingTheColumn() throws Exception {
    try (FakeSheafServer server = new FakeSheafServer(Mode.TYPE)) {
      Exception e =
          assertThrows(Exception.class, () -> fake(server).selectExpr("sum(id)", "sum(x)").first());
      String m = messages(e);
      assertTrue(m.contains("endpoint 1 of " + FakeSheafServer.pinnedUri()), m);
      assertTrue(
          m.contains("the stream's schema is not the dataset's: column \"id\" is Int(32, true)"),
          m);
    }
    try (FakeSheafServer server = new FakeSheafServer(Mode.SWAP)) {
      Exception e = assertThrows(Exception.class, () -> fake(server).collectAsList());
      assertTrue(messages(e).contains("columns [x, id] instead of [id, x]"), messages(e));
    }
  }

  @Test
  void aServerOptionWithCredentialsIsRefusedWithoutRepeatingThem() {
    for (String url :
        List.of("grpc://alice:UrlPassw0rd@127.0.0.1:47410", "grpc://sheaf_SECRETTOKENxyz@h:1")) {
      Exception e =
          assertThrows(
              Exception.class,
              () ->
                  spark
                      .read()
                      .format("sheaf")
                      .option("server", url)
                      .option("username", "alice")
                      .option("password", "S3cretPass!")
                      .load("qa/big/big.parquet")
                      .count());
      String m = messages(e);
      assertFalse(m.contains("UrlPassw0rd") || m.contains("SECRETTOKEN"), m);
      assertFalse(m.contains("S3cretPass"), m);
      assertTrue(m.contains("the options username and password"), m);
      assertTrue(m.contains("...@"), m);
    }
  }

  @Test
  void optionsAreChecked() {
    Map<String, String> base = Map.of("server", "grpc://127.0.0.1:1", "path", "a/b/c.parquet");
    assertEquals(
        SheafClient.DEFAULT_STALL_TIMEOUT, SheafOptions.parse(base).stallTimeout, "the default");
    assertEquals(
        Duration.ofMillis(2500),
        SheafOptions.parse(with(base, "stallTimeout", "2.5")).stallTimeout);
    assertNull(SheafOptions.parse(with(base, "STALLTIMEOUT", "none")).stallTimeout);
    for (String bad : List.of("0", "-1", "soon", "NaN", "Infinity")) {
      SheafException e =
          assertThrows(
              SheafException.class, () -> SheafOptions.parse(with(base, "stallTimeout", bad)));
      assertTrue(e.getMessage().contains("stallTimeout") && e.getMessage().contains(bad));
    }
    SheafException partitions =
        assertThrows(
            SheafException.class, () -> SheafOptions.parse(with(base, "partitions", "-1")));
    assertTrue(partitions.getMessage().contains("partitions"), partitions.getMessage());
    SheafException rows =
        assertThrows(
            SheafException.class, () -> SheafOptions.parse(with(base, "sampleRows", "-5")));
    assertTrue(rows.getMessage().contains("sampleRows"), rows.getMessage());
  }

  private static Map<String, String> with(Map<String, String> m, String k, String v) {
    Map<String, String> out = new java.util.HashMap<>(m);
    out.put(k, v);
    return out;
  }

  /**
   * Two replicas listing each other serve a 3,000,000-row table in 4 partitions; after planning,
   * the first location of endpoint 0 is frozen (SIGSTOP). Its tasks wait {@code stallTimeout} (2
   * s), then read on at the other replica: the job's result is exact and the scan counts the
   * failovers.
   */
  @Test
  @Timeout(300)
  void aFrozenReplicaIsLeftForTheNextLocationAfterTheStallTimeout() throws Exception {
    assumeTrue(TestServer.servesReplicas(), "sheaf serve has no --peer");
    Path work = Files.createTempDirectory("sheaf-spark-freeze-");
    List<TestServer> replicas = new ArrayList<>();
    try {
      TestServer.run(
          List.of(
              TestServer.python().toString(),
              TestServer.jvmRoot().resolve("testdata/make_tables.py").toString(),
              "--big",
              work.resolve("gen").toString()));
      Path registry = work.resolve("registry");
      TestServer.push(registry, "replica/big", work.resolve("gen/big"));
      List<Integer> ports = new ArrayList<>();
      while (ports.size() < 2) {
        int p = TestServer.freePort();
        if (!ports.contains(p)) {
          ports.add(p);
        }
      }
      List<String> urls =
          List.of("grpc://127.0.0.1:" + ports.get(0), "grpc://127.0.0.1:" + ports.get(1));
      for (int i = 0; i < 2; i++) {
        replicas.add(
            TestServer.replica(
                registry,
                ports.get(i),
                List.of("--advertise", urls.get(i), "--peer", urls.get(1 - i))));
      }
      awaitBothListed(urls);
      Dataset<Row> df =
          spark
              .read()
              .format("sheaf")
              .option("server", urls.get(0))
              .option("partitions", "4")
              .option("stallTimeout", "2")
              .load("replica/big/big.parquet")
              .select("id");
      // Plan now (both replicas listed), then freeze the replica endpoint 0 is read from first.
      InputPartition[] parts = SparkSupport.scan(df).planInputPartitions();
      assertEquals(4, parts.length);
      String first = ((SheafInputPartition) parts[0]).endpoint.locations().get(0);
      TestServer victim = replicas.get(first.replaceAll("/+$", "").equals(urls.get(0)) ? 0 : 1);
      victim.freeze();
      long sum =
          df.queryExecution()
              .toRdd()
              .toJavaRDD()
              .map((InternalRow row) -> row.getLong(0))
              .reduce(Long::sum);
      assertEquals(2_999_999L * 3_000_000L / 2, sum, "every id once");
      assertTrue(
          SparkSupport.metric(df, SheafMetrics.FAILOVERS) >= 1,
          "the frozen replica was left for the next location");
    } finally {
      for (TestServer s : replicas) {
        s.close();
      }
      try (Stream<Path> files = Files.walk(work)) {
        files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
      }
    }
  }

  /** Waits (up to 30 s) until an endpoint of the table lists both replicas. */
  private static void awaitBothListed(List<String> urls) throws Exception {
    long deadline = System.nanoTime() + 30_000_000_000L;
    try (SheafClient c = SheafClient.connect(urls.get(0))) {
      while (true) {
        List<String> listed = new ArrayList<>();
        for (String l :
            c.dataset(dev.sheaf.client.DatasetRequest.of("replica/big").withPath("big.parquet"))
                .endpoints()
                .get(0)
                .locations()) {
          listed.add(l.replaceAll("/+$", ""));
        }
        if (new HashSet<>(listed).equals(new HashSet<>(urls))) {
          return;
        }
        if (System.nanoTime() > deadline) {
          throw new AssertionError("the endpoints list " + listed + ", not " + urls);
        }
        Thread.sleep(200);
      }
    }
  }
}
