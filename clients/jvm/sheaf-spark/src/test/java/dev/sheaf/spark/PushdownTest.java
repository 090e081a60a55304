package dev.sheaf.spark;

import static dev.sheaf.spark.SparkSupport.metric;
import static dev.sheaf.spark.SparkSupport.scan;
import static dev.sheaf.spark.SparkSupport.sheaf;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.DatasetRequest;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.plans.logical.Filter;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import scala.jdk.javaapi.CollectionConverters;

/**
 * Columns, filters, limits reach the server (seen in what it returns and in its log), and results
 * equal Spark's own reading of the Parquet file, pushed or not.
 */
@ExtendWith(SheafServerExtension.class)
class PushdownTest {
  private static final long ROWS = 20_000;
  private static TestServer server;
  private static SparkSession spark;
  private static Dataset<Row> viaSheaf;
  private static Dataset<Row> parquet;

  @BeforeAll
  static void start(TestServer s) {
    server = s;
    spark = SparkSupport.session("PushdownTest");
    // The reference is Spark's own evaluation: Parquet's filter pushdown disagrees with Spark
    // on NaN (it finds no row for f64 = NaN, Spark finds NaN = NaN true).
    spark.conf().set("spark.sql.parquet.filterPushdown", "false");
    viaSheaf =
        sheaf(spark, server).option("partitions", "3").load("test/types/tables/types.parquet");
    parquet = spark.read().parquet(server.file("tables/types.parquet").toString());
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  private static List<Long> ids(Dataset<Row> df) {
    List<Long> out =
        df.collectAsList().stream().map(r -> r.getLong(0)).sorted().collect(Collectors.toList());
    return out;
  }

  private static boolean sparkFilters(Dataset<Row> df) {
    return hasFilter(df.queryExecution().optimizedPlan());
  }

  private static boolean hasFilter(LogicalPlan p) {
    if (p instanceof Filter) {
      return true;
    }
    for (LogicalPlan c : CollectionConverters.asJava(p.children())) {
      if (hasFilter(c)) {
        return true;
      }
    }
    return false;
  }

  /** The dataset URI of the last GetFlightInfo the server logged after a mark, as it wrote it. */
  private static String loggedUri(int mark) throws Exception {
    List<String> lines = server.logLinesSince(mark, l -> l.contains("GetFlightInfo"));
    String last = null;
    for (String l : lines) {
      if (l.contains("GetFlightInfo") && l.contains("uri=")) {
        last = l;
      }
    }
    assertNotNull(last, "no GetFlightInfo in the server log: " + lines);
    String uri = last.substring(last.indexOf("uri=") + 4);
    return uri.substring(0, uri.indexOf(' '));
  }

  /** The request as the server writes it (it parses nothing for the client). */
  private static String asTheServerWritesIt(DatasetRequest request) {
    try (SheafClient client = SheafClient.connect(server.url())) {
      return client.dataset(request).pinnedUri();
    }
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "id = 123",
        "id <> 5 AND id < 100",
        "i8 < -100",
        "i16 <= 0",
        "i32 > 25000",
        "i32 >= 49990",
        "f32 > 0.125",
        "f64 > 0.5",
        "f64 = 0.0",
        "f64 <= -0.0",
        "f64 < -99.5",
        "flag",
        "NOT flag",
        "flag IS NULL",
        "station = 'o''hare'",
        "station = 'back\\\\slash'",
        "station = 'ünïcødé ✓'",
        "station = 'percent %41 & plus+'",
        "station = ''",
        "station IS NULL",
        "station IS NOT NULL",
        "station IN ('oslo', 'lisbon')",
        "station NOT IN ('oslo')",
        "station LIKE 'o%'",
        "station LIKE '%slash'",
        "station LIKE '%ash%'",
        "station < 'lisbon'",
        "station >= 'p'",
        "station <=> 'oslo'",
        "NOT (station <=> 'oslo')",
        "day >= DATE'2021-06-01'",
        "day = DATE'2020-01-05'",
        "ts > TIMESTAMP'2026-01-05 00:00:00'",
        "ts <= TIMESTAMP'2026-01-01 01:00:00.000123'",
        "ts_local < TIMESTAMP_NTZ'2026-03-02 00:00:00'",
        "amount > 12.345",
        "amount = -499.963",
        "`odd \"name\", with comma` = 3",
        "CamelCase = 1",
        "(station = 'oslo' OR i32 > 40000) AND NOT (id > 15000)",
        "id IN (1, 2, 3, 19999)",
      })
  void pushedFiltersAreAppliedByTheServer(String where) throws Exception {
    int mark = server.logMark();
    Dataset<Row> s = viaSheaf.where(where).select("id");
    List<Long> got = ids(s);
    assertEquals(ids(parquet.where(where).select("id")), got, where);
    assertFalse(
        sparkFilters(s),
        "Spark should leave " + where + " to the server: " + s.queryExecution().optimizedPlan());
    SheafScan scan = scan(s);
    assertNotNull(scan.request().filter(), where);
    assertEquals(
        got.size(),
        metric(s, SheafMetrics.ROWS),
        "the server should send only matching rows of " + where);
    String logged = loggedUri(mark);
    assertEquals(
        asTheServerWritesIt(scan.request()),
        logged,
        "the server should have planned the pushed request");
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "id % 7 = 3",
        "upper(station) = 'OSLO'",
        "length(station) > 5",
        "f64 = double('NaN')",
        "point.x > 100",
        "size(tags) = 2",
        "blob = X'0102'",
        "station = 'oslo' OR id % 2 = 0",
        "CAST(i8 AS STRING) = '1'",
      })
  void filtersNotPushedAreAppliedBySpark(String where) {
    Dataset<Row> s = viaSheaf.where(where).select("id");
    List<Long> got = ids(s);
    assertEquals(ids(parquet.where(where).select("id")), got, where);
    assertTrue(sparkFilters(s), where);
    // Spark may push the IS NOT NULL it infers; nothing else of the predicate reaches the server.
    String pushed = scan(s).request().filter();
    assertTrue(
        pushed == null
            || pushed.matches("\\(\"[^\"]+\" IS NOT NULL\\)( AND \\(\"[^\"]+\" IS NOT NULL\\))*"),
        pushed);
    long expected = pushed == null ? ROWS : parquet.where(pushed.replace("\"", "`")).count();
    assertEquals(
        expected,
        metric(s, SheafMetrics.ROWS),
        "the server should send every row " + where + " may keep");
    assertTrue(expected > got.size());
  }

  @Test
  void aConjunctionIsSplit() {
    String where = "station = 'oslo' AND id % 2 = 0";
    Dataset<Row> s = viaSheaf.where(where).select("id");
    List<Long> got = ids(s);
    assertEquals(ids(parquet.where(where).select("id")), got);
    assertEquals(
        "(\"station\" IS NOT NULL) AND (\"station\" = 'oslo')", scan(s).request().filter());
    long oslo = parquet.where("station = 'oslo'").count();
    assertEquals(oslo, metric(s, SheafMetrics.ROWS));
    assertTrue(got.size() < oslo);
  }

  @Test
  void filtersOnConvertedColumnsStayInSpark() {
    Dataset<Row> df = sheaf(spark, server).load("test/types/tables/convert.parquet");
    Dataset<Row> s = df.where("u32 > 2000000000 AND u8 < 10").select("id");
    List<Long> got = ids(s);
    assertTrue(sparkFilters(s));
    assertNull(scan(s).request().filter());
    long expected =
        df.select("id", "u32", "u8").collectAsList().stream()
            .filter(r -> !r.isNullAt(1) && r.getLong(1) > 2_000_000_000L && r.getShort(2) < 10)
            .count();
    assertEquals(expected, got.size());
    assertTrue(expected > 0);
  }

  @Test
  void onlyRequiredColumnsAreRequested() throws Exception {
    int mark = server.logMark();
    Dataset<Row> s = viaSheaf.where("i32 > 0").select("station", "id");
    List<Row> rows = s.collectAsList();
    assertEquals(parquet.where("i32 > 0").count(), rows.size());
    SheafScan scan = scan(s);
    assertEquals(Set.of("station", "id"), Set.copyOf(scan.request().columns()));
    assertEquals(Set.of("station", "id"), Set.of(scan.readSchema().fieldNames()));
    String logged = loggedUri(mark);
    assertEquals(asTheServerWritesIt(scan.request()), logged);
    try (SheafClient client = SheafClient.connect(server.url())) {
      List<String> served =
          client.dataset(logged).schema().getFields().stream()
              .map(Field::getName)
              .collect(Collectors.toList());
      assertEquals(scan.request().columns(), served, "the server sends only the pushed columns");
    }
  }

  @Test
  void aColumnWithACommaIsRequestedByName() {
    Dataset<Row> s = viaSheaf.select("id", "`odd \"name\", with comma`").where("id < 50");
    assertEquals(
        parquet.select("id", "`odd \"name\", with comma`").where("id < 50").collectAsList(),
        s.orderBy("id").collectAsList());
    assertEquals(
        List.of("id", "odd \"name\", with comma"),
        scan(s.select("id", "`odd \"name\", with comma`")).request().columns(),
        "a typed request names any column");
  }

  @Test
  void countsReadOneNarrowColumn() {
    Dataset<Row> c = viaSheaf.groupBy().count();
    assertEquals(ROWS, c.collectAsList().get(0).getLong(0));
    SheafScan scan = scan(c);
    assertEquals(0, scan.readSchema().size());
    assertEquals(List.of("flag"), scan.request().columns(), "the narrowest column");
    assertEquals(ROWS, metric(c, SheafMetrics.ROWS));
  }

  @Test
  void limitsArePushed() throws Exception {
    int mark = server.logMark();
    Dataset<Row> s = viaSheaf.select("id").limit(5);
    assertEquals(5, s.collectAsList().size());
    assertEquals(Long.valueOf(5), scan(s).request().limit());
    assertEquals(1, s.rdd().getNumPartitions(), "a limit is read from one endpoint");
    assertEquals(5, metric(s, SheafMetrics.ROWS));
    String logged = loggedUri(mark);
    assertTrue(logged.contains("limit=5"), logged);
  }

  @Test
  void aLimitAfterASparkFilterStaysInSpark() {
    Dataset<Row> s = viaSheaf.where("id % 2 = 1").select("id").limit(5);
    List<Long> got = ids(s);
    assertEquals(5, got.size());
    assertTrue(got.stream().allMatch(i -> i % 2 == 1));
    assertNull(scan(s).request().limit());
  }

  @Test
  void theServerFilterOptionIsAppliedBeforeSparksFilters() {
    Dataset<Row> df =
        sheaf(spark, server)
            .option("filter", "\"CamelCase\" = 2")
            .load("test/types/tables/types.parquet");
    Dataset<Row> s = df.where("i8 > 0").select("id");
    List<Long> got = ids(s);
    assertEquals(ids(parquet.where("CamelCase = 2 AND i8 > 0").select("id")), got);
    assertEquals(
        "(\"CamelCase\" = 2) AND (\"i8\" IS NOT NULL) AND (\"i8\" > (0))",
        scan(s).request().filter());
  }

  @Test
  void filterTextQuotesIdentifiersAndStrings() {
    List<String> texts = new ArrayList<>();
    for (String where : List.of("station = 'it''s'", "`odd \"name\", with comma` >= 1")) {
      texts.add(scan(viaSheaf.where(where).select("id")).request().filter());
    }
    Collections.sort(texts);
    assertEquals(
        List.of(
            "(\"odd \"\"name\"\", with comma\" IS NOT NULL) AND (\"odd \"\"name\"\", with comma\" >= (1))",
            "(\"station\" IS NOT NULL) AND (\"station\" = 'it''s')"),
        texts);
  }
}
