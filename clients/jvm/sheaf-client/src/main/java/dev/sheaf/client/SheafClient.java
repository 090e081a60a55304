package dev.sheaf.client;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ipc.ArrowReader;
import org.apache.arrow.vector.types.pojo.Schema;
import sheaf.v1.Sheaf;

/**
 * A connection to a Sheaf Flight server.
 *
 * <p>Thread-safe: one client can plan and read from many threads.
 *
 * <p>Requests and answers are the typed messages of {@code proto/sheaf.proto}: a dataset is asked
 * for with a {@link DatasetRequest} packed in a {@code google.protobuf.Any} (or with a text dataset
 * URI, sent as it is), actions send and receive packed messages, and errors carry their reason
 * ({@link SheafException#reason()}).
 *
 * <p>Endpoints: an endpoint's locations (the replicas holding it) are tried in order, each at most
 * once, moving to the next one on a transport failure - a location that cannot be reached, a
 * replica that fails in the middle of the stream, one whose connection stops answering HTTP/2
 * keepalive pings (frozen, or unreachable: {@link Builder#keepAlive}), or one that sends nothing
 * for the stall timeout when one is set ({@link Builder#stallTimeout}) - where the read continues
 * after the rows already handed out (see {@link EndpointStream}); the server's own errors are
 * raised. An endpoint without a location, or with Flight's {@code
 * arrow-flight-reuse-connection://?}, is read from this client's server, over its own connection.
 * The connection to each other location is opened once and kept until {@link #close()}.
 *
 * <p>Credentials and TLS: an API token, or a user name and password exchanged once (when the client
 * is built) for a session token, which is all the client keeps ({@link #token()}); {@code
 * grpc+tls://} URLs with the JVM's or given root certificates, and a client certificate for mutual
 * TLS (see {@link Builder}).
 *
 * <p>Memory: every Arrow buffer comes from a child of the allocator given to the {@link Builder}
 * (or of a root allocator the client creates). {@link #close()} closes that child, and Arrow
 * reports any buffer still open (a batch not released by its reader) with an {@link
 * IllegalStateException}.
 */
public final class SheafClient implements AutoCloseable {
  /**
   * The default of {@link Builder#stallTimeout}: none (null). Keepalive ({@link Builder#keepAlive})
   * detects frozen or unreachable servers; a stall timeout bounds a live server that stops sending.
   */
  public static final Duration DEFAULT_STALL_TIMEOUT = null;

  /** The default interval of {@link Builder#keepAlive}: 10 seconds (as the Rust client). */
  public static final Duration DEFAULT_KEEPALIVE_INTERVAL = Duration.ofSeconds(10);

  /** The default timeout of {@link Builder#keepAlive}: 20 seconds (as the Rust client). */
  public static final Duration DEFAULT_KEEPALIVE_TIMEOUT = Duration.ofSeconds(20);

  private final FlightConnections connections;
  private final Catalog catalog;
  private final Writes writes;

  /**
   * Options of a client; create with {@link SheafClient#builder(String)}.
   *
   * <p>Credentials: an API token ({@link #token}), or a user name and password ({@link #username},
   * {@link #password}) exchanged once, in {@link #build()}, for a session token; the client keeps
   * only that token. TLS: a {@code grpc+tls://} URL always connects with TLS (never in plaintext),
   * trusting the JVM's default certificate authorities or those of {@link #tlsRootCerts}; {@link
   * #clientCertificate} adds a client certificate for mutual TLS.
   */
  public static final class Builder {
    // Read by FlightConnections.
    final String url;
    String token;
    String username;
    String password;
    Pem rootCerts;
    Pem clientCert;
    Pem clientKey;
    BufferAllocator allocator;
    Duration callTimeout = Duration.ofMinutes(2);
    Duration stallTimeout = DEFAULT_STALL_TIMEOUT;
    Duration keepAliveInterval = DEFAULT_KEEPALIVE_INTERVAL;
    Duration keepAliveTimeout = DEFAULT_KEEPALIVE_TIMEOUT;

    private Builder(String url) {
      this.url = Objects.requireNonNull(url, "server URL");
    }

