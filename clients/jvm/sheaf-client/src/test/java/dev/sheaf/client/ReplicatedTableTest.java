package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SharedServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * What the replica tests ({@link FailoverTest}: killed replicas; {@link FrozenReplicaTest}: frozen
 * ones) share: a local registry holding a 3,000,000-row table (made once per test run), {@code
 * sheaf serve} replicas over it on fixed ports, the rows a read hands out, and a leak check. With a
 * binary whose {@code serve} takes {@code --peer}, each replica gets {@code --advertise} itself and
 * {@code --peer} the others, and the endpoints are the server's own (every replica listed); with an
 * older binary, endpoints listing every replica are built by hand from the server's ticket (the
 * client API takes any locations).
 */
@ExtendWith(ReplicatedTableTest.RegistryExtension.class)
abstract class ReplicatedTableTest {
  static final long ROWS = 3_000_000;
  static final DatasetRequest BIG = DatasetRequest.of("replica/big").withPath("big.parquet");

  static Registry shared;

  RootAllocator root;

  /** The test registry, made on first use and deleted when the test run ends. */
  static final class Registry implements AutoCloseable {
    final Path work;
    final Path registry;
    final boolean peers;
    final Table reference;

    Registry() throws Exception {
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
        Table t = new Table(null);
        try (DatasetReader r = c.read(c.dataset(BIG), 1)) {
          while (r.next()) {
            t.add(r.root());
          }
        }
        t.assertWhole();
        reference = t;
      }
    }

    @Override
    public void close() throws Exception {
      try (Stream<Path> files = Files.walk(work)) {
        files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
      }
    }
  }

  /** Injects the {@link Registry} shared by the replica tests of a test run. */
  static final class RegistryExtension extends SharedServerExtension<Registry> {
    RegistryExtension() {
      super(Registry.class, Registry::new);
    }
  }

  @BeforeAll
  static void registry(Registry r) {
    shared = r;
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

  /** The {@code id} and {@code x} columns of rows read, in the order handed out. */
  static final class Table {
    final long[] ids = new long[(int) ROWS];
    final double[] xs = new double[(int) ROWS];
    private final Table reference;
    int n;

    /** A table compared with an undisturbed read. */
    Table() {
      this(shared.reference);
    }

    private Table(Table reference) {
      this.reference = reference;
    }

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
      assertPrefix();
      if (reference != null) {
        assertArrayEquals(reference.xs, xs, "column x differs from an undisturbed read");
      }
    }

    /** The rows handed out are the table's first rows, in order. */
    void assertPrefix() {
      for (int i = 0; i < n; i++) {
        if (ids[i] != i) {
          throw new AssertionError(
              "row " + i + " has id " + ids[i] + ": rows lost, repeated or out of order");
        }
      }
    }
  }

  /** Replicas over the test registry; closing stops those still running. */
  static final class Replicas implements AutoCloseable {
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

  /**
   * {@code n} replicas on fixed ports; with a binary that has {@code --peer} and {@code
   * listEachOther}, each advertises itself and names the others, and this waits until an endpoint
   * lists all of them.
   *
   * @param extra each replica's further arguments, or empty for none
   */
  static Replicas replicas(int n, boolean listEachOther, List<List<String>> extra)
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
        if (shared.peers && listEachOther) {
          args.addAll(List.of("--advertise", r.urls.get(i)));
          for (int j = 0; j < n; j++) {
            if (j != i) {
              args.addAll(List.of("--peer", r.urls.get(j)));
            }
          }
        }
        r.servers.add(TestServer.replica(shared.registry, ports.get(i), args));
      }
      if (shared.peers && listEachOther) {
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

  static List<String> normalized(List<String> urls) {
    return urls.stream().map(u -> u.replaceAll("/+$", "")).collect(Collectors.toList());
  }

  /**
   * The table's single endpoint, listing every replica: the server's own when the replicas list
   * each other (every replica once, in the server's order), else the server's ticket with the
   * replicas as locations, in the order given.
   */
  static Endpoint endpoint(SheafClient c, List<String> locations) {
    List<Endpoint> all = c.dataset(BIG).endpoints();
    assertEquals(1, all.size(), "the server's default plans the table as one endpoint");
    Endpoint e = all.get(0);
    if (!e.locations().isEmpty()) {
      assertTrue(shared.peers, "an older server listed " + e.locations());
      List<String> listed = normalized(e.locations());
      assertEquals(locations.size(), listed.size(), listed.toString());
      assertEquals(new HashSet<>(locations), new HashSet<>(listed));
      return e;
    }
    return new Endpoint(
        e.index(), e.ticket(), locations, e.firstRow().orElse(-1), e.tableRows().orElse(-1));
  }
}
