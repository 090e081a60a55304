package dev.sheaf.client;

import java.util.Objects;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.arrow.flight.AsyncPutListener;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.PutResult;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.VectorLoader;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.VectorUnloader;
import org.apache.arrow.vector.ipc.message.ArrowRecordBatch;
import org.apache.arrow.vector.types.pojo.Schema;
import sheaf.v1.Sheaf;

/**
 * One part being uploaded into a write session: a DoPut streaming the batches of {@link #root()}.
 *
 * <pre>{@code
 * try (PartUpload up = client.openPart(session, "features", 0, schema)) {
 *   VectorSchemaRoot root = up.root();
 *   // fill root's vectors, root.setRowCount(n), then:
 *   up.putNext();                          // as many times as needed
 *   UploadedPart part = up.finish();       // the server's answer: part id, rows, bytes
 * }
 * }</pre>
 *
 * <p>Not thread-safe. {@link #close()} frees the root; an upload closed before {@link #finish()} is
 * cancelled, and the server drops what it received (nothing of it can be committed).
 */
public final class PartUpload implements AutoCloseable {
  private final String what;
  private final VectorSchemaRoot root;
  private final Listener listener;
  private final FlightClient.ClientStreamListener stream;
  private long rows;
  private boolean done;
  private boolean closed;

  /** Copies the first PutResult's app_metadata (Flight frees the buffer after onNext). */
  private static final class Listener extends AsyncPutListener {
    final AtomicReference<byte[]> metadata = new AtomicReference<>();

    @Override
    public void onNext(PutResult result) {
      ArrowBuf buf = result.getApplicationMetadata();
      if (buf != null && metadata.get() == null) {
        byte[] bytes = new byte[(int) buf.readableBytes()];
        buf.getBytes(buf.readerIndex(), bytes);
        metadata.compareAndSet(null, bytes);
      }
    }
  }

  /**
   * Starts uploading one part of a session (see {@link SheafClient#openPart}).
   *
   * @throws SheafException when the call cannot start
   */
  static PartUpload open(
      FlightConnections connections,
      WriteSession session,
      String path,
      Integer part,
      Schema schema) {
    connections.checkOpen();
    DatasetRequest request =
        DatasetRequest.of(session.packageName())
            .withPath(Objects.requireNonNull(path, "path"))
            .withSession(session.id())
            .withPart(part);
    String what =
        "DoPut "
            + session.packageName()
            + "/"
            + path
            + (part == null ? "" : " part " + part)
            + " (session "
            + session.id()
            + ") on "
            + connections.url();
    VectorSchemaRoot root = VectorSchemaRoot.create(schema, connections.allocator());
    return new PartUpload(connections, request.descriptor(), root, what);
  }

  private PartUpload(
      FlightConnections connections,
      FlightDescriptor descriptor,
      VectorSchemaRoot root,
      String what) {
    this.what = what;
    this.root = root;
    this.listener = new Listener();
    try {
      this.stream = connections.startPut(descriptor, root, listener);
    } catch (FlightRuntimeException e) {
      root.close();
      throw SheafException.from(what, e);
    } catch (RuntimeException e) {
      root.close();
      throw e;
    }
  }

  /**
   * @return the batch to fill before each {@link #putNext()} (set its row count); owned by this
   *     upload
   */
  public VectorSchemaRoot root() {
    return root;
  }

  /**
   * @return rows sent so far
   */
  public long rows() {
    return rows;
  }

  /**
   * Sends the root's current content as one batch. Blocks while the server is not ready for more
   * (flow control).
   *
   * @throws SheafException when the server has refused the upload (its reason: the session is
   *     unknown, the caller may not write, ...)
   */
  public void putNext() {
    check();
    if (listener.isCancelled()) {
      // The server ended the call (an early refusal): report its error.
      finishWithError();
    }
    try {
      stream.putNext();
    } catch (FlightRuntimeException e) {
      throw fail(e);
    }
    rows += root.getRowCount();
  }

  /**
   * Loads a batch of the upload's schema into {@link #root()} (which references the batch's
   * buffers, counted; the batch is left untouched) and sends it ({@link #putNext()}).
   *
   * @throws SheafException CLIENT when the batch's schema differs from the upload's
   */
  void putCopy(VectorSchemaRoot batch) {
    if (!batch.getSchema().equals(root.getSchema())) {
      throw new SheafException(
          "the batch's schema "
              + batch.getSchema()
              + " differs from the upload's "
              + root.getSchema());
    }
    try (ArrowRecordBatch copy = new VectorUnloader(batch).getRecordBatch()) {
      new VectorLoader(root).load(copy);
    }
    putNext();
  }

  /**
   * Ends the stream and waits for the server's answer.
   *
   * @return the staged part: its id, rows and bytes
   * @throws SheafException naming the upload and the server's reason
   */
  public UploadedPart finish() {
    check();
    done = true;
    try {
      stream.completed();
      stream.getResult();
    } catch (FlightRuntimeException e) {
      throw fail(e);
    }
    byte[] meta = listener.metadata.get();
    if (meta == null) {
      throw new SheafException(
          ErrorCode.CLIENT, what + ": the server answered no PutResponse", null);
    }
    Sheaf.PutResponse r = Wire.metadata(meta, true, Sheaf.PutResponse.getDefaultInstance(), what);
    if (r.getPartId().isEmpty()) {
      throw new SheafException(
          ErrorCode.CLIENT,
          what + ": the server answered no part id (a server without write sessions?): " + r,
          null);
    }
    return UploadedPart.of(r);
  }

  private void finishWithError() {
    done = true;
    try {
      stream.getResult();
    } catch (FlightRuntimeException e) {
      throw fail(e);
    }
    throw new SheafException(ErrorCode.CLIENT, what + ": the server ended the upload early", null);
  }

  private SheafException fail(FlightRuntimeException e) {
    done = true;
    return SheafException.from(what, e);
  }

  private void check() {
    if (closed || done) {
      throw new IllegalStateException(what + ": the upload is " + (closed ? "closed" : "finished"));
    }
  }

  /** Cancels an unfinished upload (the server drops it), then frees the root. Idempotent. */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    try {
      if (!done) {
        done = true;
        stream.error(
            new java.util.concurrent.CancellationException(what + ": cancelled by the client"));
        try {
          stream.getResult();
        } catch (RuntimeException expected) {
          // The call was cancelled: its error is the cancellation.
        }
      }
    } finally {
      root.close();
    }
  }
}
