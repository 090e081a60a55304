package dev.sheaf.spark;

import dev.sheaf.client.WriteSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.write.DataWriter;
import org.apache.spark.sql.connector.write.DataWriterFactory;
import org.apache.spark.sql.types.StructType;

/**
 * Creates the tasks' writers on executors. Holds only plain data: the connection (server URL,
 * token, TLS PEM bytes; never a password), the session opened on the driver, the table path, the
 * rows' schema and the batch size.
 */
final class SheafDataWriterFactory implements DataWriterFactory {
  private static final long serialVersionUID = 1L;

  private final SheafConnection connection;
  private final WriteSession session;
  private final String path;
  private final StructType schema;
  private final int batchRows;
  private final String target;

  SheafDataWriterFactory(
      SheafConnection connection,
      WriteSession session,
      String path,
      StructType schema,
      int batchRows,
      String target) {
    this.connection = connection;
    this.session = session;
    this.path = path;
    this.schema = schema;
    this.batchRows = batchRows;
    this.target = target;
  }

  @Override
  public DataWriter<InternalRow> createWriter(int partitionId, long taskId) {
    return new SheafDataWriter(
        connection, session, path, schema, batchRows, target, partitionId, taskId);
  }
}
