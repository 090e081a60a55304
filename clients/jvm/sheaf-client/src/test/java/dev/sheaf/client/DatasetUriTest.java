package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

class DatasetUriTest {
  @Test
  void referencesTakePathsLiterally() {
    DatasetUri u = DatasetUri.of("team/data@ABCDEF12/odd dir/q?mark %41@x:y.parquet");
    assertEquals("team/data", u.packageName());
    assertEquals("@abcdef12", u.revision());
    assertEquals("odd dir/q?mark %41@x:y.parquet", u.path());
    assertEquals("sheaf://team/data@abcdef12/odd%20dir/q%3Fmark%20%2541%40x%3Ay.parquet", u.toString());
    assertEquals(u, DatasetUri.parse(u.toString()));
  }

  @Test
  void tagsLatestAndManifest() {
    assertEquals(":v1", DatasetUri.of("sheaf://t/d:v1/x.csv").revision());
    assertNull(DatasetUri.of("t/d:latest/x.csv").revision());
    assertEquals("", DatasetUri.of("t/d").path());
    assertEquals("sheaf://t/d", DatasetUri.of("t/d/").toString());
  }

  @Test
  void parametersAreEncodedAndParsedBack() {
    DatasetUri u = DatasetUri.of("t/d/x.parquet")
        .withColumns(List.of("a", "odd \"name\"", "é"))
        .withFilter("a > 3 AND b = 'x+y&z=%41' AND \"odd \"\"name\"\"\" <> 'it''s'")
        .withLimit(10L).withSample(0.25).withSeed(-1L).withPartitions(4);
    String text = u.toString();
    assertTrue(text.startsWith("sheaf://t/d/x.parquet?columns=a,odd%20%22name%22,%C3%A9&filter=a%20%3E%203"), text);
    assertTrue(text.contains("&seed=18446744073709551615"), text);
    DatasetUri back = DatasetUri.parse(text);
    assertEquals(u, back);
    assertEquals(u.filter(), back.filter());
    assertEquals(List.of("a", "odd \"name\"", "é"), back.columns());
    assertEquals(-1L, back.seed());
  }

  @Test
  void plusIsAPlusSign() {
    assertEquals("a+b", DatasetUri.parse("t/d/x?filter=a+b").filter());
  }

  @Test
  void rejectsWhatTheServerWouldRejectOrMisread() {
    SheafException e = assertThrows(SheafException.class, () -> DatasetUri.of("nopackage"));
    assertTrue(e.getMessage().contains("nopackage"), e.getMessage());
    assertThrows(SheafException.class, () -> DatasetUri.of("t/d@abc/x"));
    assertThrows(SheafException.class, () -> DatasetUri.of("t/d/x?limit=1"));
    assertThrows(SheafException.class, () -> DatasetUri.parse("t/d/x?colums=a"));
    assertThrows(SheafException.class, () -> DatasetUri.parse("t/d/x?limit=1&limit=2"));
    assertThrows(SheafException.class, () -> DatasetUri.of("t/d").withSample(1.5));
    assertThrows(SheafException.class, () -> DatasetUri.of("t/d").withPartitions(0));
    SheafException comma = assertThrows(SheafException.class, () -> DatasetUri.of("t/d").withColumns(List.of("a,b")));
    assertTrue(comma.getMessage().contains("a,b"), comma.getMessage());
    assertFalse(DatasetUri.expressible(" padded"));
  }
}
