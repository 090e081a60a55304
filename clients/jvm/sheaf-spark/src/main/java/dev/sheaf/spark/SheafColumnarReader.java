package dev.sheaf.spark;

import dev.sheaf.client.EndpointStream;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import java.util.List;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;
import org.apache.spark.sql.connector.read.PartitionReader;
import org.apache.spark.sql.vectorized.ColumnVector;
import org.apache.spark.sql.vectorized.ColumnarBatch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads one endpoint on an executor and hands each Arrow batch to Spark as a {@link ColumnarBatch}
 * of Spark's {@code ArrowColumnVector}s over the received buffers (no row-by-row conversion; only
 * columns of types Spark cannot take are converted, column by column).
 *
 * <p>The endpoint is read through {@link EndpointStream}, so a replica that fails (killed,
 * unreachable) in the middle of the task's read is left for the endpoint's next location, where the
 * read goes on after the rows already handed to Spark: the task neither fails nor repeats rows. A
 * frozen replica (its connection stops answering keepalive pings) counts as failed too, and so,
 * with the {@code stallTimeout} option (off by default), does one that sends nothing for that long
 * while the task waits for it.
 *
 * <p>The stream checks itself against the plan made on the driver (the endpoint carries the
 * dataset's schema and, when the server states them, its exact rows): its schema ({@link
 * EndpointStream#schemaDifference}: names, types, nullability) when it opens at each location, so
 * the column positions of the {@link ReadPlan} hold; and its row count, so a stream that ends early
 * or holds more fails the task (DATA_LOSS, naming the dataset, the endpoint and the rows planned
 * and received) instead of returning a wrong result.
 *
 * <p>A batch is valid until the next call to {@link #next()}. {@link #close()} (idempotent, called
 * by Spark from a task-completion listener) cancels an unfinished stream, frees converted columns,
 * then closes the connection and its allocator, which reports any leaked buffer.
 */
final class SheafColumnarReader implements PartitionReader<ColumnarBatch> {
  private static final Logger LOG = LoggerFactory.getLogger(SheafColumnarReader.class);

  private final SheafInputPartition partition;
  private final SheafConnection connection;
  private final ReadPlan plan;
  private SheafClient client;
  private EndpointStream stream;
  private ColumnConverter[] converters;
  private ColumnarBatch batch;
  private long rows;
  private long batches;
  private int failoversLogged;
  private boolean closed;

  SheafColumnarReader(SheafInputPartition partition, SheafConnection connection, ReadPlan plan) {
    this.partition = partition;
    this.connection = connection;
    this.plan = plan;
  }

  private void open() {
    if (partition.endpoint.schema() == null) {
      throw new IllegalStateException(
          "sheaf: " + partition + " of " + plan.uri + " carries no planned schema to check");
    }
    client = connection.builder().allocator(ExecutorAllocator.root()).build();
    stream = client.stream(partition.endpoint);
    converters = new ColumnConverter[plan.conversions.length];
    for (int i = 0; i < converters.length; i++) {
      if (plan.conversions[i] != SparkTypes.Conversion.NONE) {
        converters[i] =
            ColumnConverter.of(
                plan.conversions[i], plan.schema.fields()[i].name(), client.allocator());
      }
    }
  }

  @Override
  public boolean next() {
    if (closed) {
      return false;
    }
    try {
      if (stream == null) {
        open();
      }
      boolean more = stream.next();
      logFailovers();
      if (!more) {
        return false;
      }
    } catch (SheafException e) {
      // Name the dataset: the client's message names the call, the server and the cause.
      String m = e.getMessage();
      throw e.withMessage(
          m.contains(plan.uri) ? "sheaf: " + m : "sheaf: reading " + plan.uri + ": " + m);
    }
    VectorSchemaRoot root = stream.root();
    ColumnVector[] columns = new ColumnVector[plan.streamIndex.length];
    for (int i = 0; i < columns.length; i++) {
      FieldVector v = root.getVector(plan.streamIndex[i]);
      columns[i] = new ReaderOwnedVector(converters[i] == null ? v : converters[i].convert(v));
    }
    batch = new ColumnarBatch(columns, root.getRowCount());
    rows += root.getRowCount();
    batches++;
    return true;
  }

  /** Logs (WARN, in the executor's log) each location the stream left for the next one. */
  private void logFailovers() {
    List<SheafException> errors = stream.failoverErrors();
    for (int i = failoversLogged; i < errors.size(); i++) {
      String m = errors.get(i).getMessage();
      LOG.warn(
          "sheaf: {}{}; continuing at the next location ({} rows read so far, each once)",
          m.contains(plan.uri) ? "" : "reading " + plan.uri + ": ",
          m,
          stream.rowsRead());
    }
    failoversLogged = errors.size();
  }

  @Override
  public ColumnarBatch get() {
    return batch;
  }

  @Override
  public CustomTaskMetric[] currentMetricsValues() {
    return new CustomTaskMetric[] {
      SheafMetrics.value(SheafMetrics.ROWS, rows),
      SheafMetrics.value(SheafMetrics.BATCHES, batches),
      SheafMetrics.value(SheafMetrics.FAILOVERS, stream == null ? 0 : stream.failovers())
    };
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    batch = null;
    RuntimeException first = null;
    try {
      if (stream != null) {
        stream.close();
      }
    } catch (RuntimeException e) {
      first = e;
    }
    if (converters != null) {
      for (ColumnConverter c : converters) {
        if (c != null) {
          c.close();
        }
      }
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
