package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.channels.Channels;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowStreamReader;
import org.apache.arrow.vector.ipc.ArrowStreamWriter;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import sheaf.v1.Sheaf;
import sheaf.v1.Sheaf.ErrorReason;

/** Write sessions from the Java client, against the real server. */
@ExtendWith(SheafServerExtension.class)
class WriteTest {
  private static final Schema SCHEMA =
      new Schema(
          List.of(
              Field.nullable("id", new ArrowType.Int(64, true)),
              Field.nullable("name", ArrowType.Utf8.INSTANCE)));

  private static TestServer server;
  private BufferAllocator root;
  private SheafClient client;

  @BeforeAll
  static void start(TestServer s) {
    server = s;
  }

  @BeforeEach
  void connect() {
    root = new RootAllocator();
    client = SheafClient.builder(server.url()).allocator(root).build();
  }

  @AfterEach
  void closeAndCheckLeaks() {
    client.close();
    assertEquals(0, root.getAllocatedMemory(), "Arrow memory still allocated after the client");
    root.close();
  }

  /** A package name no other test uses. */
  private static String fresh() {
    return "writes/p" + UUID.randomUUID().toString().replace("-", "").substring(0, 12);
  }

  /** A batch of rows {@code [from, from + n)} (the caller closes it). */
  private VectorSchemaRoot batch(long from, int n) {
    VectorSchemaRoot b = VectorSchemaRoot.create(SCHEMA, root);
    fill(b, from, n);
    return b;
  }

  private static void fill(VectorSchemaRoot b, long from, int n) {
    b.allocateNew();
    BigIntVector id = (BigIntVector) b.getVector("id");
    VarCharVector name = (VarCharVector) b.getVector("name");
    for (int i = 0; i < n; i++) {
      id.setSafe(i, from + i);
      name.setSafe(i, ("row " + (from + i)).getBytes(java.nio.charset.StandardCharsets.UTF_8));
    }
    b.setRowCount(n);
  }

  private UploadedPart put(WriteSession s, String path, Integer part, long from, int n) {
    try (VectorSchemaRoot b = batch(from, n)) {
      return client.putPart(s, path, part, b);
    }
  }

  /** Every id of a table, sorted. */
  private List<Long> ids(String table) {
    List<Long> out = new ArrayList<>();
    try (DatasetReader r = client.read(client.dataset(table), 2)) {
      while (r.next()) {
        BigIntVector id = (BigIntVector) r.root().getVector("id");
        for (int i = 0; i < r.root().getRowCount(); i++) {
          out.add(id.get(i));
        }
      }
    }
    out.sort(null);
    return out;
  }

  private static List<Long> range(long from, long to) {
    List<Long> out = new ArrayList<>();
    for (long i = from; i < to; i++) {
      out.add(i);
    }
    return out;
  }

  @Test
  void partsBecomeOneRevisionAtTheCommit() {
    String pkg = fresh();
    WriteSession s =
        client.beginWrite(pkg, WriteOptions.defaults().withMessage("first").withTool("junit"));
    assertEquals(pkg, s.packageName());
    assertTrue(s.expiresAt() > 0);
    UploadedPart a = put(s, "features", 0, 0, 100);
    UploadedPart b = put(s, "features", 1, 100, 50);
    assertEquals(100, a.rows());
    assertEquals(50, b.rows());
    assertTrue(a.bytes() > 0);
    assertNotEquals(a.partId(), b.partId());
    assertEquals(s.id(), a.session());
    // Staged parts are invisible: the package has no revision yet.
    SheafException none = assertThrows(SheafException.class, () -> client.resolve(pkg));
    assertEquals(ErrorCode.NOT_FOUND, none.code());

    CommitResult c = client.commit(s, List.of(a.partId(), b.partId()));
    assertEquals(pkg, c.packageName());
    assertEquals(64, c.topHash().length());
    assertEquals(150, c.rows());
    assertEquals(1, c.uris().size());
    assertTrue(c.uris().get(0).contains(c.topHash()), c.uris().toString());
    assertEquals(2, c.keys().size(), c.keys().toString());
    assertTrue(
        c.keys().stream().allMatch(k -> k.startsWith("features/part-")), c.keys().toString());
    assertEquals(range(0, 150), ids(pkg + "/features"));
    assertEquals(range(0, 150), ids(c.uris().get(0)));
    List<RevisionInfo> revisions = client.listRevisions(pkg);
    assertEquals(1, revisions.size());
    assertEquals("first", revisions.get(0).message());

    // A retried commit answers the same revision, and makes no other.
    assertEquals(c.topHash(), client.commit(s, List.of(a.partId(), b.partId())).topHash());
    assertEquals(1, client.listRevisions(pkg).size());
  }

  @Test
  void onlyTheListedPartsAreCommitted() {
    String pkg = fresh();
    WriteSession s = client.beginWrite(pkg, WriteOptions.defaults());
    UploadedPart kept = put(s, "t", 0, 0, 10);
    put(s, "t", 0, 0, 10); // a retried task attempt of the same partition
    UploadedPart other = put(s, "t", 1, 10, 5);
    client.commit(s, List.of(kept.partId(), other.partId()));
    assertEquals(range(0, 15), ids(pkg + "/t"));
  }

