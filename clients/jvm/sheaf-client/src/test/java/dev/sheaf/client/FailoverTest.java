package dev.sheaf.client;

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
import java.io.IOException;
import java.net.SocketException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.apache.arrow.flight.CallStatus;
import org.apache.arrow.flight.ErrorFlightMetadata;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.Ticket;
import org.junit.jupiter.api.Test;

/**
 * Mid-stream failover against real replicas ({@link ReplicatedTableTest}): the one serving a read
 * SIGKILLed while the read is running, every location failed, the server's own errors not retried,
 * cuts inside a batch, replicas disagreeing, and which errors count as transport failures. With an
 * older binary (no {@code --peer}) the read through {@link DatasetReader} of several endpoints is
 * skipped. Frozen replicas: {@link FrozenReplicaTest}.
 */
class FailoverTest extends ReplicatedTableTest {
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
        shared.peers,
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
