package dev.sheaf.client;

import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The record batches of one endpoint, read one at a time.
 *
 * <pre>{@code
 * try (EndpointStream s = client.stream(endpoint)) {
 *   while (s.next()) {
 *     VectorSchemaRoot batch = s.root();   // valid until the next call to next() or close()
 *   }
 * }
 * }</pre>
 *
 * <p>The root is reused for every batch. Closing before the end cancels the server's scan.
 * {@code close()} may be called any number of times.
 */
public final class EndpointStream implements AutoCloseable {
  private final FlightStream stream;
  private final String what;
  private boolean finished;
  private boolean failed;
  private boolean closed;
  private long rows;
  private long batches;

  EndpointStream(FlightStream stream, String what) {
    this.stream = stream;
    this.what = what;
  }

  /**
   * Loads the next batch into {@link #root()}.
   *
   * @return false at the end of the endpoint
   * @throws SheafException if the server fails the read (its message names what failed)
   */
  public boolean next() {
    if (closed) {
      throw new IllegalStateException(what + ": the stream is closed");
    }
    if (finished) {
      return false;
    }
    try {
      if (!stream.next()) {
        finished = true;
        return false;
      }
    } catch (FlightRuntimeException e) {
      finished = true;
      failed = true;
      throw SheafException.from(what, e);
    }
    batches++;
    rows += stream.getRoot().getRowCount();
    return true;
  }

  /** @return the current batch; replaced by the next call to {@link #next()} */
  public VectorSchemaRoot root() {
    return stream.getRoot();
  }

  /**
   * The schema of the endpoint's batches (waits for the server's first message).
   *
   * @return the schema
   */
  public Schema schema() {
    try {
      return stream.getSchema();
    } catch (FlightRuntimeException e) {
      throw SheafException.from(what, e);
    }
  }

  /** @return rows read so far */
  public long rowsRead() {
    return rows;
  }

  /** @return batches read so far */
  public long batchesRead() {
    return batches;
  }

  /** @return whether the end of the endpoint was reached */
  public boolean finished() {
    return finished;
  }

  /** @return what this stream reads (for messages) */
  public String description() {
    return what;
  }

  /**
   * Frees the batch buffers; cancels the read on the server if it did not reach the end.
   * Idempotent.
   */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    try {
      if (!finished) {
        stream.cancel("closed by the client before the end", null);
      }
    } catch (RuntimeException ignored) {
      // Cancelling a stream that already ended or failed is harmless.
    }
    try {
      stream.close();
    } catch (FlightRuntimeException e) {
      // A failed stream reports its error again, and a cancelled one may report CANCELLED
      // while draining: neither is news to the caller.
      if (!failed && (finished || e.status().code() != org.apache.arrow.flight.FlightStatusCode.CANCELLED)) {
        throw SheafException.from(what + " (closing)", e);
      }
    } catch (RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SheafException(ErrorCode.CLIENT, what + ": closing the stream: " + e, e);
    }
  }
}