  @Test
  void appendsJoinAndOverwritesReplace() {
    String pkg = fresh();
    WriteSession first = client.beginWrite(pkg, WriteOptions.defaults());
    client.commit(first, List.of(put(first, "t", 0, 0, 10).partId()));
    WriteSession second = client.beginWrite(pkg, WriteOptions.defaults());
    CommitResult appended = client.commit(second, List.of(put(second, "t", 0, 10, 10).partId()));
    assertEquals(range(0, 20), ids(pkg + "/t"));
    assertNotNull(appended.previous());

    WriteSession third =
        client.beginWrite(
            pkg, WriteOptions.defaults().withMode(Sheaf.WriteMode.WRITE_MODE_OVERWRITE));
    client.commit(third, List.of(put(third, "t", 0, 100, 3).partId()));
    assertEquals(range(100, 103), ids(pkg + "/t"));
    assertEquals(3, client.listRevisions(pkg).size());
  }

  @Test
  void errorIfExistsRefusesAnExistingTable() {
    String pkg = fresh();
    WriteSession first = client.beginWrite(pkg, WriteOptions.defaults());
    client.commit(first, List.of(put(first, "t", 0, 0, 10).partId()));
    WriteSession again =
        client.beginWrite(
            pkg, WriteOptions.defaults().withMode(Sheaf.WriteMode.WRITE_MODE_ERROR_IF_EXISTS));
    String part = put(again, "t", 0, 0, 10).partId();
    SheafException e =
        assertThrows(SheafException.class, () -> client.commit(again, List.of(part)));
    assertEquals(ErrorReason.ALREADY_EXISTS, e.reason(), e.getMessage());
    assertEquals(ErrorCode.CONFLICT, e.code());
    assertTrue(e.getMessage().contains("t"), e.getMessage());
    assertEquals(1, client.listRevisions(pkg).size());
    // A new table in the same package is fine in that mode.
    WriteSession other =
        client.beginWrite(
            pkg, WriteOptions.defaults().withMode(Sheaf.WriteMode.WRITE_MODE_ERROR_IF_EXISTS));
    client.commit(other, List.of(put(other, "u", 0, 0, 1).partId()));
    assertEquals(2, client.listRevisions(pkg).size());
  }

  @Test
  void anAppendOfAnotherSchemaNamesTheColumn() {
    String pkg = fresh();
    WriteSession first = client.beginWrite(pkg, WriteOptions.defaults());
    client.commit(first, List.of(put(first, "t", 0, 0, 10).partId()));
    Schema other = new Schema(List.of(Field.nullable("id", ArrowType.Utf8.INSTANCE)));
    WriteSession second = client.beginWrite(pkg, WriteOptions.defaults());
    String part;
    try (VectorSchemaRoot b = VectorSchemaRoot.create(other, root)) {
      b.allocateNew();
      ((VarCharVector) b.getVector("id")).setSafe(0, "x".getBytes());
      b.setRowCount(1);
      part = client.putPart(second, "t", 0, b).partId();
    }
    SheafException e =
        assertThrows(SheafException.class, () -> client.commit(second, List.of(part)));
    assertEquals(ErrorReason.SCHEMA_MISMATCH, e.reason(), e.getMessage());
    assertEquals(ErrorCode.CONFLICT, e.code());
    assertEquals("id", e.column(), e.getMessage());
  }

  @Test
  void anAbortedSessionIsGone() {
    String pkg = fresh();
    WriteSession s = client.beginWrite(pkg, WriteOptions.defaults());
    String part = put(s, "t", 0, 0, 10).partId();
    client.abort(s.id());
    SheafException commit =
        assertThrows(SheafException.class, () -> client.commit(s, List.of(part)));
    assertEquals(ErrorReason.SESSION_NOT_FOUND, commit.reason(), commit.getMessage());
    assertEquals(ErrorCode.NOT_FOUND, commit.code());
    SheafException upload = assertThrows(SheafException.class, () -> put(s, "t", 0, 0, 10));
    assertEquals(ErrorReason.SESSION_NOT_FOUND, upload.reason(), upload.getMessage());
    assertTrue(upload.getMessage().contains("DoPut " + pkg + "/t"), upload.getMessage());
    SheafException none = assertThrows(SheafException.class, () -> client.resolve(pkg));
    assertEquals(ErrorCode.NOT_FOUND, none.code(), "an aborted write leaves no revision");
    // A made-up session is refused the same way.
    SheafException unknown =
        assertThrows(
            SheafException.class,
            () -> put(new WriteSession("no-such-session", pkg, null, 0), "t", 0, 0, 1));
    assertEquals(ErrorReason.SESSION_NOT_FOUND, unknown.reason(), unknown.getMessage());
  }