    /**
     * Sends {@code authorization: Bearer TOKEN} with every call: an API token ({@code sheaf auth
     * new-token}) or a session token from an earlier login ({@link SheafClient#token()}).
     *
     * @param bearerToken the token, or null for none
     * @return this builder
     */
    public Builder token(String bearerToken) {
      this.token = bearerToken == null || bearerToken.isEmpty() ? null : bearerToken;
      return this;
    }

    /**
     * Logs in as this user when the client is built (with {@link #password}).
     *
     * @param name the user's name in the server's auth file, or null for none
     * @return this builder
     */
    public Builder username(String name) {
      this.username = name;
      return this;
    }

    /**
     * The password of {@link #username}. It is sent once, in the Flight handshake of {@link
     * #build()}, and not kept by the client.
     *
     * @param secret the password, or null for none
     * @return this builder
     */
    public Builder password(String secret) {
      this.password = secret;
      return this;
    }

    /**
     * Trusts these certificate authorities (instead of the JVM's) for {@code grpc+tls://}.
     *
     * @param pemFile a PEM file of one or more CA certificates (read now)
     * @return this builder
     * @throws SheafException if the file cannot be read
     */
    public Builder tlsRootCerts(Path pemFile) {
      this.rootCerts = pemFile == null ? null : Pem.read("tlsRootCerts", pemFile);
      return this;
    }

    /**
     * Trusts these certificate authorities (instead of the JVM's) for {@code grpc+tls://}.
     *
     * @param pem PEM text of one or more CA certificates
     * @return this builder
     */
    public Builder tlsRootCerts(byte[] pem) {
      this.rootCerts = pem == null ? null : Pem.of("tlsRootCerts", pem);
      return this;
    }

    /**
     * Presents this client certificate (mutual TLS, for a server started with {@code
     * --tls-client-ca}).
     *
     * @param certPemFile PEM file of the certificate (and any intermediates)
     * @param keyPemFile PEM file of its private key, unencrypted PKCS#8 ({@code -----BEGIN PRIVATE
     *     KEY-----})
     * @return this builder
     * @throws SheafException if a file cannot be read
     */
    public Builder clientCertificate(Path certPemFile, Path keyPemFile) {
      this.clientCert = Pem.read("client certificate", certPemFile);
      this.clientKey = Pem.read("client key", keyPemFile);
      return this;
    }

    /**
     * Presents this client certificate (mutual TLS, for a server started with {@code
     * --tls-client-ca}).
     *
     * @param certPem PEM text of the certificate (and any intermediates)
     * @param keyPem PEM text of its private key, unencrypted PKCS#8 ({@code -----BEGIN PRIVATE
     *     KEY-----})
     * @return this builder
     */
    public Builder clientCertificate(byte[] certPem, byte[] keyPem) {
      this.clientCert = Pem.of("client certificate", certPem);
      this.clientKey = Pem.of("client key", keyPem);
      return this;
    }

    /**
     * Allocates from a child of this allocator (closed with the client). Without it the client
     * creates and owns a root allocator.
     *
     * @param parent the parent allocator
     * @return this builder
     */
    public Builder allocator(BufferAllocator parent) {
      this.allocator = parent;
      return this;
    }

    /**
     * Deadline of calls that answer at once (login, GetFlightInfo, GetSchema, actions); streams of
     * batches have none as a whole (see {@link #stallTimeout} for the wait between their messages).
     * Default two minutes.
     *
     * @param timeout the deadline
     * @return this builder
     */
    public Builder callTimeout(Duration timeout) {
      this.callTimeout = Objects.requireNonNull(timeout, "timeout");
      return this;
    }

