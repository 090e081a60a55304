package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.FakeSheafServer;
import dev.sheaf.client.testing.FakeSheafServer.Mode;
import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.io.ByteArrayOutputStream;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.time.Duration;
import java.util.List;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * What the client checks itself: streams against their plan (a misbehaving server, {@link
 * FakeSheafServer}, and the real one), server URLs holding credentials, negative request counts,
 * the stall timeout option.
 */
@ExtendWith(SheafServerExtension.class)
class PlanChecksTest {
  private static final DatasetRequest FAKE = DatasetRequest.of("qa/fake").withPath("t.parquet");

  private RootAllocator root;

  @BeforeEach
  void allocator() {
    root = new RootAllocator();
  }

  @AfterEach
  void noLeak() {
    assertEquals(0, root.getAllocatedMemory(), "Arrow memory still allocated");
    root.close();
  }

  /** Reads every endpoint of the fake table with a DatasetReader; returns the ids handed out. */
  private long[] readAll(SheafClient c, Dataset ds) {
    return readAll(c, ds, "id");
  }

  /** Reads every endpoint with a DatasetReader; returns the values of an int64 column. */
  private long[] readAll(SheafClient c, Dataset ds, String column) {
    long[] ids = new long[4 * FakeSheafServer.ENDPOINT_ROWS];
    int n = 0;
    try (DatasetReader r = c.read(ds, 2)) {
      while (r.next()) {
        BigIntVector id = (BigIntVector) r.root().getVector(column);
        for (int i = 0; i < r.root().getRowCount(); i++) {
          ids[n++] = id.get(i);
        }
      }
    }
    return java.util.Arrays.copyOf(ids, n);
  }

  @Test
  void theFakeServerServesItsPlanWhenItBehaves() throws Exception {
    try (FakeSheafServer fake = new FakeSheafServer(Mode.OK);
        SheafClient c = SheafClient.builder(fake.url()).allocator(root).build()) {
      Dataset ds = c.dataset(FAKE);
      assertEquals(2, ds.endpoints().size());
      for (Endpoint e : ds.endpoints()) {
        assertEquals(FakeSheafServer.ENDPOINT_ROWS, e.rows().getAsLong(), e.toString());
        assertEquals(ds.schema(), e.schema());
        assertEquals(ds.pinnedUri(), e.dataset());
      }
      long[] ids = readAll(c, ds);
      assertEquals(2000, ids.length);
      for (int i = 0; i < ids.length; i++) {
        assertEquals(i, ids[i]);
      }
      // A text URI is planned and checked the same way (JSON metadata).
      assertEquals(2000, readAll(c, c.dataset("qa/fake/t.parquet")).length);
    }
  }

  @Test
  void aStreamEndingEarlyIsDataLossNamingDatasetEndpointAndRows() throws Exception {
    try (FakeSheafServer fake = new FakeSheafServer(Mode.TRUNCATE);
        SheafClient c = SheafClient.builder(fake.url()).allocator(root).build()) {
      Dataset ds = c.dataset(FAKE);
      // One endpoint's stream.
      long rows = 0;
      SheafException e;
      try (EndpointStream s = c.stream(ds.endpoints().get(1))) {
        e =
            assertThrows(
                SheafException.class,
                () -> {
                  while (s.next()) {
                    // read on
                  }
                });
        rows = s.rowsRead();
      }
      assertEquals(400, rows, "the rows sent were handed out, the end was refused");
      String m = e.getMessage();
      assertEquals(ErrorCode.DATA_LOSS, e.code(), m);
      assertTrue(m.contains("endpoint 1 of " + ds.pinnedUri()), m);
      assertTrue(m.contains(fake.url()), m);
      assertTrue(m.contains("planned 1000, received 400"), m);
      // The whole dataset: the reader fails too, with the same error.
      SheafException viaReader = assertThrows(SheafException.class, () -> readAll(c, ds));
      assertEquals(ErrorCode.DATA_LOSS, viaReader.code());
      assertTrue(viaReader.getMessage().contains("planned 1000, received 400"));
    }
  }

