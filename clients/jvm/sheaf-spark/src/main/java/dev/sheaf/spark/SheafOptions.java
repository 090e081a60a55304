package dev.sheaf.spark;

import dev.sheaf.client.DatasetUri;
import dev.sheaf.client.SheafException;
import java.io.Serializable;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * The options of {@code spark.read.format("sheaf")} (case-insensitive).
 *
 * <table>
 *   <caption>Options</caption>
 *   <tr><th>option</th><th>meaning</th></tr>
 *   <tr><td>{@code path}</td><td>{@code OWNER/NAME[@HASH|:TAG]/PATH} (the argument of {@code load})</td></tr>
 *   <tr><td>{@code server}</td><td>{@code grpc://HOST:PORT} (required)</td></tr>
 *   <tr><td>{@code token}</td><td>bearer token sent as {@code authorization: Bearer ...}</td></tr>
 *   <tr><td>{@code partitions}</td><td>number of endpoints (Spark partitions) asked of the server</td></tr>
 *   <tr><td>{@code sample}, {@code seed}</td><td>keep this fraction of rows, chosen by the server's seeded hash</td></tr>
 *   <tr><td>{@code sampleRows}</td><td>keep exactly this many rows (with {@code seed})</td></tr>
 *   <tr><td>{@code filter}</td><td>a filter in the server's SQL, applied before Spark's own</td></tr>
 *   <tr><td>{@code unsupportedColumns}</td><td>{@code error} (default) or {@code drop}: columns Spark cannot read</td></tr>
 * </table>
 */
final class SheafOptions implements Serializable {
  private static final long serialVersionUID = 1L;

  final String server;
  final String token;
  final DatasetUri table;
  final Integer partitions;
  final Double sample;
  final Long sampleRows;
  final long seed;
  final String filter;
  final boolean dropUnsupported;

  private SheafOptions(Map<String, String> o) {
    Map<String, String> m = new TreeMap<>(String.CASE_INSENSITIVE_ORDER);
    m.putAll(o);
    this.server = m.get("server");
    if (server == null || server.trim().isEmpty()) {
      throw new SheafException("sheaf: the \"server\" option is required, such as .option(\"server\", \"grpc://127.0.0.1:50051\")");
    }
    String path = m.get("path");
    if (path == null || path.trim().isEmpty()) {
      throw new SheafException("sheaf: no table: use .load(\"OWNER/NAME[@HASH|:TAG]/PATH\") or the \"path\" option");
    }
    this.table = DatasetUri.of(path.trim());
    this.token = m.get("token");
    this.partitions = m.containsKey("partitions") ? parseInt(m, "partitions") : null;
    this.sample = m.containsKey("sample") ? parseDouble(m, "sample") : null;
    this.sampleRows = m.containsKey("samplerows") ? parseLong(m, "sampleRows") : null;
    this.seed = m.containsKey("seed") ? parseSeed(m.get("seed")) : 0L;
    this.filter = m.get("filter");
    String unsupported = m.getOrDefault("unsupportedColumns", "error").toLowerCase(Locale.ROOT);
    if (!unsupported.equals("error") && !unsupported.equals("drop")) {
      throw new SheafException("sheaf: unsupportedColumns must be \"error\" or \"drop\", not \"" + unsupported + "\"");
    }
    this.dropUnsupported = unsupported.equals("drop");
    if (sample != null && sampleRows != null) {
      throw new SheafException("sheaf: give sample or sampleRows, not both");
    }
    // Check the values now, with the server's rules, rather than at planning.
    base();
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

  /** The table's URI with the options' parameters (no pushdown yet), unpinned. */
  DatasetUri base() {
    return table.withPartitions(partitions).withSample(sample).withSampleRows(sampleRows).withSeed(seed).withFilter(filter);
  }

  private static int parseInt(Map<String, String> m, String key) {
    try {
      return Integer.parseInt(m.get(key).trim());
    } catch (NumberFormatException e) {
      throw new SheafException("sheaf: option " + key + " must be an integer, not \"" + m.get(key) + "\"");
    }
  }

  private static long parseLong(Map<String, String> m, String key) {
    try {
      return Long.parseLong(m.get(key).trim());
    } catch (NumberFormatException e) {
      throw new SheafException("sheaf: option " + key + " must be an integer, not \"" + m.get(key) + "\"");
    }
  }

  private static double parseDouble(Map<String, String> m, String key) {
    try {
      return Double.parseDouble(m.get(key).trim());
    } catch (NumberFormatException e) {
      throw new SheafException("sheaf: option " + key + " must be a number, not \"" + m.get(key) + "\"");
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
