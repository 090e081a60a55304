package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.protobuf.Any;
import com.google.rpc.ErrorInfo;
import dev.sheaf.client.testing.TestServer;
import java.io.File;
import java.io.IOException;
import java.net.SocketException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.arrow.flight.CallStatus;
import org.apache.arrow.flight.ErrorFlightMetadata;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Mid-stream failover against real replicas: several {@code sheaf serve} processes over one local
 * registry on fixed ports, the one serving a read SIGKILLed while the read is running. With a
 * binary whose {@code serve} takes {@code --peer}, each replica gets {@code --advertise} itself and
 * {@code --peer} the others, and the endpoints are the server's own (every replica listed); with an
 * older binary, endpoints listing every replica are built by hand from the server's ticket (the
 * client API takes any locations), and the read through {@link DatasetReader} of several such
 * endpoints is skipped.
 */
class FailoverTest {
  private static final long ROWS = 3_000_000;
  private static final DatasetRequest BIG =
      DatasetRequest.of("replica/big").withPath("big.parquet");

  private static Path work;
  private static Path registry;
  private static boolean peers;
  private static Table reference;

  private RootAllocator root;

  /** The {@code id} and {@code x} columns of rows read, in the order handed out. */
  private static final class Table {
    final long[] ids = new long[(int) ROWS];
    final double[] xs = new double[(int) ROWS];
    int n;

    void add(VectorSchemaRoot batch) {
      BigIntVector id = (BigIntVector) batch.getVector("id");
      Float8Vector x = (Float8Vector) batch.getVector("x");
      int rows = batch.getRowCount();
      if (n + rows > ROWS) {
        throw new AssertionError(
            "more than " + ROWS + " rows handed out (" + (n + rows) + "): rows repeated");
      }
      for (int i = 0; i < rows; i++) {
        ids[n] = id.get(i);
        xs[n] = x.get(i);
        n++;
      }
    }

    /** Every row of the table once, in order, with the values of an undisturbed read. */
    void assertWhole() {
      assertEquals(ROWS, n, "rows handed out");
      for (int i = 0; i < n; i++) {
        if (ids[i] != i) {
          throw new AssertionError(
              "row " + i + " has id " + ids[i] + ": rows lost, repeated or out of order");
        }
      }
      if (reference != null) {
        assertArrayEquals(reference.xs, xs, "column x differs from an undisturbed read");
      }
    }

    /** The rows handed out are the table's first rows, in order. */
    void assertPrefix() {
      for (int i = 0; i < n; i++) {
        if (ids[i] != i) {
          throw new AssertionError("row " + i + " has id " + ids[i]);
        }
      }
    }
  }

  /** Replicas over the test registry; closing stops those still running. */
  private static final class Replicas implements AutoCloseable {
    final List<TestServer> servers = new ArrayList<>();
    final List<String> urls = new ArrayList<>();

    TestServer at(String url) {
      int port = Integer.parseInt(url.replaceAll("/+$", "").replaceAll(".*:", ""));
      for (TestServer s : servers) {
        if (s.port() == port) {
          return s;
        }
      }
      throw new AssertionError(url + " is none of the replicas " + urls);
    }

    @Override
    public void close() throws Exception {
      Exception first = null;
      for (TestServer s : servers) {
        try {
          s.close();
        } catch (Exception e) {
          first = first == null ? e : first;
        }
      }
      if (first != null) {
        throw first;
      }
    }
  }

  @BeforeAll
  static void makeRegistry() throws Exception {
    work = Files.createTempDirectory("sheaf-failover-");
    registry = work.resolve("registry");
    TestServer.run(
        List.of(
            TestServer.python().toString(),
            TestServer.jvmRoot().resolve("testdata/make_tables.py").toString(),
            "--big",
            work.resolve("gen").toString()));
    TestServer.push(registry, "replica/big", work.resolve("gen/big"));
    // The same rows in row groups of another size: the server cuts them into other batches.
    Files.createDirectories(work.resolve("gen/recut"));
    TestServer.run(
        List.of(
            TestServer.python().toString(),
            "-c",
            "import sys, pyarrow.parquet as pq; "
                + "pq.write_table(pq.read_table(sys.argv[1]), sys.argv[2], row_group_size=70001)",
            work.resolve("gen/big/big.parquet").toString(),
            work.resolve("gen/recut/big.parquet").toString()));
    TestServer.push(registry, "replica/recut", work.resolve("gen/recut"));
    peers = TestServer.servesReplicas();
    // The values of an undisturbed read, to compare failed-over reads with.
    try (RootAllocator own = new RootAllocator();
        TestServer one = TestServer.replica(registry, TestServer.freePort(), List.of());
        SheafClient c = SheafClient.builder(one.url()).allocator(own).build()) {
      Table t = new Table();
      try (DatasetReader r = c.read(c.dataset(BIG), 1)) {
        while (r.next()) {
          t.add(r.root());
        }
      }
      reference = null;
      t.assertWhole();
      reference = t;
    }
  }

