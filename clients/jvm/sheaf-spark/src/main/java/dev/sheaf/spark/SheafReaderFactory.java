package dev.sheaf.spark;

import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReader;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.vectorized.ColumnarBatch;

/**
 * Creates readers on executors. Holds only plain data: the connection (server URL, token, TLS PEM
 * bytes; never a password) and the read plan.
 */
final class SheafReaderFactory implements PartitionReaderFactory {
  private static final long serialVersionUID = 1L;

  private final SheafConnection connection;
  private final ReadPlan plan;

  SheafReaderFactory(SheafConnection connection, ReadPlan plan) {
    this.connection = connection;
    this.plan = plan;
  }

  @Override
  public boolean supportColumnarReads(InputPartition partition) {
    return true;
  }

  @Override
  public PartitionReader<ColumnarBatch> createColumnarReader(InputPartition partition) {
    return new SheafColumnarReader((SheafInputPartition) partition, connection, plan);
  }

  @Override
  public PartitionReader<InternalRow> createReader(InputPartition partition) {
    return new SheafRowReader(
        new SheafColumnarReader((SheafInputPartition) partition, connection, plan));
  }
}
