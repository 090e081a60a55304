package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.arrow.flight.Action;
import org.apache.arrow.flight.CallHeaders;
import org.apache.arrow.flight.CallInfo;
import org.apache.arrow.flight.CallStatus;
import org.apache.arrow.flight.FlightProducer;
import org.apache.arrow.flight.FlightServer;
import org.apache.arrow.flight.FlightServerMiddleware;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.NoOpFlightProducer;
import org.apache.arrow.flight.RequestContext;
import org.apache.arrow.flight.Result;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;

/**
 * The token reaches the wire as {@code authorization: Bearer TOKEN}. Sheaf's server does not
 * check tokens yet, so the header is observed with a Flight server in this JVM that only
 * records headers (it stands in for no Sheaf behaviour).
 */
class BearerTokenTest {
  @Test
  void everyCallCarriesTheBearerHeader() throws Exception {
    List<String> seen = new CopyOnWriteArrayList<>();
    FlightServerMiddleware.Factory<FlightServerMiddleware> recorder = (CallInfo info, CallHeaders headers, RequestContext ctx) -> {
      seen.add(String.valueOf(headers.get("authorization")));
      return new FlightServerMiddleware() {
        @Override
        public void onBeforeSendingHeaders(CallHeaders outgoing) {}

        @Override
        public void onCallCompleted(CallStatus status) {}

        @Override
        public void onCallErrored(Throwable err) {}
      };
    };
    FlightProducer producer = new NoOpFlightProducer() {
      @Override
      public void doAction(CallContext context, Action action, StreamListener<Result> listener) {
        listener.onNext(new Result("[]".getBytes(StandardCharsets.UTF_8)));
        listener.onCompleted();
      }
    };
    try (BufferAllocator root = new RootAllocator();
         FlightServer server = FlightServer.builder(root, Location.forGrpcInsecure("127.0.0.1", 0), producer)
             .middleware(FlightServerMiddleware.Key.of("recorder"), recorder).build().start()) {
      String url = "grpc://127.0.0.1:" + server.getPort();
      try (SheafClient client = SheafClient.builder(url).token("s3cret").allocator(root).build()) {
        assertEquals(List.of(), client.listPackages());
        assertEquals(List.of(), client.listPackages("x/*"));
      }
      try (SheafClient anonymous = SheafClient.builder(url).allocator(root).build()) {
        anonymous.listPackages();
      }
    }
    assertEquals(List.of("Bearer s3cret", "Bearer s3cret", "null"), seen);
  }
}