  @Test
  void aStreamHoldingMoreRowsIsDataLossBeforeTheExtraRowsAreHandedOut() throws Exception {
    try (FakeSheafServer fake = new FakeSheafServer(Mode.EXTRA);
        SheafClient c = SheafClient.builder(fake.url()).allocator(root).build()) {
      Dataset ds = c.dataset(FAKE);
      try (EndpointStream s = c.stream(ds.endpoints().get(1))) {
        SheafException e =
            assertThrows(
                SheafException.class,
                () -> {
                  while (s.next()) {
                    // read on
                  }
                });
        assertEquals(1000, s.rowsRead(), "no row past the plan handed out");
        assertEquals(ErrorCode.DATA_LOSS, e.code());
        assertTrue(
            e.getMessage().contains("holds more than the 1000 rows planned for the endpoint"),
            e.getMessage());
        assertTrue(e.getMessage().contains("endpoint 1 of " + ds.pinnedUri()), e.getMessage());
      }
      assertThrows(SheafException.class, () -> readAll(c, ds));
    }
  }

  @Test
  void aStreamOfAnotherSchemaIsRefusedWhenItOpens() throws Exception {
    try (FakeSheafServer fake = new FakeSheafServer(Mode.TYPE);
        SheafClient c = SheafClient.builder(fake.url()).allocator(root).build()) {
      Dataset ds = c.dataset(FAKE);
      try (EndpointStream s = c.stream(ds.endpoints().get(1))) {
        SheafException e = assertThrows(SheafException.class, s::next);
        assertEquals(0, s.rowsRead());
        String m = e.getMessage();
        assertEquals(ErrorCode.DATA_LOSS, e.code(), m);
        assertTrue(m.contains("endpoint 1 of " + ds.pinnedUri()), m);
        assertTrue(
            m.contains(
                "the stream's schema is not the dataset's: column \"id\" is Int(32, true) instead"
                    + " of Int(64, true)"),
            m);
      }
      SheafException viaReader = assertThrows(SheafException.class, () -> readAll(c, ds));
      assertTrue(viaReader.getMessage().contains("is Int(32, true) instead of Int(64, true)"));
    }
    try (FakeSheafServer fake = new FakeSheafServer(Mode.SWAP);
        SheafClient c = SheafClient.builder(fake.url()).allocator(root).build()) {
      Dataset ds = c.dataset(FAKE);
      try (EndpointStream s = c.stream(ds.endpoints().get(1))) {
        SheafException e = assertThrows(SheafException.class, s::schema);
        assertTrue(e.getMessage().contains("columns [x, id] instead of [id, x]"), e.getMessage());
      }
    }
  }

  @Test
  void schemaDifferencesAreNamed() {
    Schema planned =
        new Schema(
            List.of(
                Field.nullable("a", new ArrowType.Int(64, true)),
                Field.nullable("b", ArrowType.Utf8.INSTANCE)));
    assertNull(EndpointStream.schemaDifference(planned, planned));
    assertEquals(
        "columns [a] instead of [a, b]",
        EndpointStream.schemaDifference(
            planned, new Schema(List.of(Field.nullable("a", new ArrowType.Int(64, true))))));
    assertEquals(
        "column \"b\" is not nullable, unlike the plan's",
        EndpointStream.schemaDifference(
            planned,
            new Schema(
                List.of(
                    Field.nullable("a", new ArrowType.Int(64, true)),
                    Field.notNullable("b", ArrowType.Utf8.INSTANCE)))));
  }

