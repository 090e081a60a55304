package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestServer;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import sheaf.v1.Sheaf.ErrorReason;

/** The Java example of clients/jvm/README.md, against the demo package (sheaf serve --demo). */
@ExtendWith(SheafServerExtension.class)
class ReadmeExampleTest {
  @Test
  void theReadmeExampleReadsTheDemo(TestServer server) {
    long rows = 0;
    try (BufferAllocator root = new RootAllocator();
        SheafClient client = SheafClient.builder(server.url()).allocator(root).build()) {
      assertTrue(
          client.listPackages("demo/*").stream().anyMatch(p -> p.name().equals("demo/weather")));
      assertTrue(
          client.listTables("demo/weather:latest").stream()
              .anyMatch(t -> t.path().equals("tables/readings.parquet")));
      ResolvedRevision rev = client.resolve("demo/weather");
      DatasetRequest request =
          DatasetRequest.of("demo/weather")
              .withHash(rev.topHash().substring(0, 8))
              .withPath("tables/readings.parquet")
              .withColumns("id", "temp_c")
              .withFilter("temp_c > 30")
              .withPartitions(4);
      Dataset ds = client.dataset(request);
      assertEquals(4, ds.endpoints().size());
      assertTrue(ds.pinnedUri().contains(rev.topHash()), ds.pinnedUri());
      try (DatasetReader reader = client.read(ds, 4)) {
        while (reader.next()) {
          VectorSchemaRoot batch = reader.root();
          Float8Vector temp = (Float8Vector) batch.getVector("temp_c");
          for (int i = 0; i < batch.getRowCount(); i++) {
            assertTrue(temp.get(i) > 30);
          }
          rows += batch.getRowCount();
        }
      }
      assertEquals(12_250, rows, "rows of the demo above 30 °C");
      try (EndpointStream s = client.stream(ds.endpoints().get(0))) {
        while (s.next()) {
          assertEquals(
              List.of("id", "temp_c"),
              s.root().getSchema().getFields().stream().map(f -> f.getName()).toList());
        }
      }
      Dataset again = client.dataset(ds.pinnedUri());
      assertEquals(ds.topHash(), again.topHash());
      assertEquals(ds.schema(), again.schema());

      SheafException e =
          assertThrows(
              SheafException.class, () -> client.dataset(request.withColumns("id", "nosuch")));
      assertEquals(ErrorCode.INVALID_ARGUMENT, e.code());
      assertEquals(ErrorReason.UNKNOWN_COLUMN, e.reason());
      assertEquals("nosuch", e.column());
    }
  }
}