    /**
     * HTTP/2 keepalive of every connection: a ping after {@code interval} without anything
     * received, and the connection closed - its calls failing with UNAVAILABLE, which a read takes
     * as a failed replica and leaves for the endpoint's next location - when no answer comes within
     * {@code timeout}. A server busy computing answers pings, so a read waits for it however long
     * it takes; a frozen (stopped, hung) or unreachable one does not. Default 10 s and 20 s ({@link
     * #DEFAULT_KEEPALIVE_INTERVAL}, {@link #DEFAULT_KEEPALIVE_TIMEOUT}), as the Rust client; gRPC
     * Java raises an interval under 10 s to 10 s. Pings go on connections without calls too (gRPC
     * Java opens a call only once the server answered the connection's opening, which a frozen
     * process never does), until gRPC's idle timeout (30 minutes without calls) closes them.
     *
     * @param interval time without data before a ping, or null for no keepalive
     * @param timeout how long to wait for the answer (ignored with a null interval)
     * @return this builder
     * @throws IllegalArgumentException for a zero or negative duration
     */
    public Builder keepAlive(Duration interval, Duration timeout) {
      this.keepAliveInterval = positive("keepAlive interval", interval);
      this.keepAliveTimeout =
          interval == null ? null : positive("keepAlive timeout", Objects.requireNonNull(timeout));
      return this;
    }

    /**
     * How long a read waits for the server's next message - an endpoint stream's opening (its
     * schema), then each batch - before the location counts as a failed replica. Off by default
     * ({@link #DEFAULT_STALL_TIMEOUT}): keepalive ({@link #keepAlive}) already leaves a frozen or
     * unreachable server; set this to bound a live server that stops sending (or computes for
     * longer than you will wait). The read then goes on at the endpoint's next location, skipping
     * the rows already handed out; with none left it fails with {@link ErrorCode#TIMED_OUT}, naming
     * the endpoint, each location and the timeout. Only time spent waiting for the server counts,
     * never the time the caller holds a batch.
     *
     * @param timeout a positive duration, or null to wait as long as the server answers keepalive
     * @return this builder
     * @throws IllegalArgumentException for a zero or negative duration
     */
    public Builder stallTimeout(Duration timeout) {
      this.stallTimeout = positive("stallTimeout", timeout);
      return this;
    }

    private static Duration positive(String what, Duration d) {
      if (d != null && (d.isZero() || d.isNegative())) {
        throw new IllegalArgumentException(what + " must be positive (or null for none), not " + d);
      }
      return d;
    }

    /**
     * Builds the client. Without a login the connection opens lazily, on the first call; with
     * {@link #username} and {@link #password} it opens now and logs in.
     *
     * @return the client
     * @throws SheafException CLIENT for a malformed URL, inconsistent options or bad PEM;
     *     UNAUTHENTICATED for a refused login; UNAVAILABLE when the login cannot reach the server
     *     (the message names a TLS failure)
     */
    public SheafClient build() {
      if ((username == null) != (password == null)) {
        throw new SheafException(
            "give username and password together ("
                + (username == null ? "password" : "username")
                + " alone was given)");
      }
      if (username != null && token != null) {
        throw new SheafException("give a token or a username and password, not both");
      }
      return new SheafClient(new FlightConnections(this));
    }
  }

  private SheafClient(FlightConnections connections) {
    this.connections = connections;
    this.catalog = new Catalog(connections);
    this.writes = new Writes(connections);
  }

  /**
   * A builder for a client of the server at {@code url}.
   *
   * @param url {@code grpc://HOST:PORT}, {@code grpc+tls://HOST:PORT} or {@code HOST:PORT}; without
   *     credentials (a URL with {@code USER:PASSWORD@} or {@code TOKEN@} is refused by {@link
   *     Builder#build()}: give them with {@link Builder#username}, {@link Builder#password} or
   *     {@link Builder#token})
   * @return the builder
   */
  public static Builder builder(String url) {
    return new Builder(url);
  }

  /**
   * A client of the server at {@code url} with default options.
   *
   * @param url {@code grpc://HOST:PORT}, {@code grpc+tls://HOST:PORT} or {@code HOST:PORT}
   * @return the client
   */
  public static SheafClient connect(String url) {
    return builder(url).build();
  }

  /**
   * @return the server URL this client was built with
   */
  public String url() {
    return connections.url();
  }

  /**
   * The bearer token this client sends: the one given to the builder, or the session token a login
   * answered (never the password). Hand it to other processes that read for this client, such as
   * Spark executors ({@link Builder#token}); a session token expires (the server's {@code
   * session_ttl}, 12 hours by default).
   *
   * @return the token, or null without credentials
   */
  public String token() {
    return connections.token();
  }

  /**
   * Packages and their latest revisions.
   *
   * @return every package
   */
  public List<PackageInfo> listPackages() {
    return listPackages(null);
  }