  @AfterAll
  static void deleteRegistry() throws IOException {
    if (work == null) {
      return;
    }
    try (Stream<Path> files = Files.walk(work)) {
      files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
    }
  }

  @BeforeEach
  void allocator() {
    root = new RootAllocator();
  }

  @AfterEach
  void noLeak() {
    assertEquals(0, root.getAllocatedMemory(), "Arrow memory still allocated");
    root.close();
  }

  /**
   * {@code n} replicas on fixed ports; with a binary that has {@code --peer} and {@code
   * listEachOther}, each advertises itself and names the others, and this waits until an endpoint
   * lists all of them.
   */
  private static Replicas replicas(int n, boolean listEachOther, List<List<String>> extra)
      throws Exception {
    Replicas r = new Replicas();
    List<Integer> ports = new ArrayList<>();
    while (ports.size() < n) {
      int p = TestServer.freePort();
      if (!ports.contains(p)) {
        ports.add(p);
        r.urls.add("grpc://127.0.0.1:" + p);
      }
    }
    try {
      for (int i = 0; i < n; i++) {
        List<String> args = new ArrayList<>(extra.isEmpty() ? List.of() : extra.get(i));
        if (peers && listEachOther) {
          args.addAll(List.of("--advertise", r.urls.get(i)));
          for (int j = 0; j < n; j++) {
            if (j != i) {
              args.addAll(List.of("--peer", r.urls.get(j)));
            }
          }
        }
        r.servers.add(TestServer.replica(registry, ports.get(i), args));
      }
      if (peers && listEachOther) {
        awaitEveryReplicaListed(r);
      }
      return r;
    } catch (Exception | Error e) {
      r.close();
      throw e;
    }
  }

  /** Peers join once they answer the health check: waits (up to 30 s) for all in an endpoint. */
  private static void awaitEveryReplicaListed(Replicas r) throws Exception {
    long deadline = System.nanoTime() + 30_000_000_000L;
    try (RootAllocator own = new RootAllocator();
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(own).build()) {
      while (true) {
        List<String> listed = normalized(c.dataset(BIG).endpoints().get(0).locations());
        if (new HashSet<>(listed).equals(new HashSet<>(r.urls))) {
          assertEquals(r.urls.size(), listed.size(), "each replica listed once: " + listed);
          return;
        }
        if (System.nanoTime() > deadline) {
          throw new AssertionError(
              "after 30 s the endpoints list " + listed + ", not every replica " + r.urls);
        }
        Thread.sleep(200);
      }
    }
  }

  private static List<String> normalized(List<String> urls) {
    return urls.stream().map(u -> u.replaceAll("/+$", "")).collect(Collectors.toList());
  }

  /**
   * The table's single endpoint, listing every replica: the server's own when the replicas list
   * each other (every replica once, in the server's order), else the server's ticket with the
   * replicas as locations, in the order given.
   */
  private static Endpoint endpoint(SheafClient c, List<String> locations) {
    List<Endpoint> all = c.dataset(BIG).endpoints();
    assertEquals(1, all.size(), "the server's default plans the table as one endpoint");
    Endpoint e = all.get(0);
    if (!e.locations().isEmpty()) {
      assertTrue(peers, "an older server listed " + e.locations());
      List<String> listed = normalized(e.locations());
      assertEquals(locations.size(), listed.size(), listed.toString());
      assertEquals(new HashSet<>(locations), new HashSet<>(listed));
      return e;
    }
    return new Endpoint(
        e.index(), e.ticket(), locations, e.firstRow().orElse(-1), e.tableRows().orElse(-1));
  }

