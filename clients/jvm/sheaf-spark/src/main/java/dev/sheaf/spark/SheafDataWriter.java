package dev.sheaf.spark;

import dev.sheaf.client.PartUpload;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import dev.sheaf.client.UploadedPart;
import dev.sheaf.client.WriteSession;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;
import org.apache.spark.sql.connector.write.DataWriter;
import org.apache.spark.sql.connector.write.WriterCommitMessage;
import org.apache.spark.sql.execution.arrow.ArrowWriter;
import org.apache.spark.sql.types.StructType;

/**
 * One task's writer: streams the task's rows to the server as Arrow batches in one DoPut, a part of
 * the session with {@code part} = the partition id. Rows become Arrow vectors with Spark's own
 * {@code ArrowWriter} (the conversion of {@code toArrow} and pandas UDFs); a batch is sent every
 * {@code batchRows} rows or 64 MiB, so a task holds one batch at a time.
 *
 * <p>{@link #commit()} ends the upload and answers the part id; {@link #abort()} cancels the upload
 * (the server drops it; an attempt that fails never reaches the commit, whose list of part ids
 * leaves it out anyway). Nothing is sent for a task without rows.
 */
final class SheafDataWriter implements DataWriter<InternalRow> {
  /** A batch ends at this many bytes of vectors (checked every 1024 rows). */
  static final long BATCH_BYTES = 64L << 20;

  private final SheafConnection connection;
  private final WriteSession session;
  private final String path;
  private final StructType schema;
  private final int batchRows;
  private final String target;
  private final int partitionId;
  private final long taskId;
  private SheafClient client;
  private PartUpload upload;
  private ArrowWriter writer;
  private int inBatch;
  private long rows;
  private long batches;
  private boolean closed;

  SheafDataWriter(
      SheafConnection connection,
      WriteSession session,
      String path,
      StructType schema,
      int batchRows,
      String target,
      int partitionId,
      long taskId) {
    this.connection = connection;
    this.session = session;
    this.path = path;
    this.schema = schema;
    this.batchRows = batchRows;
    this.target = target;
    this.partitionId = partitionId;
    this.taskId = taskId;
  }

  private void open() {
    client = connection.builder().allocator(ExecutorAllocator.root()).build();
    try {
      upload = client.openPart(session, path, partitionId, SparkArrow.arrow(schema));
    } catch (SheafException e) {
      throw named(e);
    }
    writer = ArrowWriter.create(upload.root());
  }

  private SheafException named(SheafException e) {
    return e.withMessage(
        "sheaf: writing part " + partitionId + " of " + target + ": " + e.getMessage());
  }

  @Override
  public void write(InternalRow row) {
    if (upload == null) {
      open();
    }
    writer.write(row);
    inBatch++;
    rows++;
    if (inBatch >= batchRows || ((inBatch & 1023) == 0 && writer.sizeInBytes() >= BATCH_BYTES)) {
      flush();
    }
  }

  private void flush() {
    if (inBatch == 0) {
      return;
    }
    writer.finish();
    try {
      upload.putNext();
    } catch (SheafException e) {
      throw named(e);
    }
    writer.reset();
    inBatch = 0;
    batches++;
  }

  @Override
  public WriterCommitMessage commit() {
    if (upload == null) {
      return new SheafCommitMessage(partitionId, taskId, null, 0, 0);
    }
    flush();
    UploadedPart part;
    try {
      part = upload.finish();
    } catch (SheafException e) {
      throw named(e);
    }
    return new SheafCommitMessage(partitionId, taskId, part.partId(), part.rows(), part.bytes());
  }

  @Override
  public void abort() {
    close();
  }

  @Override
  public CustomTaskMetric[] currentMetricsValues() {
    return new CustomTaskMetric[] {
      SheafMetrics.value(SheafMetrics.ROWS_SENT, rows),
      SheafMetrics.value(SheafMetrics.BATCHES_SENT, batches)
    };
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    RuntimeException first = null;
    try {
      if (upload != null) {
        upload.close(); // cancels an unfinished upload
      }
    } catch (RuntimeException e) {
      first = e;
    }
    try {
      if (client != null) {
        client.close();
      }
    } catch (RuntimeException e) {
      first = first == null ? e : first;
    }
    if (first != null) {
      throw first;
    }
  }
}