  @Test
  void aStreamedPartOfManyBatches() throws Exception {
    String pkg = fresh();
    WriteSession s = client.beginWrite(pkg, WriteOptions.defaults());
    UploadedPart part;
    try (PartUpload up = client.openPart(s, "t", 0, SCHEMA)) {
      for (int k = 0; k < 5; k++) {
        fill(up.root(), k * 1000L, 1000);
        up.putNext();
      }
      assertEquals(5000, up.rows());
      part = up.finish();
    }
    assertEquals(5000, part.rows());
    // An ArrowReader (an IPC stream here) as one part.
    ByteArrayOutputStream ipc = new ByteArrayOutputStream();
    try (VectorSchemaRoot b = batch(5000, 10);
        ArrowStreamWriter w = new ArrowStreamWriter(b, null, Channels.newChannel(ipc))) {
      w.start();
      w.writeBatch();
      fill(b, 5010, 10);
      w.writeBatch();
      w.end();
    }
    UploadedPart fromReader;
    try (ArrowStreamReader r =
        new ArrowStreamReader(new ByteArrayInputStream(ipc.toByteArray()), root)) {
      fromReader = client.putPart(s, "t", 1, r);
    }
    assertEquals(20, fromReader.rows());
    // An upload closed before finish() is cancelled: nothing of it is staged.
    try (PartUpload up = client.openPart(s, "t", 2, SCHEMA)) {
      fill(up.root(), 9000, 10);
      up.putNext();
    }
    client.commit(s, List.of());
    assertEquals(range(0, 5020), ids(pkg + "/t"));
  }

  @Test
  void lineageAndMetadataAreRecorded() {
    String source = fresh();
    WriteSession s1 = client.beginWrite(source, WriteOptions.defaults());
    CommitResult src = client.commit(s1, List.of(put(s1, "raw", 0, 0, 5).partId()));

    String derived = fresh();
    LineageInput input = new LineageInput(source, src.topHash(), src.uris().get(0));
    WriteSession s2 =
        client.beginWrite(
            derived,
            WriteOptions.defaults()
                .withInput(input)
                .withTool("junit 1.0")
                .withMetadataJson("{\"team\": \"ml\"}"));
    CommitResult out = client.commit(s2, List.of(put(s2, "features", 0, 0, 5).partId()));

    List<LineageNode> nodes = client.lineage(derived);
    assertEquals(derived, nodes.get(0).packageName());
    assertEquals(out.topHash(), nodes.get(0).topHash());
    assertEquals(0, nodes.get(0).depth());
    assertEquals("junit 1.0", nodes.get(0).tool());
    assertEquals(1, nodes.get(0).inputs().size(), nodes.toString());
    assertEquals(source, nodes.get(0).inputs().get(0).packageName());
    assertEquals(src.topHash(), nodes.get(0).inputs().get(0).topHash());
    assertTrue(
        nodes.stream().anyMatch(n -> n.topHash().equals(src.topHash()) && n.depth() == 1),
        nodes.toString());
    assertEquals(1, client.lineage(derived, 0).size());

    String meta = client.userMetadata(derived);
    assertNotNull(meta);
    assertTrue(meta.contains("\"team\"") && meta.contains("\"ml\""), meta);
    assertTrue(meta.contains("lineage") && meta.contains(src.topHash()), meta);

    // The typed form answers the same.
    Sheaf.LineageResponse typed =
        client.lineage(Sheaf.LineageRequest.newBuilder().setRef(derived).build());
    assertEquals(out.topHash(), typed.getNodes(0).getTopHash());
  }

  @Test
  void anIdempotencyKeyAnswersTheSameSession() {
    String pkg = fresh();
    WriteOptions o = WriteOptions.defaults().withIdempotencyKey("job-" + UUID.randomUUID());
    WriteSession a = client.beginWrite(pkg, o);
    WriteSession b = client.beginWrite(pkg, o);
    assertEquals(a.id(), b.id());
    assertNotEquals(a.id(), client.beginWrite(pkg, WriteOptions.defaults()).id());
    Sheaf.BeginWriteResponse typed =
        client.beginWrite(
            Sheaf.BeginWriteRequest.newBuilder()
                .setPackage(pkg)
                .setIdempotencyKey(o.idempotencyKey())
                .build());
    assertEquals(a.id(), typed.getSession());
  }

  @Test
  void aBaseThatMovedIsRefused() {
    String pkg = fresh();
    WriteSession first = client.beginWrite(pkg, WriteOptions.defaults());
    CommitResult c1 = client.commit(first, List.of(put(first, "t", 0, 0, 1).partId()));
    WriteSession pinned = client.beginWrite(pkg, WriteOptions.defaults().withBase(c1.topHash()));
    assertEquals(c1.topHash(), pinned.base());
    WriteSession other = client.beginWrite(pkg, WriteOptions.defaults());
    client.commit(other, List.of(put(other, "t", 0, 1, 1).partId()));
    String part = put(pinned, "t", 0, 2, 1).partId();
    SheafException e =
        assertThrows(SheafException.class, () -> client.commit(pinned, List.of(part)));
    assertEquals(ErrorReason.LATEST_MOVED, e.reason(), e.getMessage());
    assertEquals(ErrorCode.CONFLICT, e.code());
  }
}