  /**
   * Packages whose names match a glob ({@code *} matches any run of characters).
   *
   * @param glob such as {@code team/*}, or null for all
   * @return the matching packages
   */
  public List<PackageInfo> listPackages(String glob) {
    return catalog.packages(glob);
  }

  /**
   * A package's revisions, newest first.
   *
   * @param packageName {@code OWNER/NAME}
   * @return its revisions
   */
  public List<RevisionInfo> listRevisions(String packageName) {
    return catalog.revisions(packageName);
  }

  /**
   * Resolves a reference to a full top hash.
   *
   * @param reference {@code OWNER/NAME[@HASH_PREFIX|:TAG]}
   * @return the package and its top hash
   * @throws SheafException NOT_FOUND for an unknown package, hash or tag; INVALID_ARGUMENT (reason
   *     AMBIGUOUS_HASH) for an ambiguous hash prefix (the message lists the candidates)
   */
  public ResolvedRevision resolve(String reference) {
    return catalog.resolve(reference);
  }

  /**
   * The tables of a revision.
   *
   * @param reference {@code OWNER/NAME[@HASH_PREFIX|:TAG]}
   * @return its tables (the manifest table, with an empty path, first)
   */
  public List<TableInfo> listTables(String reference) {
    return catalog.tables(reference);
  }

  // ---------------------------------------------------------------------------------------------
  // Writes: a session, parts uploaded into it (DoPut), one commit making one revision of them.
  // ---------------------------------------------------------------------------------------------

  /**
   * Opens a write session on a package (action {@code begin_write}). Upload parts into it with
   * {@link #openPart} or {@link #putPart}, then {@link #commit} them as one revision (or {@link
   * #abort}). A session not committed before it expires is dropped by the server.
   *
   * @param packageName {@code OWNER/NAME} (created by the first commit if it does not exist)
   * @param options mode, base, message, metadata, lineage inputs, tool, idempotency key
   * @return the session
   * @throws SheafException INVALID_ARGUMENT for a bad name, base or metadata; NOT_FOUND for an
   *     unknown base; PERMISSION_DENIED without a write grant
   */
  public WriteSession beginWrite(String packageName, WriteOptions options) {
    return WriteSession.of(
        beginWrite(Objects.requireNonNull(options, "options").toProto(packageName)));
  }

  /**
   * Opens a write session (action {@code begin_write}), typed form.
   *
   * @param request the request
   * @return the server's answer
   */
  public Sheaf.BeginWriteResponse beginWrite(Sheaf.BeginWriteRequest request) {
    return writes.begin(request);
  }

  /**
   * Starts uploading one part of a session (a DoPut whose descriptor is the packed {@code
   * DatasetRequest} with {@code package}, {@code path}, {@code session} and {@code part}); fill
   * {@link PartUpload#root()} and send batches with {@link PartUpload#putNext()}, then {@link
   * PartUpload#finish()}.
   *
   * @param session the session
   * @param path the table: a file ({@code x.parquet}), or a folder ({@code features}) whose parts
   *     become {@code features/part-NNNNN-ID.parquet}
   * @param part the part's position in a folder table (a Spark partition index), or null
   * @param schema the batches' schema
   * @return the upload; close it
   * @throws SheafException when the call cannot start
   */
  public PartUpload openPart(WriteSession session, String path, Integer part, Schema schema) {
    return writes.openPart(session, path, part, schema);
  }

  /**
   * Uploads one batch as a part of a session.
   *
   * @param session the session
   * @param path the table (see {@link #openPart})
   * @param part the part's position in a folder table, or null
   * @param batch the rows (not modified or closed)
   * @return the staged part
   * @throws SheafException naming the part and the server's reason
   */
  public UploadedPart putPart(
      WriteSession session, String path, Integer part, VectorSchemaRoot batch) {
    return writes.putPart(session, path, part, batch);
  }

  /**
   * Uploads every batch of a reader as one part of a session.
   *
   * @param session the session
   * @param path the table (see {@link #openPart})
   * @param part the part's position in a folder table, or null
   * @param reader the batches (read to the end, not closed)
   * @return the staged part
   * @throws SheafException naming the part and the server's reason
   * @throws java.io.IOException when the reader fails
   */
  public UploadedPart putPart(WriteSession session, String path, Integer part, ArrowReader reader)
      throws java.io.IOException {
    return writes.putPart(session, path, part, reader);
  }