  @Test
  void replicasKilledMidStreamAreLeftForTheNextWithEveryRowOnceInOrder() throws Exception {
    try (Replicas r = replicas(3, true, List.of());
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(root).build()) {
      Endpoint e = endpoint(c, r.urls);
      List<String> order = c.targets(e);
      assertEquals(3, order.size(), order.toString());
      Table t = new Table();
      List<String> killed = new ArrayList<>();
      long failedOverAt = -1;
      try (EndpointStream s = c.stream(e)) {
        while (s.next()) {
          t.add(s.root());
          if (killed.isEmpty() && s.batchesRead() == 2) {
            killed.add(s.target());
            r.at(s.target()).kill(); // the one serving, after its first batches
          } else if (killed.size() == 1 && s.failovers() == 1) {
            if (failedOverAt < 0) {
              failedOverAt = s.batchesRead();
              assertEquals(order.get(1), s.target(), "the next location in order");
            } else if (s.batchesRead() == failedOverAt + 2) {
              killed.add(s.target());
              r.at(s.target()).kill(); // the second one too, mid-stream
            }
          }
        }
        assertEquals(List.of(order.get(0), order.get(1)), killed);
        assertEquals(2, s.failovers());
        assertEquals(order.get(2), s.target(), "the last replica finished the stream");
        assertEquals(ROWS, s.rowsRead());
        assertTrue(s.finished());
      }
      t.assertWhole();
      assertTrue(r.at(order.get(2)).alive());
    }
  }

  @Test
  void aParallelReadOfSeveralEndpointsSurvivesAKilledReplica() throws Exception {
    assumeTrue(
        peers,
        "sheaf serve has no --peer (SHEAF_BIN="
            + System.getenv("SHEAF_BIN")
            + "): its endpoints list one location, and a Dataset cannot be built by hand");
    try (Replicas r = replicas(3, true, List.of());
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(root).build()) {
      Dataset ds = c.dataset(BIG.withPartitions(6));
      assertEquals(6, ds.endpoints().size());
      for (Endpoint e : ds.endpoints()) {
        assertEquals(new HashSet<>(r.urls), new HashSet<>(normalized(e.locations())), e.toString());
      }
      Table t = new Table();
      String killed = null;
      try (DatasetReader reader = c.read(ds, 3)) {
        while (reader.next()) {
          t.add(reader.root());
          if (killed == null && t.n >= 200_000) {
            // The replica the endpoint being handed out was planned on: it has more to send.
            killed = c.target(ds.endpoints().get(reader.endpointIndex()));
            r.at(killed).kill();
          }
        }
      }
      t.assertWhole();
      assertFalse(r.at(killed).alive());
    }
  }

  private static final java.time.Duration STALL = java.time.Duration.ofSeconds(2);

