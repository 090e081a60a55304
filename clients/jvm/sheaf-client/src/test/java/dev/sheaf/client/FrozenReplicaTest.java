package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.sheaf.client.testing.FakeSheafServer;
import dev.sheaf.client.testing.FakeSheafServer.Mode;
import java.time.Duration;
import java.util.List;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Frozen replicas (SIGSTOP: a hung process or a stuck host; the connection stays open and nothing
 * comes) against real replicas ({@link ReplicatedTableTest}). HTTP/2 keepalive leaves them with the
 * stall timeout off (its default): mid-stream, before the stream opens, on a connection the client
 * had not opened yet, in a parallel read; a live server that sends its first batch after longer
 * than the keepalive interval and timeout is not taken for a frozen one. The stall timeout, when
 * set, still leaves a replica that sends nothing for that long (named with the timeout when every
 * location stalled) and never counts the time the caller holds a batch. Every read goes through
 * {@link #freezeAndRead}.
 */
class FrozenReplicaTest extends ReplicatedTableTest {
  /**
   * The shortest keepalive gRPC Java allows (10 s) and a short timeout: frozen is told in ~11 s.
   */
  private static final Duration PING = Duration.ofSeconds(10);

  private static final Duration PING_TIMEOUT = Duration.ofSeconds(1);

  private static final Duration STALL = Duration.ofSeconds(2);

  /** A read being watched: one endpoint's stream, or a dataset's reader. */
  private interface Read extends AutoCloseable {
    boolean next();

    VectorSchemaRoot root();

    /** The location the current batch was planned to come from. */
    String target();

    /** Locations left so far, or -1 when the read does not say. */
    int failovers();

    /** The errors of the locations left. */
    List<SheafException> failoverErrors();

    @Override
    void close();
  }

  @FunctionalInterface
  private interface Opener {
    Read open();
  }

  /** What a read with a frozen replica did. */
  private static final class FrozenRead {
    final Table table = new Table();
    String frozen;
    SheafException error;
    int failovers = -1;
    List<SheafException> failoverErrors = List.of();
    String lastTarget;
    double secondsToLeave = -1;
  }

  /**
   * The one read of these tests: reads through {@code open}, freezing (SIGSTOP) the location being
   * read once {@code atRow} rows were handed out ({@code 0}: {@code before}, the first location,
   * before the read opens), or every replica when {@code every}; records the rows, the error the
   * read ended with (or null), the failovers and how long after the freeze the read was going on
   * elsewhere. Frozen replicas stay frozen until {@link Replicas#close()}.
   */
  private static FrozenRead freezeAndRead(
      Replicas r, long atRow, String before, boolean every, Opener open) throws Exception {
    FrozenRead out = new FrozenRead();
    long frozenAt = 0;
    if (atRow == 0) {
      out.frozen = freeze(r, before, every);
      frozenAt = System.nanoTime();
    }
    try (Read read = open.open()) {
      try {
        while (read.next()) {
          if (out.frozen != null && out.secondsToLeave < 0 && read.failovers() > 0) {
            out.secondsToLeave = (System.nanoTime() - frozenAt) / 1e9;
          }
          out.table.add(read.root());
          if (out.frozen == null && out.table.n >= atRow) {
            out.frozen = freeze(r, read.target(), every);
            frozenAt = System.nanoTime();
          }
        }
      } catch (SheafException e) {
        out.error = e;
      }
      out.failovers = read.failovers();
      out.failoverErrors = read.failoverErrors();
      out.lastTarget = out.failovers < 0 ? null : read.target();
    }
    if (out.secondsToLeave >= 0) {
      System.out.printf(
          "left the frozen replica %s after %.1f s%n", out.frozen, out.secondsToLeave);
    }
    return out;
  }

  private static String freeze(Replicas r, String target, boolean every) throws Exception {
    for (String url : every ? r.urls : List.of(target)) {
      r.at(url).freeze();
    }
    return target;
  }

  /** Reads one endpoint's stream. */
  private static Opener stream(SheafClient c, Endpoint e) {
    return () -> {
      EndpointStream s = c.stream(e);
      return new Read() {
        @Override
        public boolean next() {
          return s.next();
        }

        @Override
        public VectorSchemaRoot root() {
          return s.root();
        }

        @Override
        public String target() {
          return s.target();
        }

        @Override
        public int failovers() {
          return s.failovers();
        }

        @Override
        public List<SheafException> failoverErrors() {
          return s.failoverErrors();
        }

        @Override
        public void close() {
          s.close();
        }
      };
    };
  }

  /** Reads a dataset's endpoints two at a time. */
  private static Opener reader(SheafClient c, Dataset ds) {
    return () -> {
      DatasetReader reader = c.read(ds, 2);
      return new Read() {
        @Override
        public boolean next() {
          return reader.next();
        }

        @Override
        public VectorSchemaRoot root() {
          return reader.root();
        }

        @Override
        public String target() {
          return c.target(ds.endpoints().get(reader.endpointIndex()));
        }

        @Override
        public int failovers() {
          return -1;
        }

        @Override
        public List<SheafException> failoverErrors() {
          return List.of();
        }

        @Override
        public void close() {
          reader.close();
        }
      };
    };
  }

  private SheafClient client(String url, Duration stallTimeout, Duration ping) {
    SheafClient.Builder b = SheafClient.builder(url).allocator(root).stallTimeout(stallTimeout);
    return ping == null ? b.build() : b.keepAlive(ping, PING_TIMEOUT).build();
  }

  @Test
  @Timeout(180) // a frozen replica must not hang the read
  void keepaliveLeavesAReplicaFrozenMidStreamWithTheDefaults() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(root).build()) {
      FrozenRead read = freezeAndRead(r, 200_000, null, false, stream(c, endpoint(c, r.urls)));
      assertNull(read.error);
      read.table.assertWhole();
      assertEquals(1, read.failovers);
      assertEquals(r.urls.get(1), read.lastTarget);
      SheafException left = read.failoverErrors.get(0);
      assertEquals(ErrorCode.UNAVAILABLE, left.code(), left.getMessage());
      assertTrue(left.getMessage().contains(read.frozen), left.getMessage());
      assertTrue(left.getMessage().toLowerCase().contains("keepalive"), left.getMessage());
      assertTrue(r.at(read.frozen).alive());
    }
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void keepaliveLeavesAReplicaFrozenBeforeTheStreamOpens() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = client(r.urls.get(0), null, PING)) {
      // The client's own server, whose connection planned the read.
      Endpoint e = endpoint(c, r.urls);
      FrozenRead read = freezeAndRead(r, 0, r.urls.get(0), false, stream(c, e));
      assertNull(read.error);
      read.table.assertWhole();
      assertEquals(1, read.failovers);
      assertEquals(ErrorCode.UNAVAILABLE, read.failoverErrors.get(0).code());
    }
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void keepaliveLeavesAFrozenReplicaTheClientHadNotConnectedTo() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = client(r.urls.get(1), null, PING)) {
      // Planned on the second replica; the first location is a new connection to a frozen process
      // (its kernel accepts the connection, the server never answers HTTP/2's opening).
      Endpoint e = endpoint(c, r.urls);
      assertEquals(r.urls.get(0), c.target(e));
      FrozenRead read = freezeAndRead(r, 0, r.urls.get(0), false, stream(c, e));
      assertNull(read.error);
      read.table.assertWhole();
      assertEquals(1, read.failovers);
      assertEquals(r.urls.get(1), read.lastTarget);
    }
  }

  @Test
  @Timeout(180) // a frozen replica must not hang the read
  void keepaliveLetsAParallelReadOfSeveralEndpointsSurviveAFrozenReplica() throws Exception {
    assumeTrue(
        shared.peers, "sheaf serve has no --peer: a Dataset listing replicas is not planned");
    try (Replicas r = replicas(2, true, List.of());
        SheafClient c = client(r.urls.get(0), null, PING)) {
      Dataset ds = c.dataset(BIG.withPartitions(4));
      assertEquals(4, ds.endpoints().size());
      FrozenRead read = freezeAndRead(r, 200_000, null, false, reader(c, ds));
      assertNull(read.error);
      read.table.assertWhole();
    }
  }

  /**
   * A live server computing for longer than the keepalive interval and timeout before its first
   * batch (the fake server waits {@link FakeSheafServer#SLOW_SECONDS} s; the client pings after 10
   * s and waits 1 s for the answer): it answers the pings, so the read waits for it.
   */
  @Test
  @Timeout(120)
  void aLiveServerSlowerThanTheKeepaliveIsNotTakenForFrozen() throws Exception {
    assertTrue(FakeSheafServer.SLOW_SECONDS > PING.plus(PING_TIMEOUT).toSeconds());
    try (FakeSheafServer fake = new FakeSheafServer(Mode.SLOW);
        SheafClient c = client(fake.url(), null, PING)) {
      Endpoint slow =
          c.dataset(DatasetRequest.of("qa/fake").withPath("t.parquet")).endpoints().get(1);
      long started = System.nanoTime();
      try (EndpointStream s = c.stream(slow)) {
        while (s.next()) {
          // read on
        }
        assertEquals(FakeSheafServer.ENDPOINT_ROWS, s.rowsRead());
        assertEquals(0, s.failovers());
      }
      double seconds = (System.nanoTime() - started) / 1e9;
      assertTrue(seconds >= FakeSheafServer.SLOW_SECONDS, "the first batch came after " + seconds);
    }
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void theStallTimeoutLeavesAReplicaFrozenMidStream() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = client(r.urls.get(0), STALL, null)) {
      FrozenRead read = freezeAndRead(r, 200_000, null, false, stream(c, endpoint(c, r.urls)));
      assertNull(read.error);
      read.table.assertWhole();
      assertEquals(1, read.failovers);
      assertEquals(r.urls.get(1), read.lastTarget);
      String m = read.failoverErrors.get(0).getMessage();
      assertEquals(ErrorCode.TIMED_OUT, read.failoverErrors.get(0).code(), m);
      assertTrue(m.contains(read.frozen), m);
      assertTrue(m.contains("stalled: nothing received for 2 s while waiting for"), m);
    }
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void whenEveryLocationStallsTheErrorIsTimedOutNamingEachAndTheTimeout() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = client(r.urls.get(0), STALL, null)) {
      Endpoint e = endpoint(c, r.urls);
      FrozenRead read = freezeAndRead(r, 200_000, null, true, stream(c, e));
      assertEquals(1, read.failovers);
      read.table.assertPrefix();
      SheafException error = read.error;
      assertNotNull(error);
      String m = error.getMessage();
      assertEquals(ErrorCode.TIMED_OUT, error.code(), m);
      assertTrue(m.startsWith("DoGet endpoint 0"), m);
      assertTrue(m.contains("every location failed"), m);
      assertTrue(m.indexOf(r.urls.get(0)) >= 0 && m.indexOf(r.urls.get(1)) >= 0, m);
      assertTrue(m.contains("stallTimeout 2 s"), m);
      assertEquals(1, error.getSuppressed().length);

      // One location: its own error, naming it and the timeout.
      Endpoint alone = new Endpoint(0, e.ticket(), List.of(r.urls.get(1)));
      FrozenRead one = freezeAndRead(r, 0, r.urls.get(1), false, stream(c, alone));
      assertEquals(0, one.table.n);
      assertEquals(ErrorCode.TIMED_OUT, one.error.code(), one.error.getMessage());
      assertTrue(one.error.getMessage().contains(r.urls.get(1)), one.error.getMessage());
      assertTrue(one.error.getMessage().contains("stallTimeout 2 s"), one.error.getMessage());
    }
  }

  @Test
  @Timeout(120)
  void aCallerHoldingABatchLongerThanTheStallTimeoutIsNoStall() throws Exception {
    try (Replicas r = replicas(1, false, List.of());
        SheafClient c = client(r.urls.get(0), Duration.ofSeconds(1), null)) {
      Table t = new Table();
      try (EndpointStream s = c.stream(c.dataset(BIG).endpoints().get(0))) {
        while (s.next()) {
          t.add(s.root());
          if (s.batchesRead() == 2) {
            Thread.sleep(2_500);
          }
        }
        assertEquals(0, s.failovers());
      }
      t.assertWhole();
    }
  }
}
