package dev.sheaf.client.testing;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import dev.sheaf.client.DatasetRequest;
import io.grpc.netty.NettyServerBuilder;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightEndpoint;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightServer;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.NoOpFlightProducer;
import org.apache.arrow.flight.SchemaResult;
import org.apache.arrow.flight.Ticket;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import sheaf.v1.Sheaf;

/**
 * A misbehaving Flight server imitating Sheaf (in this JVM, on a free loopback port), for the
 * client's checks of what servers send. It serves one table, {@code qa/fake/t.parquet} at revision
 * {@link #TOP}: two endpoints of {@link #ENDPOINT_ROWS} rows each, columns {@code id} and {@code x}
 * (int64, {@code x = 10 * id}, {@code id} from 0 to 1999), whose plan (FlightInfo, JSON metadata
 * for a text request and binary for a typed one, with each endpoint's {@code EndpointMetadata}) is
 * right; endpoint 1's stream then misbehaves as its {@link Mode} says. As the real server ({@code
 * Plan::exact_rows}), each endpoint's {@code EndpointMetadata.rows} states its {@link
 * #ENDPOINT_ROWS} unless the request has a filter, a sample, a limit or {@code sample_rows} (the
 * plan has two endpoints); streams ignore the filter and the rest.
 */
public final class FakeSheafServer implements AutoCloseable {
  /** What endpoint 1's stream does. */
  public enum Mode {
    /** What the plan says. */
    OK,
    /** Ends cleanly after 400 of its 1000 rows. */
    TRUNCATE,
    /** Sends 1200 rows. */
    EXTRA,
    /** Sends {@code id} as int32 and {@code x} as float64. */
    TYPE,
    /** Sends its columns in the other order ({@code x}, {@code id}). */
    SWAP,
    /**
     * What the plan says, after {@link #SLOW_SECONDS} s without sending anything (a live server
     * computing): it answers HTTP/2 pings meanwhile.
     */
    SLOW
  }

  /** How long {@link Mode#SLOW} waits before opening endpoint 1's stream. */
  public static final int SLOW_SECONDS = 15;

  /** The revision served. */
  public static final String TOP = "ab".repeat(32);

  /** Rows of each endpoint in the plan. */
  public static final int ENDPOINT_ROWS = 1000;

  private static final List<String> COLUMNS = List.of("id", "x");

  private final BufferAllocator allocator = new RootAllocator();
  private final FlightServer server;

  /**
   * Starts a server.
   *
   * @param mode what endpoint 1's stream does
   * @throws IOException if it cannot listen
   */
  public FakeSheafServer(Mode mode) throws IOException {
    // Like the real server (hyper), it accepts the client's keepalive pings however often they come
    // (gRPC Java servers allow one per 5 minutes by default, and none without calls).
    Consumer<NettyServerBuilder> pings =
        b -> b.permitKeepAliveTime(1, TimeUnit.SECONDS).permitKeepAliveWithoutCalls(true);
    server =
        FlightServer.builder(
                allocator, Location.forGrpcInsecure("127.0.0.1", 0), new Producer(mode, allocator))
            .transportHint("grpc.builderConsumer", pings)
            .build()
            .start();
  }

  /**
   * @return {@code grpc://127.0.0.1:PORT}
   */
  public String url() {
    return "grpc://127.0.0.1:" + server.getPort();
  }

  /**
   * @return the pinned URI of the whole table
   */
  public static String pinnedUri() {
    return "sheaf://qa/fake@" + TOP + "/t.parquet";
  }

  @Override
  public void close() throws Exception {
    server.close();
    allocator.close();
  }

  private static Field field(String name, ArrowType type) {
    return Field.nullable(name, type);
  }

  private static Schema schema(List<String> columns) {
    List<Field> fields = new ArrayList<>();
    for (String c : columns) {
      fields.add(field(c, new ArrowType.Int(64, true)));
    }
    return new Schema(fields);
  }

  private static final class Producer extends NoOpFlightProducer {
    private final Mode mode;
    private final BufferAllocator allocator;

    Producer(Mode mode, BufferAllocator allocator) {
      this.mode = mode;
      this.allocator = allocator;
    }

    /** The typed request, or null for a text URI. */
    private static Sheaf.DatasetRequest typed(FlightDescriptor d) {
      try {
        Any any = Any.parseFrom(d.getCommand());
        if (any.getTypeUrl().startsWith("type.googleapis.com/sheaf.v1.")) {
          return any.unpack(Sheaf.DatasetRequest.class);
        }
      } catch (InvalidProtocolBufferException e) {
        // a text URI
      }
      return null;
    }

    private static List<String> columns(Sheaf.DatasetRequest r) {
      return r == null || r.getColumnsCount() == 0 ? COLUMNS : r.getColumnsList();
    }