  private SheafClient stallingClient(String url) {
    return SheafClient.builder(url).allocator(root).stallTimeout(STALL).build();
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void aReplicaFrozenMidStreamIsLeftForTheNextAfterTheStallTimeout() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = stallingClient(r.urls.get(0))) {
      Endpoint e = endpoint(c, r.urls);
      Table t = new Table();
      String frozen = null;
      try (EndpointStream s = c.stream(e)) {
        while (s.next()) {
          t.add(s.root());
          if (frozen == null && s.batchesRead() == 2) {
            frozen = s.target();
            r.at(frozen).freeze(); // SIGSTOP: the connection stays open, nothing more comes
          }
        }
        assertEquals(1, s.failovers());
        assertEquals(r.urls.get(1), s.target());
        String m = s.failoverErrors().get(0).getMessage();
        assertEquals(ErrorCode.TIMED_OUT, s.failoverErrors().get(0).code(), m);
        assertTrue(m.contains(frozen), m);
        assertTrue(m.contains("stalled: nothing received for 2 s while waiting for"), m);
      }
      t.assertWhole();
      assertTrue(r.at(frozen).alive());
    }
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void aReplicaFrozenBeforeTheStreamOpensIsLeftForTheNext() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = stallingClient(r.urls.get(0))) {
      Endpoint e = endpoint(c, r.urls);
      r.at(r.urls.get(0)).freeze();
      Table t = new Table();
      try (EndpointStream s = c.stream(e)) {
        while (s.next()) {
          t.add(s.root());
        }
        assertEquals(1, s.failovers());
        String m = s.failoverErrors().get(0).getMessage();
        assertTrue(m.contains("while waiting for the stream to open"), m);
      }
      t.assertWhole();
    }
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void whenEveryLocationStallsTheErrorIsTimedOutNamingEachAndTheTimeout() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = stallingClient(r.urls.get(0))) {
      Endpoint e = endpoint(c, r.urls);
      Table t = new Table();
      long started = System.nanoTime();
      SheafException error;
      try (EndpointStream s = c.stream(e)) {
        error =
            assertThrows(
                SheafException.class,
                () -> {
                  while (s.next()) {
                    t.add(s.root());
                    if (s.batchesRead() == 2) {
                      r.servers.get(0).freeze();
                      r.servers.get(1).freeze();
                    }
                  }
                });
        assertEquals(1, s.failovers());
      }
      double seconds = (System.nanoTime() - started) / 1e9;
      assertTrue(seconds < 30, "failed after " + seconds + " s");
      t.assertPrefix();
      String m = error.getMessage();
      assertEquals(ErrorCode.TIMED_OUT, error.code(), m);
      assertTrue(m.startsWith("DoGet endpoint 0"), m);
      assertTrue(m.contains("every location failed"), m);
      assertTrue(m.indexOf(r.urls.get(0)) >= 0 && m.indexOf(r.urls.get(1)) >= 0, m);
      assertTrue(m.contains("stallTimeout 2 s"), m);
      assertEquals(1, error.getSuppressed().length);

      // One location: its own error, naming it and the timeout.
      Endpoint alone = new Endpoint(0, e.ticket(), List.of(r.urls.get(1)));
      try (EndpointStream s = c.stream(alone)) {
        SheafException one = assertThrows(SheafException.class, s::next);
        assertEquals(ErrorCode.TIMED_OUT, one.code(), one.getMessage());
        assertTrue(one.getMessage().contains(r.urls.get(1)), one.getMessage());
        assertTrue(one.getMessage().contains("stallTimeout 2 s"), one.getMessage());
      }
    }
  }

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void aCallerHoldingABatchLongerThanTheStallTimeoutIsNoStall() throws Exception {
    try (Replicas r = replicas(1, false, List.of());
        SheafClient c =
            SheafClient.builder(r.urls.get(0))
                .allocator(root)
                .stallTimeout(java.time.Duration.ofSeconds(1))
                .build()) {
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

  @Test
  @Timeout(120) // a frozen replica must not hang the read
  void aParallelReadOfSeveralEndpointsSurvivesAFrozenReplica() throws Exception {
    assumeTrue(peers, "sheaf serve has no --peer: a Dataset listing replicas cannot be planned");
    try (Replicas r = replicas(2, true, List.of());
        SheafClient c = stallingClient(r.urls.get(0))) {
      Dataset ds = c.dataset(BIG.withPartitions(4));
      assertEquals(4, ds.endpoints().size());
      Table t = new Table();
      String frozen = null;
      try (DatasetReader reader = c.read(ds, 2)) {
        while (reader.next()) {
          t.add(reader.root());
          if (frozen == null && t.n >= 200_000) {
            frozen = c.target(ds.endpoints().get(reader.endpointIndex()));
            r.at(frozen).freeze();
          }
        }
      }
      t.assertWhole();
    }
  }

  @Test
  void whenEveryLocationFailsOneErrorNamesTheEndpointAndEachLocation() throws Exception {
    String dead = "grpc://127.0.0.1:" + TestServer.freePort();
    String alsoDead = dead;
    while (alsoDead.equals(dead)) {
      alsoDead = "grpc://127.0.0.1:" + TestServer.freePort();
    }
    try (Replicas r = replicas(1, false, List.of());
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(root).build()) {
      String live = r.urls.get(0);
      Endpoint e = endpoint(c, List.of(live, dead, alsoDead));
      Table t = new Table();
      SheafException error;
      try (EndpointStream s = c.stream(e)) {
        error =
            assertThrows(
                SheafException.class,
                () -> {
                  while (s.next()) {
                    t.add(s.root());
                    if (s.batchesRead() == 2) {
                      r.at(live).kill();
                    }
                  }
                });
        assertEquals(2, s.failovers());
      }
      assertTrue(t.n > 0 && t.n < ROWS, t.n + " rows");
      t.assertPrefix();
      String m = error.getMessage();
      assertEquals(ErrorCode.UNAVAILABLE, error.code(), m);
      assertTrue(m.startsWith("DoGet endpoint 0"), m);
      assertTrue(m.contains(": every location failed: "), m);
      assertTrue(
          m.indexOf(live) >= 0
              && m.indexOf(live) < m.indexOf(dead)
              && m.indexOf(dead) < m.indexOf(alsoDead),
          "each location, in order: " + m);
      assertTrue(m.contains("mid-stream, at row "), m);
      assertEquals(2, error.getSuppressed().length, Arrays.toString(error.getSuppressed()));
    }
  }

  @Test
  void aSheafErrorIsRaisedNotRetriedAtTheNextLocation() throws Exception {
    // The first replica ends a stream whose client takes no data for 1 s (DEADLINE_EXCEEDED, in
    // the middle of the stream): the server's own error, not a failed replica.
    List<List<String>> args =
        List.of(List.of("--stall-timeout", "1s", "--cache-mib", "0"), List.of());
    try (Replicas r = replicas(2, false, args);
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(root).build()) {
      TestServer next = r.servers.get(1);
      Endpoint e = endpoint(c, r.urls);
      Table t = new Table();
      try (EndpointStream s = c.stream(e)) {
        SheafException error =
            assertThrows(
                SheafException.class,
                () -> {
                  while (s.next()) {
                    t.add(s.root());
                    if (s.batchesRead() == 2) {
                      Thread.sleep(3_000);
                    }
                  }
                });
        assertEquals(ErrorCode.TIMED_OUT, error.code(), error.getMessage());
        assertTrue(error.getMessage().contains(r.urls.get(0)), error.getMessage());
        assertEquals(0, s.failovers());
        assertEquals(r.urls.get(0), s.target());
      }
      t.assertPrefix();
      assertTrue(t.n > 0 && t.n < ROWS, t.n + " rows");

      // A ticket the server refuses, before any batch: raised too.
      Endpoint bad = new Endpoint(0, "not a ticket".getBytes(), r.urls);
      SheafException refused =
          assertThrows(
              SheafException.class,
              () -> {
                try (EndpointStream s = c.stream(bad)) {
                  s.next();
                }
              });
      assertNotEquals(ErrorCode.UNAVAILABLE, refused.code(), refused.getMessage());
      assertTrue(refused.getMessage().contains(r.urls.get(0)), refused.getMessage());
      assertEquals(0, refused.getSuppressed().length);
      assertFalse(
          next.logLines().stream().anyMatch(l -> l.contains("DoGet")),
          "the next location must not be asked");
    }
  }

  /**
   * Replicas may cut the same rows into other batches (their scans are planned for their own
   * cores): the failover then falls inside a batch of the next location, which is sliced. Here the
   * next location is given a ticket of the same rows in row groups of another size (through the
   * stream's opener, over real connections), so the cut cannot fall on one of its batch bounds.
   */
  @Test
  void aCutInsideABatchOfTheNextLocationIsSliced() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(root).build();
        FlightClient a = flight(r.urls.get(0));
        FlightClient b = flight(r.urls.get(1))) {
      Ticket ticket = new Ticket(c.dataset(BIG).endpoints().get(0).ticket());
      Ticket recut =
          new Ticket(
              c.dataset(DatasetRequest.of("replica/recut").withPath("big.parquet"))
                  .endpoints()
                  .get(0)
                  .ticket());
      // Where the next location's batches start.
      Set<Long> bounds = new HashSet<>();
      try (FlightStream s = b.getStream(recut)) {
        long at = 0;
        while (s.next()) {
          bounds.add(at);
          at += s.getRoot().getRowCount();
        }
        assertEquals(ROWS, at);
      }
      Table t = new Table();
      long cut = -1;
      try (EndpointStream s =
          new EndpointStream(
              "endpoint 0",
              r.urls,
              u -> u.equals(r.urls.get(0)) ? a.getStream(ticket) : b.getStream(recut))) {
        while (s.next()) {
          if (cut < 0 && s.failovers() == 1) {
            cut = t.n;
          }
          t.add(s.root());
          if (s.batchesRead() == 2) {
            r.servers.get(0).kill();
          }
        }
        assertEquals(1, s.failovers());
        assertEquals(r.urls.get(1), s.target());
      }
      assertTrue(cut > 0, "failed over after " + cut + " rows");
      assertFalse(bounds.contains(cut), "the cut at row " + cut + " falls on a batch bound");
      t.assertWhole();
    }
  }

  @Test
  void aNextLocationWithFewerRowsIsAnErrorNotALoss() throws Exception {
    try (Replicas r = replicas(2, false, List.of());
        SheafClient c = SheafClient.builder(r.urls.get(0)).allocator(root).build();
        FlightClient a = flight(r.urls.get(0));
        FlightClient b = flight(r.urls.get(1))) {
      Ticket ticket = new Ticket(c.dataset(BIG).endpoints().get(0).ticket());
      Ticket fewer = new Ticket(c.dataset(BIG.withLimit(1000L)).endpoints().get(0).ticket());
      Table t = new Table();
      try (EndpointStream s =
          new EndpointStream(
              "endpoint 0",
              r.urls,
              u -> u.equals(r.urls.get(0)) ? a.getStream(ticket) : b.getStream(fewer))) {
        SheafException e =
            assertThrows(
                SheafException.class,
                () -> {
                  while (s.next()) {
                    t.add(s.root());
                    if (s.batchesRead() == 2) {
                      r.servers.get(0).kill();
                    }
                  }
                });
        assertTrue(e.getMessage().contains("the replicas disagree"), e.getMessage());
        assertEquals(ErrorCode.INTERNAL, e.code());
        assertEquals(1, s.failovers());
      }
      t.assertPrefix();
    }
  }

  private FlightClient flight(String url) throws Exception {
    return FlightClient.builder(root, new Location(url)).build();
  }

  @Test
  void transportFailuresAreToldFromSheafErrors() {
    // What Arrow Java raises when the replica's process is killed in the middle of a stream.
    assertTrue(
        EndpointStream.isTransportFailure(
            CallStatus.UNAVAILABLE
                .withDescription("io exception")
                .withCause(new SocketException("Connection reset"))
                .toRuntimeException()));
    assertTrue(transport(CallStatus.UNAVAILABLE, "Network closed for unknown reason"));
    assertTrue(transport(CallStatus.UNAVAILABLE, "Connection refused: /127.0.0.1:1"));
    // A reset stream or abrupt GOAWAY (from a proxy between client and replica), a stream closed
    // in the middle of a message.
    assertTrue(
        transport(
            CallStatus.INTERNAL, "RST_STREAM closed stream. HTTP/2 error code: INTERNAL_ERROR"));
    assertTrue(transport(CallStatus.INTERNAL, "Encountered end-of-stream mid-frame"));
    assertTrue(
        transport(CallStatus.INTERNAL, "Received unexpected EOS on DATA frame from server."));
    assertTrue(transport(CallStatus.INTERNAL, "Abrupt GOAWAY closed sent stream."));
    assertTrue(transport(CallStatus.UNKNOWN, "channel closed"));
    assertTrue(
        EndpointStream.isTransportFailure(
            CallStatus.INTERNAL.withCause(new IOException("broken pipe")).toRuntimeException()));
    // The server's own errors (they carry Sheaf's ErrorInfo), and statuses that are no failure of
    // the replica.
    assertFalse(transport(CallStatus.NOT_FOUND, "no such package"));
    assertFalse(transport(CallStatus.INVALID_ARGUMENT, "bad filter"));
    assertFalse(transport(CallStatus.UNAUTHORIZED, "no grant"));
    assertFalse(transport(CallStatus.TIMED_OUT, "the client took no data for 60s"));
    assertFalse(transport(CallStatus.CANCELLED, "closed by the client before the end"));
    assertFalse(transport(CallStatus.RESOURCE_EXHAUSTED, "over the limit"));
    assertFalse(transport(CallStatus.INTERNAL, "a bug"));
    assertFalse(
        EndpointStream.isTransportFailure(
            sheafError(CallStatus.INTERNAL, "RST_STREAM closed stream", "INTERNAL")));
    assertFalse(
        EndpointStream.isTransportFailure(
            sheafError(CallStatus.INTERNAL, "data does not match its hash", "INTEGRITY")));
    assertNull(SheafException.from("x", CallStatus.INTERNAL.toRuntimeException()).reason());
  }

  private static boolean transport(CallStatus status, String description) {
    return EndpointStream.isTransportFailure(
        status.withDescription(description).toRuntimeException());
  }

  /** A status as a Sheaf server sends it: with its ErrorInfo in the status details. */
  private static FlightRuntimeException sheafError(
      CallStatus status, String message, String reason) {
    com.google.rpc.Status details =
        com.google.rpc.Status.newBuilder()
            .setCode(13)
            .setMessage(message)
            .addDetails(
                Any.pack(
                    ErrorInfo.newBuilder()
                        .setDomain(SheafException.DOMAIN)
                        .setReason(reason)
                        .build()))
            .build();
    ErrorFlightMetadata trailers = new ErrorFlightMetadata();
    trailers.insert(SheafException.STATUS_DETAILS, details.toByteArray());
    return status.withDescription(message).withMetadata(trailers).toRuntimeException();
  }
}
