package dev.sheaf.spark;

import java.util.Locale;
import org.apache.spark.sql.connector.distributions.Distribution;
import org.apache.spark.sql.connector.distributions.Distributions;
import org.apache.spark.sql.connector.expressions.Expression;
import org.apache.spark.sql.connector.expressions.FieldReference;
import org.apache.spark.sql.connector.expressions.SortOrder;
import org.apache.spark.sql.connector.write.BatchWrite;
import org.apache.spark.sql.connector.write.LogicalWriteInfo;
import org.apache.spark.sql.connector.write.RequiresDistributionAndOrdering;
import sheaf.v1.Sheaf;

/**
 * A planned write of the inner write's target: one folder of part files (one part per task), or one
 * file ({@code PATH} ending in {@code .parquet}), for which Spark gathers the rows into one task
 * first. {@link #toBatch()} runs when the job runs: it finds the Sheaf tables the query reads
 * ({@link SheafLineage}) and makes the {@link SheafBatchWrite}.
 */
final class SheafWrite implements RequiresDistributionAndOrdering {
  private final SheafTable table;
  private final LogicalWriteInfo info;
  private final Sheaf.WriteMode mode;
  private final boolean ignoreIfExists;
  private final String packageName;
  private final String path;

  SheafWrite(
      SheafTable table, LogicalWriteInfo info, Sheaf.WriteMode mode, boolean ignoreIfExists) {
    this.table = table;
    this.info = info;
    this.mode = mode;
    this.ignoreIfExists = ignoreIfExists;
    String[] target = table.options().writeTarget();
    this.packageName = target[0];
    this.path = target[1];
    SparkArrow.check(info.schema(), table.options().table);
  }

  /** A file table (one Parquet file) rather than a folder of parts. */
  private boolean isFile() {
    return path.toLowerCase(Locale.ROOT).endsWith(".parquet");
  }

  @Override
  public Distribution requiredDistribution() {
    if (isFile() && info.schema().fields().length > 0) {
      // One task writes the file: every row to one partition.
      return Distributions.clustered(
          new Expression[] {FieldReference.column(info.schema().fields()[0].name())});
    }
    return Distributions.unspecified();
  }

  @Override
  public int requiredNumPartitions() {
    return isFile() && info.schema().fields().length > 0 ? 1 : 0;
  }

  @Override
  public SortOrder[] requiredOrdering() {
    return new SortOrder[0];
  }

  @Override
  public String description() {
    return "Sheaf "
        + mode.name().substring("WRITE_MODE_".length()).toLowerCase(Locale.ROOT)
        + " "
        + packageName
        + "/"
        + path;
  }

  @Override
  public org.apache.spark.sql.connector.metric.CustomMetric[] supportedCustomMetrics() {
    return SheafMetrics.supportedByWrites();
  }

  @Override
  public BatchWrite toBatch() {
    return new SheafBatchWrite(
        table, packageName, path, info, mode, ignoreIfExists, SheafLineage.inputs(table));
  }
}