    private static byte[] metadata(Message m, boolean typed) {
      if (typed) {
        return m.toByteArray();
      }
      try {
        return JsonFormat.printer()
            .preservingProtoFieldNames()
            .print(m)
            .getBytes(StandardCharsets.UTF_8);
      } catch (InvalidProtocolBufferException e) {
        throw new IllegalStateException(e);
      }
    }

    /**
     * Whether the plan knows each endpoint's rows: the real server's rule for a plan of two
     * endpoints (no filter, sample, limit or sample_rows in the typed request or the text URI).
     */
    private static boolean exact(Sheaf.DatasetRequest r, FlightDescriptor d) {
      if (r != null) {
        return r.getFilter().isEmpty() && !r.hasSample() && !r.hasLimit() && !r.hasSampleRows();
      }
      String uri = new String(d.getCommand(), StandardCharsets.UTF_8);
      int q = uri.indexOf('?');
      if (q >= 0) {
        for (String pair : uri.substring(q + 1).split("&")) {
          String name = pair.split("=", 2)[0];
          if (List.of("filter", "sample", "limit", "sample_rows", "sampleRows").contains(name)) {
            return false;
          }
        }
      }
      return true;
    }

    @Override
    public FlightInfo getFlightInfo(CallContext context, FlightDescriptor descriptor) {
      Sheaf.DatasetRequest r = typed(descriptor);
      List<String> columns = columns(r);
      List<FlightEndpoint> endpoints = new ArrayList<>();
      for (int i = 0; i < 2; i++) {
        byte[] ticket = (i + "|" + String.join(",", columns)).getBytes(StandardCharsets.UTF_8);
        Sheaf.EndpointMetadata.Builder em =
            Sheaf.EndpointMetadata.newBuilder()
                .setPartition(i)
                .setFirstRow((long) i * ENDPOINT_ROWS)
                .setTableRows(ENDPOINT_ROWS);
        if (exact(r, descriptor)) {
          em.setRows(ENDPOINT_ROWS);
        }
        endpoints.add(
            FlightEndpoint.builder(new Ticket(ticket))
                .setAppMetadata(metadata(em.build(), r != null))
                .build());
      }
      String pinned = r == null ? pinnedUri() : DatasetRequest.of(r).withHash(TOP).toString();
      Sheaf.FlightInfoMetadata m =
          Sheaf.FlightInfoMetadata.newBuilder()
              .setPackage("qa/fake")
              .setTopHash(TOP)
              .setPath("t.parquet")
              .setPinnedUri(pinned)
              .build();
      return FlightInfo.builder(schema(columns), descriptor, endpoints)
          .setRecords(2L * ENDPOINT_ROWS)
          .setBytes(-1)
          .setAppMetadata(metadata(m, r != null))
          .build();
    }

    @Override
    public SchemaResult getSchema(CallContext context, FlightDescriptor descriptor) {
      return new SchemaResult(schema(columns(typed(descriptor))));
    }

    @Override
    public void getStream(CallContext context, Ticket ticket, ServerStreamListener listener) {
      String[] parts = new String(ticket.getBytes(), StandardCharsets.UTF_8).split("\\|", 2);
      int index = Integer.parseInt(parts[0]);
      List<String> columns = new ArrayList<>(Arrays.asList(parts[1].split(",")));
      boolean odd = index == 1;
      long first = (long) index * ENDPOINT_ROWS;
      long rows = ENDPOINT_ROWS;
      List<Field> fields = new ArrayList<>();
      if (odd && mode == Mode.SWAP) {
        java.util.Collections.reverse(columns);
      }
      for (String c : columns) {
        ArrowType type =
            !odd || mode != Mode.TYPE
                ? new ArrowType.Int(64, true)
                : c.equals("id")
                    ? new ArrowType.Int(32, true)
                    : new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE);
        fields.add(field(c, type));
      }
      if (odd && mode == Mode.SLOW) {
        try {
          Thread.sleep(SLOW_SECONDS * 1000L);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          listener.error(e);
          return;
        }
      }
      if (odd && mode == Mode.TRUNCATE) {
        rows = 400;
      } else if (odd && mode == Mode.EXTRA) {
        rows = 1200;
      }
      try (VectorSchemaRoot root = VectorSchemaRoot.create(new Schema(fields), allocator)) {
        listener.start(root);
        for (long at = 0; at < rows; at += 250) {
          int n = (int) Math.min(250, rows - at);
          root.allocateNew();
          for (FieldVector v : root.getFieldVectors()) {
            long scale = v.getName().equals("x") ? 10 : 1;
            for (int i = 0; i < n; i++) {
              long value = (first + at + i) * scale;
              if (v instanceof BigIntVector) {
                ((BigIntVector) v).setSafe(i, value);
              } else if (v instanceof IntVector) {
                ((IntVector) v).setSafe(i, (int) value);
              } else {
                ((Float8Vector) v).setSafe(i, value);
              }
            }
          }
          root.setRowCount(n);
          listener.putNext();
        }
        listener.completed();
      }
    }
  }
}
