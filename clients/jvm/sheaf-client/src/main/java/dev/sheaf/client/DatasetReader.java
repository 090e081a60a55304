package dev.sheaf.client;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.util.TransferPair;

/**
 * Reads a dataset's endpoints in parallel and hands their batches over in endpoint order.
 *
 * <pre>{@code
 * try (DatasetReader r = client.read(dataset, 4)) {
 *   while (r.next()) {
 *     VectorSchemaRoot batch = r.root();   // valid until the next call to next() or close()
 *   }
 * }
 * }</pre>
 *
 * <p>Up to {@code parallelism} endpoints are read at once, each into a small queue (a few batches),
 * so memory stays bounded whatever the dataset's size. Batches move from the network to the caller
 * without copying (buffers are transferred). Not thread-safe: one consumer. {@code close()}
 * (idempotent) cancels reads still running and frees every queued batch.
 */
public final class DatasetReader implements AutoCloseable {
  private static final int QUEUE_BATCHES = 4;
  private static final AtomicInteger READERS = new AtomicInteger();

  /** An item of an endpoint's queue: a batch, the end, or a failure. */
  private static final class Item {
    final VectorSchemaRoot batch;
    final RuntimeException error;

    Item(VectorSchemaRoot batch, RuntimeException error) {
      this.batch = batch;
      this.error = error;
    }
  }

  private static final Item END = new Item(null, null);

  private final Dataset dataset;
  private final List<BlockingQueue<Item>> queues = new ArrayList<>();
  private final ExecutorService pool;
  private final BufferAllocator allocator;
  private volatile boolean closing;
  private int current;
  private VectorSchemaRoot root;
  private long rows;
  private boolean closed;

  DatasetReader(SheafClient client, Dataset dataset, int parallelism, BufferAllocator allocator) {
    if (parallelism < 1) {
      throw new IllegalArgumentException("parallelism must be at least 1, not " + parallelism);
    }
    this.dataset = dataset;
    this.allocator = allocator;
    int id = READERS.incrementAndGet();
    AtomicInteger threads = new AtomicInteger();
    this.pool =
        Executors.newFixedThreadPool(
            Math.max(1, Math.min(parallelism, dataset.endpoints().size())),
            r -> {
              Thread t = new Thread(r, "sheaf-reader-" + id + "-" + threads.incrementAndGet());
              t.setDaemon(true);
              return t;
            });
    // Tasks start in endpoint order on a FIFO pool, so the endpoint the consumer waits for is
    // always running or done: reading cannot deadlock on full queues.
    for (Endpoint e : dataset.endpoints()) {
      BlockingQueue<Item> q = new ArrayBlockingQueue<>(QUEUE_BATCHES);
      queues.add(q);
      pool.execute(() -> fill(client, e, q));
    }
    pool.shutdown();
  }

  private void fill(SheafClient client, Endpoint e, BlockingQueue<Item> q) {
    try {
      if (closing) {
        return;
      }
      try (EndpointStream s = client.stream(e)) {
        while (!closing && s.next()) {
          VectorSchemaRoot owned = transfer(s.root());
          try {
            q.put(new Item(owned, null));
          } catch (InterruptedException ie) {
            owned.close();
            return;
          }
        }
      }
      q.put(END);
    } catch (InterruptedException ie) {
      // closing
    } catch (RuntimeException err) {
      RuntimeException wrapped =
          err instanceof SheafException
              ? err
              : new SheafException(
                  ErrorCode.CLIENT,
                  "reading " + e + " of " + dataset.pinnedUri() + ": " + err,
                  err);
      try {
        q.put(new Item(null, wrapped));
      } catch (InterruptedException ignored) {
        // closing
      }
    }
  }

  /** Moves a batch's buffers into a root of its own, leaving the stream's root empty. */
  private VectorSchemaRoot transfer(VectorSchemaRoot from) {
    List<FieldVector> vectors = new ArrayList<>();
    for (FieldVector v : from.getFieldVectors()) {
      TransferPair p = v.getTransferPair(allocator);
      p.transfer();
      vectors.add((FieldVector) p.getTo());
    }
    return new VectorSchemaRoot(from.getSchema().getFields(), vectors, from.getRowCount());
  }

  /**
   * Moves to the next batch, waiting for it if needed.
   *
   * @return false when every endpoint has been read
   * @throws SheafException if reading an endpoint failed
   */
  public boolean next() {
    if (closed) {
      throw new IllegalStateException("the reader of " + dataset.pinnedUri() + " is closed");
    }
    if (root != null) {
      root.close();
      root = null;
    }
    while (current < queues.size()) {
      Item item;
      try {
        item = queues.get(current).take();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new SheafException(
            ErrorCode.CANCELLED, "reading " + dataset.pinnedUri() + ": interrupted", e);
      }
      if (item == END) {
        current++;
      } else if (item.error != null) {
        current = queues.size();
        throw item.error;
      } else {
        root = item.batch;
        rows += root.getRowCount();
        return true;
      }
    }
    return false;
  }

  /**
   * @return the current batch; freed by the next call to {@link #next()} or {@link #close()}
   */
  public VectorSchemaRoot root() {
    if (root == null) {
      throw new IllegalStateException("no current batch: call next() first");
    }
    return root;
  }

  /**
   * @return the index of the endpoint the current batch came from
   */
  public int endpointIndex() {
    return current;
  }

  /**
   * @return rows handed over so far
   */
  public long rowsRead() {
    return rows;
  }

  /** Cancels running reads and frees every batch. Idempotent. */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    closing = true;
    if (root != null) {
      root.close();
      root = null;
    }
    pool.shutdownNow();
    try {
      // Readers stop at their next batch (their streams are cancelled); waiting is bounded
      // so a stalled network cannot hang the caller.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
      while (!pool.awaitTermination(100, TimeUnit.MILLISECONDS) && System.nanoTime() < deadline) {
        drain();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    drain();
  }

  private void drain() {
    for (BlockingQueue<Item> q : queues) {
      Item item;
      while ((item = q.poll()) != null) {
        if (item.batch != null) {
          item.batch.close();
        }
      }
    }
  }
}