  @Test
  void anEndpointWithoutRowsIsNotCheckedForItsCount() throws Exception {
    // A filter: the server states no rows, so a stream shorter than its table rows is no error.
    try (FakeSheafServer fake = new FakeSheafServer(Mode.TRUNCATE);
        SheafClient c = SheafClient.builder(fake.url()).allocator(root).build()) {
      for (Dataset ds :
          List.of(
              c.dataset(FAKE.withFilter("id >= 0")),
              c.dataset("qa/fake/t.parquet?filter=id%20%3E%3D%200"))) {
        Endpoint e = ds.endpoints().get(1);
        assertFalse(e.rows().isPresent(), e.toString());
        assertEquals(FakeSheafServer.ENDPOINT_ROWS, e.tableRows().getAsLong());
        try (EndpointStream s = c.stream(e)) {
          while (s.next()) {
            // read on
          }
          assertEquals(400, s.rowsRead());
          assertTrue(s.finished());
        }
        assertEquals(1400, readAll(c, ds).length);
      }
      // Without the filter the server states the rows, and the same stream is refused.
      Endpoint stated = c.dataset(FAKE).endpoints().get(1);
      assertEquals(FakeSheafServer.ENDPOINT_ROWS, stated.rows().getAsLong());
      try (EndpointStream s = c.stream(stated)) {
        SheafException e =
            assertThrows(
                SheafException.class,
                () -> {
                  while (s.next()) {
                    // read on
                  }
                });
        assertEquals(ErrorCode.DATA_LOSS, e.code(), e.getMessage());
      }
    }
  }

