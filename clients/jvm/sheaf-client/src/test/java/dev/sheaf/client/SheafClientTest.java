package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.util.TransferPair;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import sheaf.v1.Sheaf.ErrorReason;

/** The Java client on its own, against the real server. */
@ExtendWith(SheafServerExtension.class)
class SheafClientTest {
  private static final DatasetRequest TYPES =
      DatasetRequest.of("test/types").withPath("tables/types.parquet");
  private static final int ROWS = 20_000;

  private static TestServer server;
  private BufferAllocator root;
  private SheafClient client;

  @BeforeAll
  static void start(TestServer s) {
    server = s;
  }

  @AfterAll
  static void done() {
    server = null;
  }

  @BeforeEach
  void connect() {
    root = new RootAllocator();
    client = SheafClient.builder(server.url()).allocator(root).build();
  }

  @AfterEach
  void closeAndCheckLeaks() {
    client.close();
    assertEquals(
        0, root.getAllocatedMemory(), "Arrow memory still allocated after the client closed");
    root.close(); // throws if any child allocator or buffer is still open
  }

  @Test
  void listsPackagesWithTheirLatestRevision() {
    List<PackageInfo> all = client.listPackages();
    List<String> names = all.stream().map(PackageInfo::name).collect(Collectors.toList());
    assertTrue(names.containsAll(List.of("demo/weather", "test/types")), names.toString());
    PackageInfo types =
        all.stream().filter(p -> p.name().equals("test/types")).findFirst().orElseThrow();
    assertEquals(server.latestRevision, types.latestTopHash());
    assertEquals(
        List.of("test/types"),
        client.listPackages("test/*").stream().map(PackageInfo::name).collect(Collectors.toList()));
  }

  @Test
  void listsRevisionsAndResolvesReferences() {
    List<RevisionInfo> revisions = client.listRevisions("test/types");
    assertEquals(2, revisions.size());
    assertEquals(server.latestRevision, revisions.get(0).topHash());
    assertTrue(revisions.get(0).tags().contains("latest"), revisions.toString());
    assertTrue(revisions.get(1).tags().contains("v1"), revisions.toString());
    assertEquals(server.firstRevision, client.resolve("test/types:v1").topHash());
    assertEquals(server.latestRevision, client.resolve("test/types").topHash());
    assertEquals(
        server.firstRevision,
        client.resolve("test/types@" + server.firstRevision.substring(0, 10)).topHash());
    SheafException e = assertThrows(SheafException.class, () -> client.resolve("test/nothing"));
    assertEquals(ErrorCode.NOT_FOUND, e.code());
    assertTrue(e.getMessage().contains("test/nothing"), e.getMessage());
  }

  @Test
  void listsTablesWithPinnedUris() {
    List<TableInfo> tables = client.listTables("test/types:v1");
    TableInfo t =
        tables.stream()
            .filter(x -> x.path().equals("tables/types.parquet"))
            .findFirst()
            .orElseThrow();
    assertEquals("parquet", t.format());
    assertTrue(t.uri().contains("@" + server.firstRevision), t.uri());
    assertTrue(
        tables.stream().anyMatch(x -> x.path().isEmpty() && x.format().equals("manifest")),
        tables.toString());
  }

  @Test
  void plansAPinnedDataset() {
    Dataset ds = client.dataset(TYPES.withPartitions(4));
    assertEquals(4, ds.endpoints().size());
    assertEquals(ROWS, ds.totalRows().orElseThrow());
    assertEquals("test/types", ds.packageName());
    assertEquals("tables/types.parquet", ds.path());
    assertEquals(server.latestRevision, ds.topHash());
    assertTrue(ds.pinnedUri().contains("@" + server.latestRevision), ds.pinnedUri());
    assertEquals("id", ds.schema().getFields().get(0).getName());
    assertTrue(ds.endpoints().stream().allMatch(e -> e.locations().isEmpty()));
    Dataset old = client.dataset("sheaf://test/types:v1/tables/types.parquet");
    assertEquals(server.firstRevision, old.topHash());
    assertEquals(ds.schema(), client.schema(TYPES.withPartitions(4)));
  }

  @Test
  void readsEndpointsOneByOne() {
    Dataset ds = client.dataset(TYPES.withColumns(List.of("id", "station")).withPartitions(3));
    List<Long> ids = new ArrayList<>();
    for (Endpoint e : ds.endpoints()) {
      try (EndpointStream s = client.stream(e)) {
        assertEquals(ds.schema(), s.schema());
        while (s.next()) {
          VectorSchemaRoot r = s.root();
          assertEquals(2, r.getFieldVectors().size());
          BigIntVector id = (BigIntVector) r.getVector("id");
          for (int i = 0; i < r.getRowCount(); i++) {
            ids.add(id.get(i));
          }
        }
        assertTrue(s.finished());
      }
    }
    assertInOrder(ids, ROWS);
  }

