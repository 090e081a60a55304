package dev.sheaf.spark;

import java.io.IOException;
import java.util.Iterator;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;
import org.apache.spark.sql.connector.read.PartitionReader;

/** Rows over the columnar reader, for a Spark that asks for rows (it normally asks for batches). */
final class SheafRowReader implements PartitionReader<InternalRow> {
  private final SheafColumnarReader batches;
  private Iterator<InternalRow> rows;
  private InternalRow current;

  SheafRowReader(SheafColumnarReader batches) {
    this.batches = batches;
  }

  @Override
  public boolean next() throws IOException {
    while (rows == null || !rows.hasNext()) {
      if (!batches.next()) {
        return false;
      }
      rows = batches.get().rowIterator();
    }
    current = rows.next();
    return true;
  }

  @Override
  public InternalRow get() {
    return current;
  }

  @Override
  public CustomTaskMetric[] currentMetricsValues() {
    return batches.currentMetricsValues();
  }

  @Override
  public void close() {
    batches.close();
  }
}
