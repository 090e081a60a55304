package dev.sheaf.spark;

import dev.sheaf.client.DatasetRequest;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * The options of {@code spark.read.format("sheaf")} (case-insensitive).
 *
 * <table>
 *   <caption>Options</caption>
 *   <tr><th>option</th><th>meaning</th></tr>
 *   <tr><td>{@code path}</td><td>{@code [sheaf://]OWNER/NAME[@HASH|:TAG]/PATH}, the argument of {@code load}: a dataset URI without a query, read by the server</td></tr>
 *   <tr><td>{@code server}</td><td>{@code grpc://HOST:PORT} or {@code grpc+tls://HOST:PORT} (required; without credentials, which go in the options below)</td></tr>
 *   <tr><td>{@code token}</td><td>bearer token sent as {@code authorization: Bearer ...}</td></tr>
 *   <tr><td>{@code username}, {@code password}</td><td>log in once on the driver; executors get the session token</td></tr>
 *   <tr><td>{@code tlsRootCerts}</td><td>PEM file of the CAs trusted for {@code grpc+tls://} (read on the driver)</td></tr>
 *   <tr><td>{@code tlsClientCert}, {@code tlsClientKey}</td><td>PEM files of a client certificate and its PKCS#8 key (mutual TLS)</td></tr>
 *   <tr><td>{@code partitions}</td><td>number of endpoints (Spark partitions) asked of the server</td></tr>
 *   <tr><td>{@code stallTimeout}</td><td>seconds a task's read waits for the server's next message before the location counts as failed (default {@code none}: keepalive detects frozen or unreachable servers; set it to bound a live server that stops sending)</td></tr>
 *   <tr><td>{@code sample}, {@code seed}</td><td>keep this fraction of rows, chosen by the server's seeded hash</td></tr>
 *   <tr><td>{@code sampleRows}</td><td>keep exactly this many rows (with {@code seed})</td></tr>
 *   <tr><td>{@code filter}</td><td>a filter in the server's SQL, applied before Spark's own</td></tr>
 *   <tr><td>{@code unsupportedColumns}</td><td>{@code error} (default) or {@code drop}: columns Spark cannot read</td></tr>
 *   <tr><td>{@code message}</td><td>writes: the commit message of the new revision</td></tr>
 *   <tr><td>{@code metadata}</td><td>writes: the new revision's user metadata, a JSON object (default: the previous revision's)</td></tr>
 *   <tr><td>{@code base}</td><td>writes: the revision the commit must build on (hash or tag); the commit fails with LATEST_MOVED if latest moved</td></tr>
 *   <tr><td>{@code batchRows}</td><td>writes: rows per Arrow batch sent by each task (default 65536; batches also end at 64 MiB)</td></tr>
 * </table>
 *
 * <p>Keys stored by a catalog as {@code option.KEY} (tables created with {@code CREATE TABLE ...
 * USING sheaf OPTIONS (...)}) are read as {@code KEY}, and the path such a table was created with
 * (its {@code location}) is read instead of the {@code file:} URI Spark's catalog makes of it.
 */
final class SheafOptions {
  // Not Serializable: it holds the password, which stays on the driver (executors get a
  // SheafConnection with the session token).
  final String server;
  final String token;
  final String username;
  final String password;
  final String tlsRootCerts;
  final String tlsClientCert;
  final String tlsClientKey;

  /** How long a read waits for the server's next message; null waits forever. */
  final Duration stallTimeout;

  /** The table as given: a dataset URI without a query, parsed by the server. */
  final String table;

  final Integer partitions;
  final Double sample;
  final Long sampleRows;
  final long seed;
  final String filter;
  final boolean dropUnsupported;

  /** Writes: the commit message, or null. */
  final String message;

  /** Writes: the new revision's user metadata (a JSON object as text), or null. */
  final String metadata;

  /** Writes: the revision the commit must build on, or null. */
  final String base;

  /** Writes: rows per Arrow batch a task sends. */
  final int batchRows;

  /**
   * Internal: set by the connector on the inner write it runs for {@code df.write} and {@code
   * INSERT} ({@link SheafDataSource}): the save mode ({@code append}, {@code overwrite}, {@code
   * errorifexists}, {@code ignore}); a table loaded with it is the write target.
   */
  static final String SAVE_MODE = "__sheafSaveMode";

  /** The save mode of the inner write, or null for a table read or written through Spark's API. */
  final String saveMode;

  /** The options as given (case preserved), for the inner write. */
  final Map<String, String> given;

  private SheafOptions(Map<String, String> o) {
    Map<String, String> m = new TreeMap<>(String.CASE_INSENSITIVE_ORDER);
    // A catalog table's OPTIONS may be stored as option.KEY: read them as KEY.
    for (Map.Entry<String, String> e : o.entrySet()) {
      String k = e.getKey();
      if (k.regionMatches(true, 0, "option.", 0, 7) && !o.containsKey(k.substring(7))) {
        m.putIfAbsent(k.substring(7), e.getValue());
      }
    }
    m.putAll(o);
    this.given = new java.util.HashMap<>(m);
    this.server = m.get("server");
    if (server == null || server.trim().isEmpty()) {
      throw new SheafException(
          "sheaf: the \"server\" option is required, such as .option(\"server\", \"grpc://127.0.0.1:50051\")");
    }
    String hidden = dev.sheaf.client.ServerAddress.withoutCredentials(server.trim());
    if (hidden != null) {
      // The URL is shown in plans and messages, and its credentials would not be sent.
      throw new SheafException(
          "sheaf: the option server (\""
              + hidden
              + "\") holds credentials (USER:PASSWORD@ or TOKEN@), which are not sent that way:"
              + " give the server without them, and the credentials as the options username and"
              + " password (a login on the driver), or token");
    }
    String path = m.get("path");
    String location = m.get("location");
    if (path != null
        && location != null
        && path.startsWith("file:")
        && !location.startsWith("file:")) {
      // A catalog table (CREATE TABLE ... OPTIONS (path '...')): Spark's catalog turns a relative
      // path into a file: URI under its warehouse, and keeps the path as given in "location".
      path = location;
    }
    if (path == null || path.trim().isEmpty()) {
      throw new SheafException(
          "sheaf: no table: use .load(\"OWNER/NAME[@HASH|:TAG]/PATH\") or the \"path\" option");
    }
    this.table = path.trim();
    this.token = emptyToNull(m.get("token"));
    this.username = emptyToNull(m.get("username"));
    this.password = emptyToNull(m.get("password"));
    this.tlsRootCerts = emptyToNull(m.get("tlsRootCerts"));
    this.tlsClientCert = emptyToNull(m.get("tlsClientCert"));
    this.tlsClientKey = emptyToNull(m.get("tlsClientKey"));
    if ((username == null) != (password == null)) {
      throw new SheafException(
          "sheaf: give the options username and password together (only "
              + (username == null ? "password" : "username")
              + " is set)");
    }
    if (username != null && token != null) {
      throw new SheafException(
          "sheaf: give the option token or the options username and password, not both");
    }
    if ((tlsClientCert == null) != (tlsClientKey == null)) {
      throw new SheafException(
          "sheaf: give the options tlsClientCert and tlsClientKey together (only "
              + (tlsClientCert == null ? "tlsClientKey" : "tlsClientCert")
              + " is set)");
    }
    if ((tlsRootCerts != null || tlsClientCert != null)
        && !server.trim().startsWith("grpc+tls://")) {
      throw new SheafException(
          "sheaf: "
              + (tlsRootCerts != null
                  ? "the option tlsRootCerts needs"
                  : "the options tlsClientCert and " + "tlsClientKey need")
              + " a grpc+tls:// server, not "
              + server);
    }
    this.partitions = m.containsKey("partitions") ? parseInt(m, "partitions") : null;
    this.sample = m.containsKey("sample") ? parseDouble(m, "sample") : null;
    this.sampleRows = m.containsKey("samplerows") ? parseLong(m, "sampleRows") : null;
    if (partitions != null && partitions < 0) {
      throw new SheafException("sheaf: option partitions must not be negative, not " + partitions);
    }
    if (sampleRows != null && sampleRows < 0) {
      throw new SheafException("sheaf: option sampleRows must not be negative, not " + sampleRows);
    }
    this.stallTimeout =
        m.containsKey("stallTimeout")
            ? parseStallTimeout(m.get("stallTimeout"))
            : SheafClient.DEFAULT_STALL_TIMEOUT;
    this.seed = m.containsKey("seed") ? parseSeed(m.get("seed")) : 0L;
    this.filter = m.get("filter");
    String unsupported = m.getOrDefault("unsupportedColumns", "error").toLowerCase(Locale.ROOT);
    if (!unsupported.equals("error") && !unsupported.equals("drop")) {
      throw new SheafException(
          "sheaf: unsupportedColumns must be \"error\" or \"drop\", not \"" + unsupported + "\"");
    }
    this.dropUnsupported = unsupported.equals("drop");
    if (sample != null && sampleRows != null) {
      throw new SheafException("sheaf: give sample or sampleRows, not both");
    }
    this.message = m.get("message");
    this.metadata = emptyToNull(m.get("metadata"));
    this.base = emptyToNull(m.get("base"));
    this.batchRows = m.containsKey("batchRows") ? parseInt(m, "batchRows") : 65_536;
    if (batchRows < 1) {
      throw new SheafException("sheaf: option batchRows must be at least 1, not " + batchRows);
    }
    String mode = m.get(SAVE_MODE);
    this.saveMode = mode == null ? null : mode.toLowerCase(Locale.ROOT);
  }

  /**
   * The write target: {@code OWNER/NAME/PATH} split into the package and the table path. A write
   * names no revision (it makes a new one).
   *
   * @return {@code [package, path]}
   * @throws SheafException for a revision, a query or a missing table path
   */
  String[] writeTarget() {
    String t = table.startsWith("sheaf://") ? table.substring("sheaf://".length()) : table;
    String[] parts = t.split("/", 3);
    if (parts.length < 3 || parts[2].isEmpty() || parts[0].isEmpty() || parts[1].isEmpty()) {
      throw new SheafException(
          "sheaf: cannot write to "
              + table
              + ": give OWNER/NAME/PATH, where PATH is a folder (features) or a file"
              + " (features.parquet) inside the package");
    }
    if (parts[1].contains("@") || parts[1].contains(":") || t.contains("?")) {
      throw new SheafException(
          "sheaf: cannot write to "
              + table
              + ": a write makes a new revision, so it names no revision (@HASH, :TAG) or query");
    }
    return new String[] {parts[0] + "/" + parts[1], parts[2].replaceAll("/+$", "")};
  }

  /**
   * Reads options.
   *
   * @param options Spark's options
   * @return the parsed options
   * @throws SheafException naming the bad option
   */
  static SheafOptions parse(Map<String, String> options) {
    return new SheafOptions(options);
  }

  /**
   * The table's request with the options' parameters (no pushdown yet).
   *
   * @param packageName the package the server read {@link #table} as
   * @param topHash the revision it resolved to
   * @param path the table path it read
   * @return the request, pinned
   */
  DatasetRequest base(String packageName, String topHash, String path) {
    return DatasetRequest.of(packageName)
        .withHash(topHash)
        .withPath(path)
        .withPartitions(partitions)
        .withSample(sample)
        .withSampleRows(sampleRows)
        .withSeed(seed)
        .withFilter(filter);
  }

  /**
   * The {@code stallTimeout} option: seconds (a positive number, fractions allowed), or {@code
   * none} (the default) to wait as long as the server answers keepalive.
   */
  static Duration parseStallTimeout(String s) {
    String t = s.trim();
    if (t.equalsIgnoreCase("none")) {
      return null;
    }
    double seconds;
    try {
      seconds = Double.parseDouble(t);
    } catch (NumberFormatException e) {
      seconds = Double.NaN;
    }
    if (!(seconds > 0) || Double.isInfinite(seconds) || seconds * 1000 < 1) {
      throw new SheafException(
          "sheaf: option stallTimeout must be a positive number of seconds (at least 0.001), or"
              + " none, not \""
              + s
              + "\"");
    }
    return Duration.ofMillis(Math.round(seconds * 1000));
  }

  private static String emptyToNull(String s) {
    return s == null || s.isEmpty() ? null : s;
  }

  private static int parseInt(Map<String, String> m, String key) {
    try {
      return Integer.parseInt(m.get(key).trim());
    } catch (NumberFormatException e) {
      throw new SheafException(
          "sheaf: option " + key + " must be an integer, not \"" + m.get(key) + "\"");
    }
  }

  private static long parseLong(Map<String, String> m, String key) {
    try {
      return Long.parseLong(m.get(key).trim());
    } catch (NumberFormatException e) {
      throw new SheafException(
          "sheaf: option " + key + " must be an integer, not \"" + m.get(key) + "\"");
    }
  }

  private static double parseDouble(Map<String, String> m, String key) {
    try {
      return Double.parseDouble(m.get(key).trim());
    } catch (NumberFormatException e) {
      throw new SheafException(
          "sheaf: option " + key + " must be a number, not \"" + m.get(key) + "\"");
    }
  }

  /** A seed as Spark writes it (signed) or as the server does (unsigned 64-bit). */
  static long parseSeed(String s) {
    String t = s.trim();
    try {
      return t.startsWith("-") ? Long.parseLong(t) : Long.parseUnsignedLong(t);
    } catch (NumberFormatException e) {
      throw new SheafException("sheaf: option seed must be an integer, not \"" + s + "\"");
    }
  }
}