  @Test
  void readsEndpointsInParallelInEndpointOrder() {
    Dataset ds = client.dataset(TYPES.withColumns(List.of("id")).withPartitions(8));
    assertEquals(8, ds.endpoints().size());
    List<Long> ids = new ArrayList<>();
    int lastEndpoint = 0;
    try (DatasetReader r = client.read(ds, 3)) {
      while (r.next()) {
        assertTrue(r.endpointIndex() >= lastEndpoint);
        lastEndpoint = r.endpointIndex();
        BigIntVector id = (BigIntVector) r.root().getVector(0);
        for (int i = 0; i < r.root().getRowCount(); i++) {
          ids.add(id.get(i));
        }
      }
      assertEquals(ROWS, r.rowsRead());
    }
    assertInOrder(ids, ROWS);
  }

  @Test
  void columnsAndFiltersAreAppliedByTheServer() {
    // Computed from the data generator: station cycles through 7 values, null every 53rd row.
    String filter = "station = 'o''hare' AND \"odd \"\"name\"\", with comma\" >= 5 AND f64 > 0.5";
    Dataset ds = client.dataset(TYPES.withColumns(List.of("f64", "station")).withFilter(filter));
    assertEquals(
        List.of("f64", "station"),
        ds.schema().getFields().stream().map(Field::getName).collect(Collectors.toList()));
    long rows = 0;
    try (DatasetReader r = client.read(ds, 2)) {
      while (r.next()) {
        Float8Vector f64 = (Float8Vector) r.root().getVector("f64");
        VarCharVector station = (VarCharVector) r.root().getVector("station");
        for (int i = 0; i < r.root().getRowCount(); i++) {
          assertEquals(
              "o'hare", new String(station.get(i), java.nio.charset.StandardCharsets.UTF_8));
          assertTrue(Double.isNaN(f64.get(i)) || f64.get(i) > 0.5, "f64 = " + f64.get(i));
          rows++;
        }
      }
    }
    assertEquals(expectedOHareRows(), rows);
  }

  /** The rows matching the filter above, counted from a full read on the client. */
  private long expectedOHareRows() {
    // A column name with a comma and quotes travels as it is in a typed request.
    Dataset all = client.dataset(TYPES.withColumns("f64", "station", "odd \"name\", with comma"));
    assertEquals(3, all.schema().getFields().size());
    long n = 0;
    try (DatasetReader r = client.read(all, 1)) {
      while (r.next()) {
        Float8Vector f64 = (Float8Vector) r.root().getVector("f64");
        VarCharVector station = (VarCharVector) r.root().getVector("station");
        org.apache.arrow.vector.IntVector odd =
            (org.apache.arrow.vector.IntVector) r.root().getVector("odd \"name\", with comma");
        for (int i = 0; i < r.root().getRowCount(); i++) {
          boolean ok =
              !station.isNull(i)
                  && new String(station.get(i), java.nio.charset.StandardCharsets.UTF_8)
                      .equals("o'hare")
                  && odd.get(i) >= 5
                  && !f64.isNull(i)
                  && (Double.isNaN(f64.get(i)) || f64.get(i) > 0.5);
          n += ok ? 1 : 0;
        }
      }
    }
    assertTrue(n > 100, "too few rows to test with: " + n);
    return n;
  }

  @Test
  void seededSamplesAreReproducible() {
    DatasetRequest uri =
        TYPES.withColumns(List.of("id")).withSample(0.1).withSeed(7).withPartitions(4);
    List<Long> a = readIds(client.dataset(uri));
    List<Long> b = readIds(client.dataset(uri.withPartitions(2)));
    assertEquals(a, b, "the same seed must pick the same rows, whatever the partitioning");
    assertTrue(a.size() > 1_500 && a.size() < 2_500, "about 10% of 20000, not " + a.size());
    assertNotEquals(a, readIds(client.dataset(uri.withSeed(8))));
    assertEquals(
        100,
        readIds(client.dataset(TYPES.withColumns(List.of("id")).withSampleRows(100L).withSeed(3)))
            .size());
  }

  @Test
  void limitsPlanOneEndpoint() {
    Dataset ds = client.dataset(TYPES.withColumns(List.of("id")).withLimit(7L).withPartitions(4));
    assertEquals(1, ds.endpoints().size());
    assertEquals(List.of(0L, 1L, 2L, 3L, 4L, 5L, 6L), readIds(ds));
  }

