package dev.sheaf.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.sheaf.client.testing.TestServer;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.DataFrameReader;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.execution.SparkPlan;
import org.apache.spark.sql.execution.datasources.v2.BatchScanExec;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2ScanRelation;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import scala.jdk.javaapi.CollectionConverters;

/** A lean local Spark for the tests (one session per test class) and helpers to inspect plans. */
final class SparkSupport {
  private SparkSupport() {}

  /**
   * Local Spark with 2 cores, no UI, loopback only, UTC, no adaptive plans (plans stay
   * inspectable).
   */
  static SparkSession session(String name) {
    return SparkSession.builder()
        .appName(name)
        .master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.adaptive.enabled", "false")
        .getOrCreate();
  }

  /** A reader of the sheaf format pointed at the test server. */
  static DataFrameReader sheaf(SparkSession spark, TestServer server) {
    return spark.read().format("sheaf").option("server", server.url());
  }

  /** The Sheaf scan Spark planned for a DataFrame. */
  static SheafScan scan(Dataset<Row> df) {
    List<SheafScan> found = new ArrayList<>();
    collect(df.queryExecution().optimizedPlan(), found);
    assertEquals(
        1, found.size(), "expected one Sheaf scan in " + df.queryExecution().optimizedPlan());
    return found.get(0);
  }

  private static void collect(LogicalPlan plan, List<SheafScan> out) {
    if (plan instanceof DataSourceV2ScanRelation
        && ((DataSourceV2ScanRelation) plan).scan() instanceof SheafScan) {
      out.add((SheafScan) ((DataSourceV2ScanRelation) plan).scan());
    }
    for (LogicalPlan child : CollectionConverters.asJava(plan.children())) {
      collect(child, out);
    }
  }

  /** The value of a Sheaf metric of an executed DataFrame (call after an action on it). */
  static long metric(Dataset<Row> df, String name) {
    List<BatchScanExec> scans = new ArrayList<>();
    collectExec(df.queryExecution().executedPlan(), scans);
    assertEquals(
        1, scans.size(), "expected one BatchScan in " + df.queryExecution().executedPlan());
    return scans.get(0).metrics().get(name).get().value();
  }

  private static void collectExec(SparkPlan plan, List<BatchScanExec> out) {
    if (plan instanceof BatchScanExec) {
      out.add((BatchScanExec) plan);
    }
    for (SparkPlan child : CollectionConverters.asJava(plan.children())) {
      collectExec(child, out);
    }
  }

  /** Column names and types, ignoring nullability (Parquet reads make every column nullable). */
  static String shape(StructType schema) {
    List<String> out = new ArrayList<>();
    for (StructField f : schema.fields()) {
      out.add(f.name() + ":" + f.dataType().catalogString());
    }
    return String.join(", ", out);
  }

  /**
   * An order-independent checksum of every column: the row count, then per column its count of
   * non-null values and the sum of Spark's hash of each value (maps hashed as their sorted entries:
   * Spark refuses to hash maps).
   */
  static List<Object> checksum(Dataset<Row> df) {
    List<String> exprs = new ArrayList<>();
    exprs.add("count(*)");
    for (StructField f : df.schema().fields()) {
      String q = "`" + f.name().replace("`", "``") + "`";
      String value =
          f.dataType() instanceof org.apache.spark.sql.types.MapType
              ? "array_sort(map_entries(" + q + "))"
              : q;
      exprs.add("count(" + q + ")");
      exprs.add("sum(cast(hash(" + value + ") as bigint))");
    }
    Row r = df.selectExpr(exprs.toArray(new String[0])).collectAsList().get(0);
    List<Object> out = new ArrayList<>();
    for (int i = 0; i < r.length(); i++) {
      out.add(r.get(i));
    }
    return out;
  }
}
