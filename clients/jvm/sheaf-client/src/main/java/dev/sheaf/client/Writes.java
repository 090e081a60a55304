package dev.sheaf.client;

import java.util.List;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.types.pojo.Schema;
import sheaf.v1.Sheaf;

/**
 * The write protocol behind {@link SheafClient}'s write methods: a session ({@code begin_write}),
 * parts uploaded into it (DoPut, {@link PartUpload}), one commit ({@code commit_write}) or an abort
 * ({@code abort_write}). {@link SheafClient} documents each call.
 */
final class Writes {
  private final FlightConnections connections;

  Writes(FlightConnections connections) {
    this.connections = connections;
  }

  Sheaf.BeginWriteResponse begin(Sheaf.BeginWriteRequest request) {
    return connections.action(
        "begin_write",
        request,
        Sheaf.BeginWriteResponse.class,
        "begin_write " + request.getPackage());
  }

  PartUpload openPart(WriteSession session, String path, Integer part, Schema schema) {
    return PartUpload.open(connections, session, path, part, schema);
  }

  UploadedPart putPart(WriteSession session, String path, Integer part, VectorSchemaRoot batch) {
    try (PartUpload up = openPart(session, path, part, batch.getSchema())) {
      up.putCopy(batch);
      return up.finish();
    }
  }

  UploadedPart putPart(WriteSession session, String path, Integer part, ArrowReader reader)
      throws java.io.IOException {
    VectorSchemaRoot source = reader.getVectorSchemaRoot();
    try (PartUpload up = openPart(session, path, part, source.getSchema())) {
      while (reader.loadNextBatch()) {
        up.putCopy(source);
      }
      return up.finish();
    }
  }

  CommitResult commit(String sessionId, List<String> partIds) {
    return CommitResult.of(
        commit(
            Sheaf.CommitWriteRequest.newBuilder()
                .setSession(sessionId)
                .addAllParts(partIds)
                .build()));
  }

  Sheaf.CommitWriteResponse commit(Sheaf.CommitWriteRequest request) {
    return connections.action(
        "commit_write",
        request,
        Sheaf.CommitWriteResponse.class,
        "commit_write session "
            + request.getSession()
            + " ("
            + request.getPartsCount()
            + " parts)");
  }

  Sheaf.AbortWriteResponse abort(Sheaf.AbortWriteRequest request) {
    return connections.action(
        "abort_write",
        request,
        Sheaf.AbortWriteResponse.class,
        "abort_write session " + request.getSession());
  }
}