  @Test
  void errorsNameWhatIsWrong() {
    SheafException column =
        assertThrows(
            SheafException.class, () -> client.dataset(TYPES.withColumns(List.of("id", "nosuch"))));
    assertEquals(ErrorCode.INVALID_ARGUMENT, column.code());
    assertTrue(column.getMessage().contains("nosuch"), column.getMessage());
    SheafException filter =
        assertThrows(
            SheafException.class, () -> client.dataset(TYPES.withFilter("missing_col > 1")));
    assertEquals(ErrorCode.INVALID_ARGUMENT, filter.code());
    assertTrue(filter.getMessage().contains("missing_col"), filter.getMessage());
    SheafException path =
        assertThrows(
            SheafException.class, () -> client.dataset(TYPES.withPath("tables/nope.parquet")));
    assertEquals(ErrorCode.NOT_FOUND, path.code());
    assertTrue(path.getMessage().contains("tables/nope.parquet"), path.getMessage());
    SheafException tag =
        assertThrows(SheafException.class, () -> client.dataset(TYPES.withTag("nope")));
    assertEquals(ErrorCode.NOT_FOUND, tag.code());
    assertTrue(tag.getMessage().contains("nope"), tag.getMessage());
    // The client checks nothing: a malformed request is the server's to refuse.
    SheafException sample =
        assertThrows(SheafException.class, () -> client.dataset(TYPES.withSample(1.5)));
    assertEquals(ErrorCode.INVALID_ARGUMENT, sample.code());
    assertEquals(ErrorReason.INVALID_REQUEST, sample.reason());
    assertTrue(sample.getMessage().contains("sample"), sample.getMessage());
    SheafException codec =
        assertThrows(SheafException.class, () -> client.dataset(TYPES.withCompression("gzip")));
    assertEquals(ErrorReason.INVALID_REQUEST, codec.reason());
    assertEquals(ROWS, client.dataset(TYPES.withCompression("zstd")).totalRows().orElseThrow());
  }