  @Test
  void theRealServersPlansAreExactAndItsStreamsPassTheChecks(TestServer server) throws Exception {
    DatasetRequest types = DatasetRequest.of("test/types").withPath("tables/types.parquet");
    try (SheafClient c = SheafClient.builder(server.url()).allocator(root).build()) {
      Dataset ds = c.dataset(types.withPartitions(4).withColumns("id"));
      long sum = 0;
      for (Endpoint e : ds.endpoints()) {
        assertTrue(e.rows().isPresent(), e.toString());
        sum += e.rows().getAsLong();
      }
      assertEquals(ds.totalRows().getAsLong(), sum);
      long rows = 0;
      try (DatasetReader r = c.read(ds, 2)) {
        while (r.next()) {
          rows += r.root().getRowCount();
        }
      }
      assertEquals(sum, rows);
      // A filter: the rows are known only by reading.
      Dataset filtered = c.dataset(types.withFilter("id < 100").withPartitions(2));
      filtered.endpoints().forEach(e -> assertFalse(e.rows().isPresent()));
      Dataset text = c.dataset(filtered.pinnedUri());
      text.endpoints().forEach(e -> assertFalse(e.rows().isPresent()));
      try (DatasetReader r = c.read(filtered, 2)) {
        while (r.next()) {
          // checked against the schema only
        }
      }
      // A rows selection over several endpoints: the server states each one's selected rows.
      Dataset selected =
          c.dataset("test/types/tables/types.parquet?columns=id&rows=0:100,5000:5100&partitions=4");
      long stated = 0;
      for (Endpoint e : selected.endpoints()) {
        assertTrue(e.rows().isPresent(), e.toString());
        stated += e.rows().getAsLong();
      }
      assertEquals(200, stated);
      assertEquals(200, readAll(c, selected, "id").length);
      // A limit, one endpoint: exact.
      Dataset limited = c.dataset(types.withLimit(10L));
      assertEquals(10, limited.endpoints().get(0).rows().getAsLong());
      try (EndpointStream s = c.stream(limited.endpoints().get(0))) {
        while (s.next()) {
          // read on
        }
        assertEquals(10, s.rowsRead());
      }
      // The plan travels with a serialized endpoint (to a Spark executor).
      Endpoint e = ds.endpoints().get(1);
      ByteArrayOutputStream bytes = new ByteArrayOutputStream();
      try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
        out.writeObject(e);
      }
      Endpoint back;
      try (ObjectInputStream in =
          new ObjectInputStream(new java.io.ByteArrayInputStream(bytes.toByteArray()))) {
        back = (Endpoint) in.readObject();
      }
      assertEquals(e, back);
      assertEquals(ds.schema(), back.schema());
      assertEquals(e.rows(), back.rows());
    }
  }

  @Test
  void aServerUrlWithCredentialsIsRefusedWithoutRepeatingThem() {
    for (String url :
        List.of(
            "grpc://alice:UrlPassw0rd@127.0.0.1:47410",
            "grpc+tls://alice:UrlPassw0rd@sheaf.example.com:443",
            "grpc://alice:UrlPassw0rd@127.0.0.1",
            "alice:UrlPassw0rd@127.0.0.1:1",
            "grpc://sheaf_SECRETTOKENxyz@127.0.0.1:47410/")) {
      SheafException e = assertThrows(SheafException.class, () -> SheafClient.connect(url), url);
      String m = e.getMessage();
      assertEquals(ErrorCode.CLIENT, e.code(), m);
      assertFalse(m.contains("UrlPassw0rd") || m.contains("SECRETTOKEN"), m);
      assertFalse(m.contains("alice"), m);
      assertTrue(m.contains("username(...) and password(...)") && m.contains("token(...)"), m);
      assertTrue(m.contains("...@"), m);
      // With a login given as options too: the URL is refused before any call.
      SheafException withLogin =
          assertThrows(
              SheafException.class,
              () -> SheafClient.builder(url).username("alice").password("S3cretPass!").build());
      assertFalse(withLogin.getMessage().contains("UrlPassw0rd"), withLogin.getMessage());
      assertFalse(withLogin.getMessage().contains("S3cretPass"), withLogin.getMessage());
    }
  }

  @Test
  void negativeCountsAreRefusedNotSentAsHugeUnsignedValues() {
    DatasetRequest r = DatasetRequest.of("qa/big").withPath("big.parquet");
    IllegalArgumentException limit =
        assertThrows(IllegalArgumentException.class, () -> r.withLimit(-1L));
    assertTrue(limit.getMessage().contains("limit") && limit.getMessage().contains("-1"));
    IllegalArgumentException sample =
        assertThrows(IllegalArgumentException.class, () -> r.withSampleRows(-5L));
    assertTrue(sample.getMessage().contains("sampleRows") && sample.getMessage().contains("-5"));
    IllegalArgumentException parts =
        assertThrows(IllegalArgumentException.class, () -> r.withPartitions(-1));
    assertTrue(parts.getMessage().contains("partitions") && parts.getMessage().contains("-1"));
    // Zero and null stay valid; the seed is unsigned by design (negative seeds are distinct).
    assertEquals(0L, r.withLimit(0L).limit());
    assertEquals(0, r.withPartitions(0).partitions());
    assertNull(r.withLimit(5L).withLimit(null).limit());
    assertEquals(-1L, r.withSeed(-1L).seed());
  }

  @Test
  void theStallTimeoutAndKeepaliveMustBePositiveOrNull() {
    SheafClient.Builder b = SheafClient.builder("grpc://127.0.0.1:1");
    assertThrows(IllegalArgumentException.class, () -> b.stallTimeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> b.stallTimeout(Duration.ofSeconds(-1)));
    b.stallTimeout(null).stallTimeout(Duration.ofMillis(1500));
    assertNull(SheafClient.DEFAULT_STALL_TIMEOUT, "off: keepalive detects frozen servers");
    assertThrows(
        IllegalArgumentException.class, () -> b.keepAlive(Duration.ZERO, Duration.ofSeconds(1)));
    assertThrows(
        IllegalArgumentException.class, () -> b.keepAlive(Duration.ofSeconds(10), Duration.ZERO));
    b.keepAlive(null, null).keepAlive(Duration.ofSeconds(10), Duration.ofMillis(500));
    assertEquals(Duration.ofSeconds(10), SheafClient.DEFAULT_KEEPALIVE_INTERVAL);
    assertEquals(Duration.ofSeconds(20), SheafClient.DEFAULT_KEEPALIVE_TIMEOUT);
    assertEquals("1.5 s", EndpointStream.seconds(Duration.ofMillis(1500)));
    assertEquals("60 s", EndpointStream.seconds(Duration.ofSeconds(60)));
  }
}