  /**
   * Commits a session's parts as one new revision (action {@code commit_write}). A commit retried
   * after a lost answer returns the same revision.
   *
   * @param session the session
   * @param partIds the parts to commit (from {@link UploadedPart#partId()}); the others are
   *     dropped. Empty commits every part uploaded.
   * @return the new revision: top hash, pinned URIs of the tables written
   * @throws SheafException NOT_FOUND (SESSION_NOT_FOUND) for an expired or aborted session;
   *     CONFLICT for ALREADY_EXISTS (mode ERROR_IF_EXISTS), SCHEMA_MISMATCH (append of another
   *     schema, the column named) or LATEST_MOVED (a base that is no longer latest)
   */
  public CommitResult commit(WriteSession session, List<String> partIds) {
    return commit(session.id(), partIds);
  }

  /**
   * Commits a session's parts by session id (see {@link #commit(WriteSession, List)}).
   *
   * @param sessionId the session id
   * @param partIds the parts to commit; empty commits every part uploaded
   * @return the new revision
   */
  public CommitResult commit(String sessionId, List<String> partIds) {
    return writes.commit(sessionId, partIds);
  }

  /**
   * Commits a session (action {@code commit_write}), typed form.
   *
   * @param request the request
   * @return the server's answer
   */
  public Sheaf.CommitWriteResponse commitWrite(Sheaf.CommitWriteRequest request) {
    return writes.commit(request);
  }

  /**
   * Drops a session and its staged parts (action {@code abort_write}).
   *
   * @param sessionId the session id
   * @throws SheafException NOT_FOUND (SESSION_NOT_FOUND) for an unknown, expired or already aborted
   *     session
   */
  public void abort(String sessionId) {
    abortWrite(Sheaf.AbortWriteRequest.newBuilder().setSession(sessionId).build());
  }

  /**
   * Drops a session (action {@code abort_write}), typed form.
   *
   * @param request the request
   * @return the server's (empty) answer
   */
  public Sheaf.AbortWriteResponse abortWrite(Sheaf.AbortWriteRequest request) {
    return writes.abort(request);
  }

  /**
   * A revision's lineage (action {@code lineage}): the revision, then every input reached, each
   * once, breadth first, up to the server's default depth (16).
   *
   * @param reference {@code OWNER/NAME[@HASH_PREFIX|:TAG]}
   * @return the nodes, the revision asked about first
   */
  public List<LineageNode> lineage(String reference) {
    return lineage(reference, null);
  }

  /**
   * A revision's lineage, following at most {@code depth} levels.
   *
   * @param reference {@code OWNER/NAME[@HASH_PREFIX|:TAG]}
   * @param depth levels to follow, or null for the server's default
   * @return the nodes, the revision asked about first
   */
  public List<LineageNode> lineage(String reference, Integer depth) {
    return catalog.lineage(reference, depth);
  }

  /**
   * A revision's lineage (action {@code lineage}), typed form.
   *
   * @param request the request
   * @return the server's answer
   */
  public Sheaf.LineageResponse lineage(Sheaf.LineageRequest request) {
    return catalog.lineage(request);
  }

  /**
   * A revision's user metadata (action {@code browse}), where writes record their lineage under
   * {@code sheaf.lineage}.
   *
   * @param reference {@code OWNER/NAME[@HASH_PREFIX|:TAG]}
   * @return the metadata as JSON text, or null when the revision has none
   */
  public String userMetadata(String reference) {
    return catalog.userMetadata(reference);
  }

  /**
   * Plans a read (GetFlightInfo) of a text dataset URI, sent to the server as it is (the server
   * parses it; its FlightInfo then carries JSON metadata).
   *
   * @param uri {@code sheaf://OWNER/NAME[@HASH|:TAG][/PATH][?PARAM=VALUE&...]} ({@code sheaf://}
   *     optional), such as a {@link Dataset#pinnedUri()} or a {@link TableInfo#uri()}
   * @return the planned dataset, pinned to a revision
   * @throws SheafException as {@link #dataset(DatasetRequest)}, and INVALID_ARGUMENT for a
   *     malformed URI
   */
  public Dataset dataset(String uri) {
    FlightInfo info = connections.getInfo(text(uri), uri);
    return Dataset.from(uri, null, info, url());
  }