  @Test
  void unreachableServerFailsFastWithItsAddress() throws Exception {
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort();
    }
    try (SheafClient dead =
        SheafClient.builder("grpc://127.0.0.1:" + port).allocator(root).build()) {
      SheafException e = assertThrows(SheafException.class, dead::listPackages);
      assertEquals(ErrorCode.UNAVAILABLE, e.code());
      assertTrue(e.getMessage().contains("127.0.0.1:" + port), e.getMessage());
    }
  }

  @Test
  void closingEarlyCancelsAndFreesEverything() {
    Dataset ds = client.dataset(TYPES.withPartitions(8));
    try (DatasetReader r = client.read(ds, 4)) {
      assertTrue(r.next()); // other endpoints are being read into their queues
    }
    try (EndpointStream s = client.stream(ds.endpoints().get(3))) {
      assertTrue(s.next());
    }
    // A stream abandoned before its first batch.
    client.stream(ds.endpoints().get(5)).close();
  }

  @Test
  void aBatchKeptOpenIsReportedAsALeak() {
    BufferAllocator own = new RootAllocator();
    SheafClient leaky = SheafClient.builder(server.url()).allocator(own).build();
    Dataset ds = leaky.dataset(TYPES.withColumns(List.of("id")).withLimit(10L));
    FieldVector kept;
    try (EndpointStream s = leaky.stream(ds.endpoints().get(0))) {
      assertTrue(s.next());
      TransferPair p = s.root().getVector(0).getTransferPair(leaky.allocator());
      p.transfer();
      kept = (FieldVector) p.getTo();
    }
    IllegalStateException e = assertThrows(IllegalStateException.class, leaky::close);
    assertTrue(e.getMessage().toLowerCase().contains("leak"), e.getMessage());
    // The leaked allocator is closed now and its memory accounted as lost: nothing to free.
    assertTrue(kept.getValueCount() > 0);
  }

  @Test
  void endpointsNamingAnotherServerAreReadThere() throws Exception {
    int mark = server.logMark();
    try (TestServer front = server.another(List.of("--advertise", server.url()))) {
      try (SheafClient viaFront = SheafClient.builder(front.url()).allocator(root).build()) {
        Dataset ds = viaFront.dataset(TYPES.withColumns(List.of("id")).withPartitions(2));
        assertEquals(List.of(server.url()), ds.endpoints().get(0).locations());
        assertEquals(server.url(), viaFront.target(ds.endpoints().get(0)));
        assertInOrder(readIds(viaFront, ds), ROWS);
        assertEquals(1, viaFront.otherConnections(), "one connection per location, kept");
      }
      assertFalse(
          front.logLines().stream().anyMatch(l -> l.contains("DoGet")),
          "the planning server must not serve the endpoints");
    }
    List<String> lines = server.logLinesSince(mark, l -> l.contains("DoGet"));
    assertEquals(
        2,
        lines.stream()
            .filter(l -> l.contains("DoGet finished") && l.contains("tables/types.parquet"))
            .count(),
        lines.toString());
  }

  @Test
  void anEndpointsLocationsAreTriedInOrder() throws Exception {
    int port = freePort();
    int other = freePort();
    while (other == port) {
      other = freePort();
    }
    String dead = "grpc://127.0.0.1:" + port;
    String alsoDead = "grpc://127.0.0.1:" + other;
    Dataset ds = client.dataset(TYPES.withColumns("id").withPartitions(2));
    List<Long> ids = new ArrayList<>();
    for (Endpoint e : ds.endpoints()) {
      Endpoint moved = new Endpoint(e.index(), e.ticket(), List.of(dead, server.url()));
      assertEquals(List.of(dead, server.url()), client.targets(moved));
      try (EndpointStream s = client.stream(moved)) {
        readInto(s, ids);
        assertEquals(server.url(), s.target(), "read from the second location");
      }
    }
    assertInOrder(ids, ROWS);
    assertEquals(1, client.otherConnections(), "the unreachable location's connection is kept");

    // Flight's "reuse this connection" location is this client's server.
    Endpoint first = ds.endpoints().get(0);
    Endpoint reuse = new Endpoint(0, first.ticket(), List.of("arrow-flight-reuse-connection://?"));
    assertEquals(List.of(server.url()), client.targets(reuse));
    List<Long> again = new ArrayList<>();
    try (EndpointStream s = client.stream(reuse)) {
      readInto(s, again);
    }
    assertEquals(ids.subList(0, again.size()), again);
    assertEquals(List.of(server.url()), client.targets(new Endpoint(0, first.ticket(), List.of())));

    // No location reachable: the last one's error, the others' suppressed.
    Endpoint nowhere = new Endpoint(0, first.ticket(), List.of(dead, alsoDead));
    SheafException e =
        assertThrows(
            SheafException.class,
            () -> {
              try (EndpointStream s = client.stream(nowhere)) {
                s.next();
              }
            });
    assertEquals(ErrorCode.UNAVAILABLE, e.code());
    assertTrue(e.getMessage().contains(alsoDead), e.getMessage());
    assertEquals(1, e.getSuppressed().length);
    assertTrue(e.getSuppressed()[0].getMessage().contains(dead), e.getSuppressed()[0].getMessage());
    assertEquals(2, client.otherConnections());
  }

  @Test
  void endpointMetadataGivesTheRowsCovered() {
    for (Dataset ds :
        List.of(
            client.dataset(TYPES.withPartitions(4)),
            client.dataset("sheaf://test/types/tables/types.parquet?partitions=4"))) {
      long next = 0;
      for (Endpoint e : ds.endpoints()) {
        assertEquals(next, e.firstRow().orElseThrow(), ds.requested());
        next += e.tableRows().orElseThrow();
      }
      assertEquals(ROWS, next, ds.requested());
      assertEquals("test/types", ds.metadata().getPackage());
    }
  }

  private static int freePort() throws Exception {
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  private static void readInto(EndpointStream s, List<Long> ids) {
    while (s.next()) {
      BigIntVector id = (BigIntVector) s.root().getVector("id");
      for (int i = 0; i < s.root().getRowCount(); i++) {
        ids.add(id.get(i));
      }
    }
  }

  private List<Long> readIds(Dataset ds) {
    return readIds(client, ds);
  }

  private static List<Long> readIds(SheafClient c, Dataset ds) {
    List<Long> ids = new ArrayList<>();
    try (DatasetReader r = c.read(ds, 2)) {
      while (r.next()) {
        BigIntVector id = (BigIntVector) r.root().getVector("id");
        for (int i = 0; i < r.root().getRowCount(); i++) {
          ids.add(id.get(i));
        }
      }
    }
    return ids;
  }

  private static void assertInOrder(List<Long> ids, int n) {
    assertEquals(n, ids.size());
    for (int i = 0; i < n; i++) {
      if (ids.get(i) != i) {
        throw new AssertionError(
            "row " + i + " has id " + ids.get(i) + ": endpoints out of order or rows missing");
      }
    }
  }
}
