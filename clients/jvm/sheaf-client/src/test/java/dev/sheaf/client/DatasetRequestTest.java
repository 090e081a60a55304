package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import java.util.List;
import org.junit.jupiter.api.Test;
import sheaf.v1.Sheaf;

/** The typed request: what it sends, and how it shows (the server checks it, not the client). */
class DatasetRequestTest {
  @Test
  void buildsTheMessageTheServerReceives() throws Exception {
    DatasetRequest r =
        DatasetRequest.of("team/data")
            .withHash("abcdef12")
            .withPath("odd dir/q?mark %41@x:y.parquet")
            .withColumns("a", "odd \"name\", with comma", " padded ")
            .withFilter("a > 3")
            .withLimit(10L)
            .withSample(0.25)
            .withSeed(-1L)
            .withPartitions(4)
            .withCompression("zstd");
    Sheaf.DatasetRequest m = r.toProto();
    assertEquals("team/data", m.getPackage());
    assertEquals("abcdef12", m.getTopHash());
    assertEquals("odd dir/q?mark %41@x:y.parquet", m.getPath());
    assertEquals(List.of("a", "odd \"name\", with comma", " padded "), m.getColumnsList());
    assertEquals(10L, m.getLimit());
    assertEquals(-1L, m.getSeed());
    assertEquals("zstd", m.getCompression());
    assertFalse(m.hasSampleRows());

    Any any = r.toAny();
    assertEquals("type.googleapis.com/sheaf.v1.DatasetRequest", any.getTypeUrl());
    assertEquals(r, DatasetRequest.of(any.unpack(Sheaf.DatasetRequest.class)));
    assertEquals(
        r,
        DatasetRequest.of(
            Any.parseFrom(r.descriptor().getCommand()).unpack(Sheaf.DatasetRequest.class)));
  }

  @Test
  void revisionsAreAHashATagOrLatest() {
    DatasetRequest r = DatasetRequest.of("t/d");
    assertNull(r.topHash());
    assertNull(r.tag());
    assertEquals("v1", r.withHash("abcdef").withTag("v1").tag());
    assertNull(r.withHash("abcdef").withTag("v1").topHash());
    assertEquals(r, r.withTag("v1").withLatest());
    assertEquals("t/d:v1/x.csv", r.withTag("v1").withPath("x.csv").reference());
    assertEquals("t/d", r.reference());
  }

  @Test
  void optionalFieldsAreClearedByNull() {
    DatasetRequest r = DatasetRequest.of("t/d").withLimit(0L).withPartitions(2).withFilter("x");
    assertEquals(Long.valueOf(0), r.limit());
    DatasetRequest cleared = r.withLimit(null).withPartitions(null).withFilter(null);
    assertNull(cleared.limit());
    assertNull(cleared.partitions());
    assertNull(cleared.filter());
    assertEquals(DatasetRequest.of("t/d"), cleared);
    assertNotEquals(r, cleared);
  }

  @Test
  void showsAsAPercentEncodedUri() {
    DatasetRequest r =
        DatasetRequest.of("team/data")
            .withHash("abcdef12")
            .withPath("odd dir/q?mark %41@x:y.parquet")
            .withColumns(List.of("a", "é", "b,c", " d"))
            .withFilter("a > 3 AND b = 'x+y&z=%41'")
            .withSeed(-1L)
            .withPartitions(4);
    assertEquals(
        "sheaf://team/data@abcdef12/odd%20dir/q%3Fmark%20%2541%40x%3Ay.parquet"
            + "?columns=a,%C3%A9,%22b,c%22,%22%20d%22&filter=a%20%3E%203%20AND%20b%20%3D%20'x%2By%26z%3D%2541'"
            + "&seed=18446744073709551615&partitions=4",
        r.toString());
    assertEquals(
        "sheaf://t/d:v1?content=true",
        DatasetRequest.of("t/d").withTag("v1").withContent(true).toString());
  }

  @Test
  void nothingIsCheckedOnTheClient() {
    // The server is the one judge of a request (SheafClientTest: its errors).
    DatasetRequest r =
        DatasetRequest.of("nopackage").withSample(1.5).withPartitions(0).withHash("xyz");
    assertTrue(r.toString().startsWith("sheaf://nopackage@xyz?"), r.toString());
  }
}
