package dev.sheaf.client;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ScheduledFuture;
import java.util.function.Supplier;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStatusCode;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.DictionaryEncoding;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.arrow.vector.util.TransferPair;

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
 * <p>Failover: the endpoint's locations are tried in order, each at most once. When a location
 * fails with a transport failure ({@link #isTransportFailure}: it cannot be reached, the replica
 * was killed or its connection reset, its connection stopped answering keepalive pings - a frozen
 * replica, see {@link SheafClient.Builder#keepAlive} - or it answers UNAVAILABLE), before the first
 * batch or in the middle of the stream, the same ticket is opened at the next location and the rows
 * already handed out are skipped (a batch the cut falls inside is sliced), so the caller sees every
 * row once, in order. Any other error (the server's own: NOT_FOUND, INVALID_ARGUMENT,
 * PERMISSION_DENIED, DATA_LOSS, DEADLINE_EXCEEDED, ...) is raised at once. When every location
 * failed, one {@link SheafException} names the endpoint and each location with its error (the last
 * error is its cause, the earlier ones are suppressed).
 *
 * <p>Stalls: with a stall timeout ({@link SheafClient.Builder#stallTimeout}, off by default), a
 * location that sends nothing for that long while the stream waits for it - for the stream to open
 * (its schema), or for the next batch - is a failed replica too, even if it answers keepalive (a
 * live server that stops sending): its call is cancelled and the read goes on at the next location,
 * skipping the rows already handed out. Only time spent waiting for the server counts, never the
 * time the caller holds a batch. When every location stalled, the error is {@link
 * ErrorCode#TIMED_OUT} and names the endpoint, each location and the timeout.
 *
 * <p>Plan checks: the stream must match its dataset's plan (see {@link Endpoint#schema()} and
 * {@link Endpoint#rows()}). Its schema (column names, types, nullability) is compared with the
 * planned one when the stream opens at each location; an endpoint whose exact rows the server
 * stated must hold that many (without them, the count is not checked). A stream with another
 * schema, one that ends (even cleanly) with fewer rows, or one holding more fails with a {@link
 * SheafException} of code {@link ErrorCode#DATA_LOSS} naming the dataset, the endpoint, the
 * location and the rows planned and received (or the schema difference); a batch past the planned
 * rows is not handed out. It is not retried elsewhere.
 *
 * <p>Batches: the stream's root is reused for every batch and handed out as it is (no copy); only
 * the one batch a failover cuts is a slice of its own. Closing before the end cancels the server's
 * scan. {@code close()} may be called any number of times.
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

  /**
   * How gRPC Java (Netty) describes a lost connection or an HTTP/2 stream ended by the transport
   * (or by a proxy in between), rather than a status sent by a server: what it gives with INTERNAL
   * or UNKNOWN for a reset stream, an abrupt GOAWAY, a stream or connection closed in the middle of
   * a message, or a proxy's HTTP error.
   */
  private static final String[] TRANSPORT_FAILURES = {
    "rst_stream closed stream",
    "goaway",
    "encountered end-of-stream mid-frame",
    "received unexpected eos",
    "http2 exception",
    "channel closed",
    "network closed",
    "connection closed",
    "http status code",
    "keepalive failed",
  };

  private final String endpoint;
  private final List<String> targets;
  private final Opener opener;
  private final Schema planned;
  private final long plannedRows;
  private final Duration stallTimeout;
  private final long stallNanos;
  private volatile FlightStream stalledStream;
  private String waitingFor;
  private Schema seen;
  private String seenAt;
  private boolean checked;
  private int stalls;
  private final List<SheafException> failures = new ArrayList<>();
  private final List<String> failed = new ArrayList<>();
  private int current;
  private FlightStream stream;
  private VectorSchemaRoot slice;
  private String what;
  private boolean finished;
  private boolean raised;
  private boolean closed;
  private long rows;
  private long batches;
  private long skip;
  private long rowsAtOpen;

  /**
   * Opens the stream at the first target.
   *
   * @param endpoint the endpoint, for messages
   * @param targets the servers to try, in order (at least one)
   * @param opener starts the DoGet at a target
   */
  EndpointStream(String endpoint, List<String> targets, Opener opener) {
    this(endpoint, targets, opener, null, -1, null);
  }

  /**
   * Opens the stream at the first target, checking it against its plan.
   *
   * @param endpoint the endpoint, for messages (such as {@code endpoint 3 of sheaf://...})
   * @param targets the servers to try, in order (at least one)
   * @param opener starts the DoGet at a target
   * @param planned the schema the stream must have, or null for no check
   * @param plannedRows the exact rows the stream must hold, or -1 for no check
   * @param stallTimeout how long to wait for the server's next message before its location counts
   *     as failed, or null to wait forever
   */
  EndpointStream(
      String endpoint,
      List<String> targets,
      Opener opener,
      Schema planned,
      long plannedRows,
      Duration stallTimeout) {
    if (targets.isEmpty()) {
      throw new IllegalArgumentException(endpoint + ": no server to read it from");
    }
    this.endpoint = endpoint;
    this.targets = List.copyOf(targets);
    this.opener = opener;
    this.planned = planned;
    this.plannedRows = plannedRows;
    this.stallTimeout = stallTimeout;
    this.stallNanos = stallTimeout == null ? 0 : stallTimeout.toNanos();
    open();
  }

  private void open() {
    what = "DoGet " + endpoint + " on " + targets.get(current);
    rowsAtOpen = rows;
    checked = false;
    try {
      stream = opener.open(targets.get(current));
    } catch (FlightRuntimeException e) {
      stream = null;
      fail(e, false);
    }
  }

  /**
   * Runs a call that waits for the server (the stream's schema, its next batch), cancelling the
   * stream when it waits past the stall timeout; the call then fails with CANCELLED, and {@link
   * #stalledStream} tells the failure from others.
   */
  private <T> T watched(FlightStream s, String waiting, Supplier<T> call) {
    if (stallNanos <= 0) {
      return call.get();
    }
    waitingFor = waiting;
    ScheduledFuture<?> alarm =
        StallWatchdog.schedule(
            () -> {
              stalledStream = s;
              try {
                s.cancel("sheaf: nothing received for " + seconds(stallTimeout), null);
              } catch (RuntimeException ignored) {
                // The call ended meanwhile.
              }
            },
            stallNanos);
    try {
      return call.get();
    } finally {
      alarm.cancel(false);
    }
  }

  /** A duration in seconds, for messages: {@code 60 s}, {@code 0.5 s}. */
  static String seconds(Duration d) {
    long millis = d.toMillis();
    return (millis % 1000 == 0 ? Long.toString(millis / 1000) : Double.toString(millis / 1000.0))
        + " s";
  }

  /**
   * How a stream's schema differs from the planned one, in words: other column names (or order), or
   * the first column (or nested field) whose type or nullability differs. Metadata is not compared;
   * for dictionary-encoded columns only the index type is.
   *
   * @param planned the schema the plan gave (GetFlightInfo)
   * @param got the stream's schema
   * @return the difference, or null when there is none
   */
  public static String schemaDifference(Schema planned, Schema got) {
    return fieldsDifference(planned.getFields(), got.getFields(), "");
  }

  private static String fieldsDifference(List<Field> want, List<Field> have, String parent) {
    List<String> wantNames = new ArrayList<>();
    want.forEach(f -> wantNames.add(f.getName()));
    List<String> haveNames = new ArrayList<>();
    have.forEach(f -> haveNames.add(f.getName()));
    if (!wantNames.equals(haveNames)) {
      return (parent.isEmpty() ? "columns " : "fields of column \"" + parent + "\": ")
          + haveNames
          + " instead of "
          + wantNames;
    }
    for (int i = 0; i < want.size(); i++) {
      Field w = want.get(i);
      Field h = have.get(i);
      String name = parent.isEmpty() ? w.getName() : parent + "." + w.getName();
      DictionaryEncoding dw = w.getDictionary();
      DictionaryEncoding dh = h.getDictionary();
      if ((dw == null) != (dh == null)
          || (dw == null
              ? !w.getType().equals(h.getType())
              : !dw.getIndexType().equals(dh.getIndexType()))) {
        return "column \"" + name + "\" is " + typeOf(h) + " instead of " + typeOf(w);
      }
      if (w.isNullable() != h.isNullable()) {
        return "column \""
            + name
            + "\" is "
            + (h.isNullable() ? "nullable" : "not nullable")
            + ", unlike the plan's";
      }
      if (dw == null) {
        String d = fieldsDifference(w.getChildren(), h.getChildren(), name);
        if (d != null) {
          return d;
        }
      }
    }
    return null;
  }

  private static String typeOf(Field f) {
    return f.getDictionary() == null
        ? f.getType().toString()
        : "dictionary(" + f.getDictionary().getIndexType() + ")";
  }

  /**
   * Whether a failed DoGet may succeed at another replica: a transport failure, not an error a
   * Sheaf server sent about the request. True for UNAVAILABLE (a location that cannot be reached, a
   * connection reset or closed under the stream - what Arrow Java raises when the replica's process
   * is killed: {@code UNAVAILABLE: io exception} caused by a {@code SocketException: Connection
   * reset}, or {@code UNAVAILABLE: Network closed for unknown reason} - or a server saying it
   * cannot serve now); and for INTERNAL or UNKNOWN without Sheaf's error details when gRPC names a
   * transport failure (a reset HTTP/2 stream, an abrupt GOAWAY, end of stream in the middle of a
   * message, a proxy's HTTP error) or an I/O error caused it. Every error a Sheaf server sends
   * carries its {@code ErrorInfo}, so its INTERNAL, DATA_LOSS and the rest are never taken for a
   * transport failure.
   *
   * @param e the Flight error
   * @return whether to try the next location
   */
  static boolean isTransportFailure(FlightRuntimeException e) {
    FlightStatusCode code = e.status().code();
    if (code == FlightStatusCode.UNAVAILABLE) {
      return true;
    }
    if (code != FlightStatusCode.INTERNAL && code != FlightStatusCode.UNKNOWN) {
      return false;
    }
    if (SheafException.from("", e).reason() != null) {
      return false; // the server's own error
    }
    String description = e.status().description();
    if (description != null) {
      String d = description.toLowerCase(Locale.ROOT);
      for (String t : TRANSPORT_FAILURES) {
        if (d.contains(t)) {
          return true;
        }
      }
    }
    for (Throwable c = e.getCause(); c != null; c = c.getCause() == c ? null : c.getCause()) {
      if (c instanceof java.io.IOException
          || c.getClass().getName().startsWith("io.netty.handler.codec.http2.Http2Exception")) {
        return true;
      }
    }
    return false;
  }

  /**
   * Handles a failure of the current target: a replica failure (a transport failure, or a stall)
   * moves to the next target (opened at once; the rows handed out so far are skipped there);
   * anything else, or a failure of the last target, is thrown.
   *
   * @param e the Flight error
   * @param stall whether the call was cancelled for waiting past the stall timeout
   */
  private void fail(FlightRuntimeException e, boolean stall) {
    SheafException error =
        stall
            ? new SheafException(
                ErrorCode.TIMED_OUT,
                what
                    + ": stalled: nothing received for "
                    + seconds(stallTimeout)
                    + " while waiting for "
                    + waitingFor,
                e)
            : SheafException.from(what, e);
    boolean replica = stall || isTransportFailure(e);
    if (stall) {
      stalls++;
    }
    if (!replica || current + 1 >= targets.size()) {
      finished = true;
      raised = true;
      closeSlice();
      if (stall) {
        closeQuietly();
      }
      String hint =
          stalls == 0
              ? ""
              : " (stallTimeout "
                  + seconds(stallTimeout)
                  + ": SheafClient.Builder.stallTimeout, or the Spark option stallTimeout, changes"
                  + " it)";
      if (replica && !failures.isEmpty()) {
        failed.add(summary(error));
        boolean allStalled = stalls == failures.size() + 1;
        String message =
            "DoGet "
                + endpoint
                + ": every location failed: "
                + String.join("; ", failed)
                + " ("
                + targets.size()
                + " tried, in order)"
                + hint;
        error =
            stall
                ? new SheafException(
                    allStalled ? ErrorCode.TIMED_OUT : ErrorCode.UNAVAILABLE, message, error)
                : error.withMessage(message);
      } else if (stall) {
        error = new SheafException(ErrorCode.TIMED_OUT, error.getMessage() + hint, e);
      }
      failures.forEach(error::addSuppressed);
      throw error;
    }
    failures.add(error);
    failed.add(summary(error));
    closeQuietly();
    current++;
    skip = rows;
    open();
  }

  /**
   * A stream contradicting its plan: closes it (cancelling the server's scan) and returns the error
   * to throw, naming the call (dataset, endpoint, location) and what is wrong.
   */
  private SheafException contradiction(ErrorCode code, String text) {
    finished = true;
    raised = true;
    closeSlice();
    closeQuietly();
    return new SheafException(code, what + ": " + text, null);
  }

  /**
   * Checks the schema of the stream opened at the current target: against the plan, or without one
   * against the schema read at an earlier location.
   */
  private void checkSchema(Schema got) {
    if (planned != null) {
      String d = schemaDifference(planned, got);
      if (d != null) {
        throw contradiction(
            ErrorCode.DATA_LOSS,
            "the stream's schema is not the dataset's: "
                + d
                + "; the server's stream contradicts its plan");
      }
    } else if (seen != null) {
      String d = schemaDifference(seen, got);
      if (d != null) {
        throw contradiction(
            ErrorCode.INTERNAL,
            "the stream resumed there has another schema than the one read at "
                + seenAt
                + ": "
                + d
                + " (the replicas disagree on the ticket's schema)");
      }
    }
    if (seen == null) {
      seen = got;
      seenAt = targets.get(current);
    }
    checked = true;
  }

  /** A failure as "LOCATION: CODE: description[ (mid-stream, at row N)]". */
  private String summary(SheafException error) {
    String m = error.getMessage();
    String own = m.startsWith(what + ": ") ? m.substring(what.length() + 2) : m;
    return targets.get(current)
        + ": "
        + own
        + (rows > rowsAtOpen ? " (mid-stream, at row " + rows + ")" : "");
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

  /** Frees the batch sliced by a failover, if any. */
  private void closeSlice() {
    if (slice != null) {
      slice.close();
      slice = null;
    }
  }

  /**
   * Loads the next batch into {@link #root()}.
   *
   * @return false at the end of the endpoint
   * @throws SheafException if the server fails the read (its message names what failed); when every
   *     location failed (UNAVAILABLE, or TIMED_OUT when every one stalled); DATA_LOSS when the
   *     stream contradicts its plan (another schema, fewer or more rows than planned)
   */
  public boolean next() {
    if (closed) {
      throw new IllegalStateException(what + ": the stream is closed");
    }
    closeSlice();
    while (!finished) {
      FlightStream s = stream;
      try {
        if (!checked) {
          checkSchema(watched(s, "the stream to open", s::getSchema));
        }
        if (!watched(s, "the next batch", s::next)) {
          finished = true;
          if (skip > 0) {
            raised = true;
            throw new SheafException(
                ErrorCode.INTERNAL,
                what
                    + ": the stream ended after "
                    + (rows - skip)
                    + " rows, before the "
                    + rows
                    + " rows already read from "
                    + String.join(", ", targets.subList(0, current))
                    + " (the replicas disagree on the ticket's rows)",
                null);
          }
          if (plannedRows >= 0 && rows != plannedRows) {
            throw contradiction(
                ErrorCode.DATA_LOSS,
                "the stream ended after "
                    + rows
                    + " rows, but the plan says the endpoint holds "
                    + plannedRows
                    + " (planned "
                    + plannedRows
                    + ", received "
                    + rows
                    + "); the server's stream contradicts its plan");
          }
          return false;
        }
        VectorSchemaRoot root = s.getRoot();
        int n = root.getRowCount();
        if (skip > 0) {
          if (skip >= n) {
            skip -= n; // handed out before the failover
            continue;
          }
          slice = tail(root, (int) skip);
          skip = 0;
          n = slice.getRowCount();
        }
        if (plannedRows >= 0 && rows + n > plannedRows) {
          throw contradiction(
              ErrorCode.DATA_LOSS,
              "the stream holds more than the "
                  + plannedRows
                  + " rows planned for the endpoint ("
                  + (rows + n)
                  + " received so far; planned "
                  + plannedRows
                  + "); the server's stream contradicts its plan");
        }
        batches++;
        rows += n;
        return true;
      } catch (FlightRuntimeException e) {
        fail(e, stalledStream == s);
      }
    }
    return false;
  }

  /**
   * The rows of a batch from {@code from} on, as a root of its own: the buffers are shared, not
   * copied (only validity bits and offsets are rewritten when the cut is not aligned).
   */
  private static VectorSchemaRoot tail(VectorSchemaRoot batch, int from) {
    int length = batch.getRowCount() - from;
    List<FieldVector> vectors = new ArrayList<>();
    try {
      for (FieldVector v : batch.getFieldVectors()) {
        TransferPair p = v.getTransferPair(v.getAllocator());
        p.splitAndTransfer(from, length);
        vectors.add((FieldVector) p.getTo());
      }
    } catch (RuntimeException e) {
      vectors.forEach(FieldVector::close);
      throw e;
    }
    return new VectorSchemaRoot(batch.getSchema(), vectors, length);
  }

  /**
   * @return the current batch; replaced by the next call to {@link #next()}
   */
  public VectorSchemaRoot root() {
    return slice != null ? slice : stream.getRoot();
  }

  /**
   * The schema of the endpoint's batches (waits for the server's first message), checked against
   * the plan.
   *
   * @return the schema
   * @throws SheafException as {@link #next()}
   */
  public Schema schema() {
    while (true) {
      if (closed) {
        throw new IllegalStateException(what + ": the stream is closed");
      }
      FlightStream s = stream;
      if (s == null) {
        throw new IllegalStateException(what + ": the stream failed");
      }
      try {
        Schema got = watched(s, "the stream to open", s::getSchema);
        if (!checked) {
          checkSchema(got);
        }
        return got;
      } catch (FlightRuntimeException e) {
        fail(e, stalledStream == s);
      }
    }
  }

  /**
   * @return rows handed out so far (each row once, whatever the failovers)
   */
  public long rowsRead() {
    return rows;
  }

  /**
   * @return batches handed out so far
   */
  public long batchesRead() {
    return batches;
  }

  /**
   * @return how many locations failed and were left for the next one (0 when the first one served
   *     the whole stream)
   */
  public int failovers() {
    return failures.size();
  }

  /**
   * @return the errors of the locations left for the next one, in order (each message names the
   *     location)
   */
  public List<SheafException> failoverErrors() {
    return List.copyOf(failures);
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
    closeSlice();
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
      if (!raised && (finished || e.status().code() != FlightStatusCode.CANCELLED)) {
        throw SheafException.from(what + " (closing)", e);
      }
    } catch (RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new SheafException(ErrorCode.CLIENT, what + ": closing the stream: " + e, e);
    }
  }
}
