package dev.sheaf.spark;

import static dev.sheaf.spark.SparkSupport.checksum;
import static dev.sheaf.spark.SparkSupport.shape;
import static dev.sheaf.spark.SparkSupport.sheaf;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.util.List;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** Reading a table through the connector equals {@code spark.read.parquet} of the same file. */
@ExtendWith(SheafServerExtension.class)
class ReadEquivalenceTest {
  private static TestServer server;
  private static SparkSession spark;

  @BeforeAll
  static void start(TestServer s) {
    server = s;
    spark = SparkSupport.session("ReadEquivalenceTest");
  }

  @AfterAll
  static void stop() {
    spark.stop();
  }

  private static void assertSame(Dataset<Row> sheaf, Dataset<Row> parquet) {
    assertEquals(shape(parquet.schema()), shape(sheaf.schema()));
    assertEquals(checksum(parquet), checksum(sheaf));
  }

  @Test
  void everyTypeAndValueMatchesParquet() {
    Dataset<Row> viaSheaf =
        sheaf(spark, server).option("partitions", "4").load("test/types/tables/types.parquet");
    Dataset<Row> parquet = spark.read().parquet(server.file("tables/types.parquet").toString());
    assertEquals(20_000, viaSheaf.count());
    assertSame(viaSheaf, parquet);
    assertEquals(4, viaSheaf.rdd().getNumPartitions());
  }

  @Test
  void aFolderOfPartsMatchesParquet() {
    Dataset<Row> viaSheaf = sheaf(spark, server).load("test/types/tables/parts");
    assertSame(viaSheaf, spark.read().parquet(server.file("tables/parts").toString()));
    assertEquals(3_000, viaSheaf.count());
  }

  @Test
  void anOlderRevisionByTagAndByHash() {
    Dataset<Row> parquet = spark.read().parquet(server.file("tables/types.parquet").toString());
    assertSame(sheaf(spark, server).load("test/types:v1/tables/types.parquet"), parquet);
    assertSame(
        sheaf(spark, server)
            .load("test/types@" + server.firstRevision.substring(0, 12) + "/tables/types.parquet"),
        parquet);
  }

  @Test
  void convertedTypesMatchSparksParquetReading() {
    // Spark's Parquet reader maps unsigned integers, millisecond timestamps and fixed-size
    // binary exactly as the connector converts them.
    List<String> same = List.of("id", "u8", "u16", "u32", "u64", "ts_ms", "fixed");
    Dataset<Row> viaSheaf = sheaf(spark, server).load("test/types/tables/convert.parquet");
    // Spark's Parquet reader refuses the file's nanosecond timestamps unless read as longs.
    spark.conf().set("spark.sql.legacy.parquet.nanosAsLong", "true");
    try {
      Dataset<Row> parquet = spark.read().parquet(server.file("tables/convert.parquet").toString());
      assertSame(
          viaSheaf.selectExpr(same.toArray(new String[0])),
          parquet.selectExpr(same.toArray(new String[0])));
    } finally {
      spark.conf().unset("spark.sql.legacy.parquet.nanosAsLong");
    }
  }

  @Test
  void nanosecondTimestampsAreTruncatedToMicroseconds() {
    Dataset<Row> viaSheaf = sheaf(spark, server).load("test/types/tables/convert.parquet");
    assertEquals("timestamp", viaSheaf.schema().apply("ts_ns").dataType().catalogString());
    assertEquals(
        "timestamp_ntz", viaSheaf.schema().apply("ts_ns_local").dataType().catalogString());
    // The generator wrote ts_ns = 2026-01-01T00:00:00Z + id * 1_000_000_007 ns - 500 ns and
    // ts_ns_local = 2026-01-01T00:00:00 + id * 999 ns; floor to microseconds.
    long base = 1_767_225_600_000_000L;
    long bad =
        viaSheaf
            .selectExpr(
                "id", "unix_micros(ts_ns) AS a", "unix_micros(CAST(ts_ns_local AS TIMESTAMP)) AS b")
            .collectAsList()
            .stream()
            .filter(
                r ->
                    r.getLong(1) != base + Math.floorDiv(r.getLong(0) * 1_000_000_007L - 500, 1000L)
                        || r.getLong(2) != base + Math.floorDiv(r.getLong(0) * 999L, 1000L))
            .count();
    assertEquals(0, bad);
  }

  @Test
  void typesParquetCannotHoldAreConverted() {
    Dataset<Row> df = sheaf(spark, server).load("test/types/tables/convert.arrow");
    assertEquals(
        "id:bigint, half:float, day_ms:date, dur_ms:interval day to second, dec256:decimal(30,2), "
            + "ts_s:timestamp, big:string",
        shape(df.schema()));
    List<Row> rows =
        df.selectExpr(
                "id",
                "half",
                "datediff(day_ms, DATE'1970-01-01')",
                "CAST(dur_ms AS DECIMAL(20, 6))",
                "CAST(dec256 AS STRING)",
                "unix_seconds(ts_s)",
                "big")
            .orderBy("id")
            .collectAsList();
    assertEquals(1_000, rows.size());
    for (Row r : rows) {
      long i = r.getLong(0);
      String at = "row " + i;
      if (i % 9 == 0) {
        assertTrue(r.isNullAt(1), at);
      } else {
        assertEquals((i % 64) / 4.0f, r.getFloat(1), at);
      }
      if (i % 7 == 0) {
        assertTrue(r.isNullAt(2), at);
      } else {
        assertEquals(i - 500, r.getInt(2), at);
      }
      assertEquals(
          new java.math.BigDecimal((i - 500) * 1_001).movePointLeft(3).setScale(6),
          r.getDecimal(3),
          at);
      assertEquals(
          java.math.BigDecimal.valueOf(i * 12_345 - 6_000_000, 2).toPlainString(),
          r.getString(4),
          at);
      assertEquals(1_767_225_600L + i * 3_600, r.getLong(5), at);
      assertEquals("v" + i, r.getString(6), at);
    }
  }
}
