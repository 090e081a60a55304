package dev.sheaf.client;

import com.google.protobuf.Any;
import com.google.protobuf.Message;
import io.grpc.netty.NettyChannelBuilder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.flight.Action;
import org.apache.arrow.flight.CallHeaders;
import org.apache.arrow.flight.CallOption;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.Result;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.flight.grpc.NettyClientBuilder;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The plumbing of a {@link SheafClient}: its allocator, TLS settings and credentials (a login run
 * once, keeping only the session token), the Flight connection to its server and one to each other
 * endpoint location (opened on first use and kept until {@link #close()}), and the calls over them
 * with the options every call carries: {@code authorization: Bearer TOKEN}, and a deadline for the
 * calls that answer at once. Each call checks first that it is open ({@link #checkOpen()}). Every
 * connection has HTTP/2 keepalive ({@link SheafClient.Builder#keepAlive}).
 */
final class FlightConnections implements AutoCloseable {
  /** gRPC's largest message size: the server sends messages of any size. */
  private static final int MAX_MESSAGE = Integer.MAX_VALUE;

  private final String url;
  private final RootAllocator ownRoot;
  private final BufferAllocator allocator;
  private final Tls tls;
  private final FlightClient flight;
  private final Map<String, FlightClient> others = new ConcurrentHashMap<>();
  private final String token;
  private final CallOption[] unary;
  private final CallOption[] streaming;
  private final Duration stallTimeout;
  private final Duration keepAliveInterval;
  private final Duration keepAliveTimeout;
  private volatile boolean closed;

  /**
   * Connects as the builder says: lazily, or at once to log in with a user name and password.
   *
   * @throws SheafException as {@link SheafClient.Builder#build()}
   */
  FlightConnections(SheafClient.Builder b) {
    this.url = b.url;
    this.stallTimeout = b.stallTimeout;
    this.keepAliveInterval = b.keepAliveInterval;
    this.keepAliveTimeout = b.keepAliveTimeout;
    Location location = ServerAddress.parse(b.url);
    this.tls = Tls.of(b.url, ServerAddress.isTls(location), b.rootCerts, b.clientCert, b.clientKey);
    this.ownRoot = b.allocator == null ? new RootAllocator() : null;
    BufferAllocator parent = b.allocator == null ? ownRoot : b.allocator;
    this.allocator = parent.newChildAllocator("sheaf-client " + b.url, 0, Long.MAX_VALUE);
    Login login = b.username == null ? null : new Login();
    try {
      this.flight = open(location, login);
      this.token =
          login == null ? b.token : login.run(flight, url, b.username, b.password, b.callTimeout);
    } catch (RuntimeException e) {
      closed = true;
      closeQuietly(e);
      throw e;
    }
    List<CallOption> common = new ArrayList<>();
    if (token != null) {
      CallHeaders headers = new FlightCallHeaders();
      headers.insert("authorization", "Bearer " + token);
      common.add(new HeaderCallOption(headers));
    }
    this.streaming = common.toArray(new CallOption[0]);
    common.add(CallOptions.timeout(b.callTimeout.toMillis(), TimeUnit.MILLISECONDS));
    this.unary = common.toArray(new CallOption[0]);
  }

  /**
   * A Flight client of one server: Arrow's own channel settings ({@link NettyClientBuilder}, what
   * {@code FlightClient.builder} uses: TLS, message size, middleware) plus HTTP/2 keepalive, which
   * {@code FlightClient.Builder} does not expose. With keepalive the client pings a connection that
   * received nothing for the keepalive interval and closes it, failing its calls with UNAVAILABLE,
   * when no answer comes within the timeout: a server busy computing answers pings, a frozen or
   * unreachable one does not. Pings go also on connections without calls (a connection being set up
   * to a frozen server has none yet), until gRPC's idle timeout (30 minutes without calls) closes
   * them.
   */
  private FlightClient open(Location where, Login login) {
    NettyClientBuilder builder =
        new NettyClientBuilder(allocator, where).maxInboundMessageSize(MAX_MESSAGE);
    tls.configure(builder, where);
    if (login != null) {
      builder.intercept(login.middleware());
    }
    try {
      NettyChannelBuilder channel = builder.build();
      if (keepAliveInterval != null) {
        channel
            .keepAliveTime(keepAliveInterval.toNanos(), TimeUnit.NANOSECONDS)
            .keepAliveTimeout(keepAliveTimeout.toNanos(), TimeUnit.NANOSECONDS)
            .keepAliveWithoutCalls(true);
      }
      return FlightGrpcUtils.createFlightClient(
          builder.allocator(), channel.build(), builder.middleware());
    } catch (RuntimeException e) {
      // Netty refusing the TLS material (the PEM was checked, so rarely).
      throw new SheafException(
          ErrorCode.CLIENT,
          "connecting to " + where.getUri() + ": TLS settings refused: " + e.getMessage(),
          e);
    }
  }

  /**
   * Closes the connection and allocators of a client whose construction failed; their errors join
   * {@code cause}.
   */
  private void closeQuietly(RuntimeException cause) {
    try {
      if (flight != null) {
        flight.close();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (RuntimeException e) {
      cause.addSuppressed(e);
    }
    try {
      allocator.close();
      if (ownRoot != null) {
        ownRoot.close();
      }
    } catch (RuntimeException e) {
      cause.addSuppressed(e);
    }
  }

  /**
   * @return the server URL the client was built with
   */
  String url() {
    return url;
  }

  /**
   * @return the bearer token sent (given, or answered by the login), or null without credentials
   */
  String token() {
    return token;
  }

  /**
   * @return the client's allocator (a child of the builder's)
   */
  BufferAllocator allocator() {
    return allocator;
  }

  /**
   * @throws IllegalStateException once the client is closed
   */
  void checkOpen() {
    if (closed) {
      throw new IllegalStateException("the Sheaf client of " + url + " is closed");
    }
  }

  /**
   * Runs an action: the request packed in an {@code Any} as the body, the response packed in an
   * {@code Any} as the first result.
   *
   * @param what the call, for messages (the server's URL is added)
   */
  <T extends Message> T action(String type, Message request, Class<T> responseType, String what) {
    checkOpen();
    String context = what + " on " + url;
    try {
      Iterator<Result> results =
          flight.doAction(new Action(type, Any.pack(request).toByteArray()), unary);
      byte[] first = null;
      while (results.hasNext()) {
        byte[] bytes = results.next().getBody();
        if (first == null) {
          first = bytes;
        }
      }
      if (first == null) {
        throw new SheafException(ErrorCode.CLIENT, context + ": the server sent no result", null);
      }
      return Wire.unpack(first, responseType, context);
    } catch (FlightRuntimeException e) {
      throw SheafException.from(context, e);
    }
  }

  /**
   * GetFlightInfo on the client's server.
   *
   * @param shown the dataset, for messages
   */
  FlightInfo getInfo(FlightDescriptor descriptor, String shown) {
    checkOpen();
    try {
      return flight.getInfo(descriptor, unary);
    } catch (FlightRuntimeException e) {
      throw SheafException.from("GetFlightInfo " + shown + " on " + url, e);
    }
  }

  /**
   * GetSchema on the client's server.
   *
   * @param shown the dataset, for messages
   */
  Schema getSchema(FlightDescriptor descriptor, String shown) {
    checkOpen();
    try {
      return flight.getSchema(descriptor, unary).getSchema();
    } catch (FlightRuntimeException e) {
      throw SheafException.from("GetSchema " + shown + " on " + url, e);
    }
  }

  /** Starts a DoPut to the client's server. */
  FlightClient.ClientStreamListener startPut(
      FlightDescriptor descriptor, VectorSchemaRoot root, FlightClient.PutListener listener) {
    checkOpen();
    return flight.startPut(descriptor, root, listener, streaming);
  }

  /**
   * Opens an endpoint's stream (see {@link SheafClient#stream(Endpoint)}), checked against its plan
   * and watched by the stall timeout.
   *
   * @param targets the servers to read it from, in order
   */
  EndpointStream stream(Endpoint endpoint, List<String> targets) {
    Ticket ticket = new Ticket(endpoint.ticket());
    String name =
        "endpoint "
            + endpoint.index()
            + (endpoint.dataset() == null ? "" : " of " + endpoint.dataset());
    return new EndpointStream(
        name,
        targets,
        t -> getStream(t, ticket),
        endpoint.schema(),
        endpoint.rows().orElse(-1),
        stallTimeout);
  }

  /**
   * Starts a DoGet.
   *
   * @param target the server's URL: the client's own, or an endpoint location
   */
  FlightStream getStream(String target, Ticket ticket) {
    return connection(target).getStream(ticket, streaming);
  }

  /** The connection to a server: this client's own, or one opened once per location and kept. */
  private FlightClient connection(String target) {
    checkOpen();
    if (target.equals(url)) {
      return flight;
    }
    return others.computeIfAbsent(target, t -> open(tls.check(t), null));
  }

  /**
   * @return connections kept to other servers than the client's own (for tests)
   */
  int otherConnections() {
    return others.size();
  }

  /**
   * Closes the connections, then the allocator. Idempotent.
   *
   * @throws IllegalStateException if Arrow buffers are still open
   */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    List<FlightClient> all = new ArrayList<>(others.values());
    all.add(flight);
    others.clear();
    RuntimeException first = null;
    for (FlightClient c : all) {
      try {
        c.close();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } catch (RuntimeException e) {
        first = first == null ? e : first;
      }
    }
    try {
      allocator.close();
      if (ownRoot != null) {
        ownRoot.close();
      }
    } catch (RuntimeException e) {
      first = first == null ? e : first;
    }
    if (first != null) {
      throw first;
    }
  }
}