  /**
   * Plans a read (GetFlightInfo): resolves the revision, checks columns and filter, and cuts the
   * table into endpoints.
   *
   * @param request what to read
   * @return the planned dataset, pinned to a revision
   * @throws SheafException NOT_FOUND (package, revision, path), INVALID_ARGUMENT (malformed
   *     request, unknown column, bad filter: {@link SheafException#reason()} tells which, and the
   *     message names them)
   */
  public Dataset dataset(DatasetRequest request) {
    FlightInfo info = connections.getInfo(request.descriptor(), request.toString());
    return Dataset.from(request.toString(), request, info, url());
  }

  /**
   * The schema a read would return (GetSchema), without planning endpoints.
   *
   * @param request what to read
   * @return its schema
   */
  public Schema schema(DatasetRequest request) {
    return connections.getSchema(request.descriptor(), request.toString());
  }

  /**
   * The schema a read of a text dataset URI would return (GetSchema); the URI is sent as it is.
   *
   * @param uri the dataset URI
   * @return its schema
   */
  public Schema schema(String uri) {
    return connections.getSchema(text(uri), uri);
  }

  private static FlightDescriptor text(String uri) {
    return FlightDescriptor.command(uri.getBytes(StandardCharsets.UTF_8));
  }

  /**
   * Opens one endpoint's stream of batches (DoGet), trying its locations in order (see {@link
   * #targets(Endpoint)}): a location that cannot be reached, that fails in the middle of the
   * stream, or that sends nothing for the stall timeout ({@link Builder#stallTimeout}), is left for
   * the next, where the stream goes on after the rows already handed out. The stream is checked
   * against the endpoint's plan ({@link Endpoint#schema()}, {@link Endpoint#rows()}).
   *
   * @param endpoint the endpoint
   * @return the stream; close it
   * @throws SheafException UNAVAILABLE when every location failed (the message names each, the
   *     earlier errors are suppressed exceptions), TIMED_OUT when every one stalled; DATA_LOSS
   *     (from {@link EndpointStream#next()}) for a stream contradicting its plan; CLIENT for a
   *     plaintext location from a TLS server
   */
  public EndpointStream stream(Endpoint endpoint) {
    connections.checkOpen();
    return connections.stream(endpoint, targets(endpoint));
  }

  /**
   * The servers an endpoint is read from, in the order they are tried, each once: its locations,
   * where Flight's {@code arrow-flight-reuse-connection://?} means this client's server; this
   * client's server alone when it names none.
   *
   * @param endpoint the endpoint
   * @return server URLs
   */
  public List<String> targets(Endpoint endpoint) {
    return ServerAddress.targets(url(), endpoint.locations());
  }

  /**
   * The server an endpoint is read from first.
   *
   * @param endpoint the endpoint
   * @return a server URL: the first of {@link #targets(Endpoint)}
   */
  public String target(Endpoint endpoint) {
    return targets(endpoint).get(0);
  }

  /**
   * @return connections this client keeps to other servers than its own (for tests)
   */
  int otherConnections() {
    return connections.otherConnections();
  }

  /**
   * Reads a dataset's endpoints, {@code parallelism} at a time, and returns their batches in
   * endpoint order (the server's canonical order).
   *
   * @param dataset the planned dataset
   * @param parallelism endpoints read at once (1 reads them one after the other)
   * @return the reader; close it
   */
  public DatasetReader read(Dataset dataset, int parallelism) {
    connections.checkOpen();
    return new DatasetReader(this, dataset, parallelism, connections.allocator());
  }

  /**
   * @return the allocator this client allocates from (a child of the builder's)
   */
  public BufferAllocator allocator() {
    return connections.allocator();
  }

  /**
   * Closes the connections, then the client's allocator. Idempotent.
   *
   * @throws IllegalStateException if Arrow buffers of this client are still open (a leak: a stream
   *     or batch not closed)
   */
  @Override
  public void close() {
    connections.close();
  }
}
