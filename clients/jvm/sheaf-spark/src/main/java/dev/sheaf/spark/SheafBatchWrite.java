package dev.sheaf.spark;

import dev.sheaf.client.CommitResult;
import dev.sheaf.client.ErrorCode;
import dev.sheaf.client.LineageInput;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import dev.sheaf.client.UploadedPart;
import dev.sheaf.client.WriteOptions;
import dev.sheaf.client.WriteSession;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.connector.write.BatchWrite;
import org.apache.spark.sql.connector.write.DataWriterFactory;
import org.apache.spark.sql.connector.write.LogicalWriteInfo;
import org.apache.spark.sql.connector.write.PhysicalWriteInfo;
import org.apache.spark.sql.connector.write.WriterCommitMessage;
import org.apache.spark.sql.types.StructType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import sheaf.v1.Sheaf;

/**
 * One write job, one revision: {@link #createBatchWriterFactory} opens a write session on the
 * driver ({@code begin_write}, with the lineage inputs and the tool), each task uploads its rows as
 * one part ({@link SheafDataWriter}), and {@link #commit} commits exactly the parts of the task
 * attempts Spark committed ({@code commit_write} with their ids), so retried and speculative
 * attempts never add rows. {@link #abort} drops the session: a failed job leaves no revision.
 */
final class SheafBatchWrite implements BatchWrite {
  private static final Logger LOG = LoggerFactory.getLogger(SheafBatchWrite.class);

  private final SheafTable table;
  private final String packageName;
  private final String path;
  private final LogicalWriteInfo info;
  private final Sheaf.WriteMode mode;
  private final boolean ignoreIfExists;
  private final List<LineageInput> inputs;
  private WriteSession session;
  private CommitResult result;

  SheafBatchWrite(
      SheafTable table,
      String packageName,
      String path,
      LogicalWriteInfo info,
      Sheaf.WriteMode mode,
      boolean ignoreIfExists,
      List<LineageInput> inputs) {
    this.table = table;
    this.packageName = packageName;
    this.path = path;
    this.info = info;
    this.mode = mode;
    this.ignoreIfExists = ignoreIfExists;
    this.inputs = List.copyOf(inputs);
  }

  private String target() {
    return packageName + "/" + path;
  }

  @Override
  public synchronized DataWriterFactory createBatchWriterFactory(PhysicalWriteInfo physical) {
    SheafOptions o = table.options();
    String sparkVersion = SparkSession.active().version();
    WriteOptions w =
        WriteOptions.defaults()
            .withMode(mode)
            .withBase(o.base)
            .withMessage(
                o.message != null
                    ? o.message
                    : "Spark "
                        + mode.name().substring("WRITE_MODE_".length()).toLowerCase(Locale.ROOT)
                        + " of "
                        + path)
            .withMetadataJson(o.metadata)
            .withInputs(inputs)
            .withTool(SheafWrites.tool(sparkVersion))
            .withIdempotencyKey("spark-query-" + info.queryId());
    try (SheafClient client = table.client()) {
      session = client.beginWrite(packageName, w);
    } catch (SheafException e) {
      throw e.withMessage("sheaf: writing " + target() + ": " + e.getMessage());
    }
    LOG.info(
        "sheaf: writing {} in session {} ({} task(s), mode {}, inputs {})",
        target(),
        session.id(),
        physical.numPartitions(),
        mode,
        inputs);
    return new SheafDataWriterFactory(
        table.connection(), session, path, info.schema(), o.batchRows, target());
  }

  @Override
  public boolean useCommitCoordinator() {
    return true;
  }

  @Override
  public void onDataWriterCommit(WriterCommitMessage message) {
    LOG.debug("sheaf: {}: task committed {}", target(), message);
  }

  @Override
  public synchronized void commit(WriterCommitMessage[] messages) {
    List<String> parts = new ArrayList<>();
    long rows = 0;
    for (WriterCommitMessage m : messages) {
      SheafCommitMessage c = (SheafCommitMessage) m;
      if (c != null && c.partId != null) {
        parts.add(c.partId);
        rows += c.rows;
      }
    }
    try (SheafClient client = table.client()) {
      if (parts.isEmpty()) {
        // Every task was empty: one empty part, so the table exists (with its schema), as Spark's
        // file sources write one file for an empty DataFrame.
        parts.add(emptyPart(client).partId());
      }
      try {
        result = client.commit(session, parts);
      } catch (SheafException e) {
        if (ignoreIfExists && e.reason() == Sheaf.ErrorReason.ALREADY_EXISTS) {
          LOG.info("sheaf: {} exists: nothing written (mode ignore)", target());
          abortQuietly(client);
          return;
        }
        throw e.withMessage("sheaf: committing " + target() + ": " + e.getMessage());
      }
    }
    LOG.info(
        "sheaf: committed {} rows in {} part(s) to {}@{} (previous {}): {}",
        rows,
        parts.size(),
        result.packageName(),
        result.topHash(),
        result.previous(),
        result.uris());
  }

  private UploadedPart emptyPart(SheafClient client) {
    StructType schema = info.schema();
    try (VectorSchemaRoot root =
        VectorSchemaRoot.create(SparkArrow.arrow(schema), client.allocator())) {
      root.allocateNew();
      root.setRowCount(0);
      return client.putPart(session, path, 0, root);
    }
  }

  @Override
  public synchronized void abort(WriterCommitMessage[] messages) {
    if (session == null) {
      return;
    }
    try (SheafClient client = table.client()) {
      abortQuietly(client);
    }
  }

  private void abortQuietly(SheafClient client) {
    try {
      client.abort(session.id());
      LOG.info("sheaf: write of {} aborted (session {} dropped)", target(), session.id());
    } catch (SheafException e) {
      if (e.code() != ErrorCode.NOT_FOUND) {
        LOG.warn(
            "sheaf: aborting session {} of {}: {} (it expires on its own)",
            session.id(),
            target(),
            e.getMessage());
      }
    }
  }

  @Override
  public String toString() {
    return "SheafBatchWrite[" + target() + ", " + mode + "]";
  }
}
