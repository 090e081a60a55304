package dev.sheaf.client;

import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStatusCode;
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
 * <p>The endpoint's locations are tried in order: until the first batch arrives, a location that
 * cannot be reached (UNAVAILABLE) is left for the next one. The root is reused for every batch.
 * Closing before the end cancels the server's scan. {@code close()} may be called any number of
 * times.
 */
public final class EndpointStream implements AutoCloseable {
  /** Opens the endpoint's stream at one of its targets. */
  interface Opener {
    /**
     * Starts the DoGet.
     *
     * @param target a server URL
     * @return the stream (its errors arrive with its first message)
     * @throws FlightRuntimeException if the call cannot start
     */
    FlightStream open(String target);
  }

  private final String endpoint;
  private final List<String> targets;
  private final Opener opener;
  private final List<SheafException> skipped = new ArrayList<>();
  private int current;
  private FlightStream stream;
  private String what;
  private boolean finished;
  private boolean failed;
  private boolean closed;
  private long rows;
  private long batches;

  /**
   * Opens the stream at the first target.
   *
   * @param endpoint the endpoint, for messages
   * @param targets the servers to try, in order (at least one)
   * @param opener starts the DoGet at a target
   */
  EndpointStream(String endpoint, List<String> targets, Opener opener) {
    this.endpoint = endpoint;
    this.targets = List.copyOf(targets);
    this.opener = opener;
    open();
  }

  private void open() {
    what = "DoGet " + endpoint + " on " + targets.get(current);
    try {
      stream = opener.open(targets.get(current));
    } catch (FlightRuntimeException e) {
      stream = null;
      fail(e);
    }
  }

  /**
   * Handles a failure of the current target: moves to the next one when it could not be reached and
   * no batch came yet (the next one is then opened), else throws.
   */
  private void fail(FlightRuntimeException e) {
    SheafException error = SheafException.from(what, e);
    if (batches > 0
        || e.status().code() != FlightStatusCode.UNAVAILABLE
        || current + 1 >= targets.size()) {
      finished = true;
      failed = true;
      skipped.forEach(error::addSuppressed);
      throw error;
    }
    skipped.add(error);
    closeQuietly();
    current++;
    open();
  }

  /** Closes the stream of a target left for the next one. */
  private void closeQuietly() {
    if (stream == null) {
      return;
    }
    try {
      stream.close();
    } catch (Exception ignored) {
      // Its failure is the reason for moving on.
    }
    stream = null;
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
    while (!finished) {
      try {
        if (!stream.next()) {
          finished = true;
          return false;
        }
        batches++;
        rows += stream.getRoot().getRowCount();
        return true;
      } catch (FlightRuntimeException e) {
        fail(e);
      }
    }
    return false;
  }

  /**
   * @return the current batch; replaced by the next call to {@link #next()}
   */
  public VectorSchemaRoot root() {
    return stream.getRoot();
  }

  /**
   * The schema of the endpoint's batches (waits for the server's first message).
   *
   * @return the schema
   */
  public Schema schema() {
    while (true) {
      if (closed) {
        throw new IllegalStateException(what + ": the stream is closed");
      }
      try {
        return stream.getSchema();
      } catch (FlightRuntimeException e) {
        fail(e);
      }
    }
  }

  /**
   * @return rows read so far
   */
  public long rowsRead() {
    return rows;
  }

  /**
   * @return batches read so far
   */
  public long batchesRead() {
    return batches;
  }

  /**
   * @return whether the end of the endpoint was reached
   */
  public boolean finished() {
    return finished;
  }

  /**
   * @return the server the batches come from (the location tried last)
   */
  public String target() {
    return targets.get(current);
  }

  /**
   * @return what this stream reads (for messages)
   */
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
    if (stream == null) {
      return;
    }
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
      if (!failed && (finished || e.status().code() != FlightStatusCode.CANCELLED)) {
        throw SheafException.from(what + " (closing)", e);
      }
    } catch (RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SheafException(ErrorCode.CLIENT, what + ": closing the stream: " + e, e);
    }
  }
}
