package dev.sheaf.client;

import java.io.ByteArrayOutputStream;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * A dataset URI: which slice of which package table to read.
 *
 * <pre>sheaf://OWNER/NAME[@HASH_PREFIX|:TAG][/PATH][?PARAM=VALUE&amp;...]</pre>
 *
 * <p>Immutable; the {@code with...} methods return modified copies. {@link #toString()} gives the
 * URI with the path and every parameter value percent-encoded, so any logical key, column name
 * or filter text travels intact. Without a revision the server reads {@code latest}; without a
 * path, the package's manifest table.
 */
public final class DatasetUri implements Serializable {
  private static final long serialVersionUID = 1L;

  /** The URI scheme, {@code sheaf://}. */
  public static final String SCHEME = "sheaf://";

  private static final Pattern PART = Pattern.compile("[A-Za-z0-9_.-]+");
  private static final Pattern HASH = Pattern.compile("[0-9a-fA-F]{6,64}");
  private static final Pattern QUERY_LIKE =
      Pattern.compile("\\?(columns|filter|limit|sample|sample_rows|seed|partitions|compression|content)=");

  private final String packageName;
  private final String revision;
  private final String path;
  private final List<String> columns;
  private final String filter;
  private final Long limit;
  private final Double sample;
  private final Long sampleRows;
  private final long seed;
  private final Integer partitions;
  private final boolean content;

  private DatasetUri(String packageName, String revision, String path, List<String> columns, String filter,
      Long limit, Double sample, Long sampleRows, long seed, Integer partitions, boolean content) {
    this.packageName = packageName;
    this.revision = revision;
    this.path = path;
    this.columns = columns;
    this.filter = filter;
    this.limit = limit;
    this.sample = sample;
    this.sampleRows = sampleRows;
    this.seed = seed;
    this.partitions = partitions;
    this.content = content;
  }

  private DatasetUri copy(String revision, String path, List<String> columns, String filter, Long limit,
      Double sample, Long sampleRows, long seed, Integer partitions, boolean content) {
    return new DatasetUri(packageName, revision, path, columns, filter, limit, sample, sampleRows, seed, partitions, content);
  }

  /**
   * A reference to a table: {@code OWNER/NAME[@HASH_PREFIX|:TAG][/PATH]}, with an optional
   * {@code sheaf://} prefix. The path is taken literally (it is the logical key, not
   * percent-encoded, and may contain {@code ?}, {@code @} or {@code %}); use {@link #parse}
   * for URIs copied from the server. Text that looks like a query ({@code ?columns=...}) is
   * refused: set parameters with the {@code with...} methods.
   *
   * @param reference the reference
   * @return the URI, without parameters
   * @throws SheafException if the package name, revision or path is malformed
   */
  public static DatasetUri of(String reference) {
    String text = reference.startsWith(SCHEME) ? reference.substring(SCHEME.length()) : reference;
    return location(reference, text, false);
  }

  /**
   * Parses a dataset URI as the server prints it ({@code pinned_uri}, {@code list_tables}):
   * the path and parameter values are percent-decoded. The {@code sheaf://} prefix is optional.
   *
   * @param uri the URI
   * @return the parsed URI
   * @throws SheafException if it is malformed or has an unknown or repeated parameter
   */
  public static DatasetUri parse(String uri) {
    String text = uri.startsWith(SCHEME) ? uri.substring(SCHEME.length()) : uri;
    int q = text.indexOf('?');
    DatasetUri u = location(uri, q < 0 ? text : text.substring(0, q), true);
    if (q < 0) {
      return u;
    }
    Set<String> seen = new LinkedHashSet<>();
    for (String pair : text.substring(q + 1).split("&")) {
      if (pair.isEmpty()) {
        continue;
      }
      int eq = pair.indexOf('=');
      String key = eq < 0 ? pair : pair.substring(0, eq);
      String value = eq < 0 ? "" : decode(pair.substring(eq + 1), uri);
      if (!seen.add(key)) {
        throw bad(uri, "parameter " + key + " given twice");
      }
      try {
        switch (key) {
          case "columns": {
            List<String> cols = new ArrayList<>();
            for (String c : value.split(",")) {
              if (!c.trim().isEmpty()) {
                cols.add(c.trim());
              }
            }
            u = u.withColumns(cols);
            break;
          }
          case "filter": u = u.withFilter(value); break;
          case "limit": u = u.withLimit(Long.parseLong(value)); break;
          case "sample": u = u.withSample(Double.parseDouble(value)); break;
          case "sample_rows": u = u.withSampleRows(Long.parseLong(value)); break;
          case "seed": u = u.withSeed(Long.parseUnsignedLong(value)); break;
          case "partitions": u = u.withPartitions(Integer.parseInt(value)); break;
          case "content": u = u.withContent(value.isEmpty() || value.equals("true") || value.equals("1")); break;
          default:
            throw bad(uri, "unknown parameter " + key
                + " (known: columns, filter, limit, sample, sample_rows, seed, partitions, content)");
        }
      } catch (NumberFormatException e) {
        throw bad(uri, key + " must be a number, not \"" + value + "\"");
      }
    }
    return u;
  }

  private static DatasetUri location(String whole, String text, boolean encodedPath) {
    if (!encodedPath && QUERY_LIKE.matcher(text).find()) {
      throw bad(whole, "a reference has no query (?...); set columns, filter, sample and so on separately");
    }
    String[] parts = text.split("/", 3);
    if (parts.length < 2) {
      throw bad(whole, "expected OWNER/NAME[@HASH|:TAG][/PATH]");
    }
    String owner = parts[0];
    String name = parts[1];
    String revision = null;
    int at = name.indexOf('@');
    int colon = name.indexOf(':');
    if (at >= 0) {
      revision = "@" + name.substring(at + 1).toLowerCase(java.util.Locale.ROOT);
      name = name.substring(0, at);
      if (!HASH.matcher(revision.substring(1)).matches()) {
        throw bad(whole, "a hash must be 6 to 64 hex characters");
      }
    } else if (colon >= 0) {
      String tag = name.substring(colon + 1);
      name = name.substring(0, colon);
      if (!PART.matcher(tag).matches()) {
        throw bad(whole, "invalid tag \"" + tag + "\": use letters, digits, '_', '-' and '.'");
      }
      revision = tag.equals("latest") ? null : ":" + tag;
    }
    if (!validPart(owner) || !validPart(name)) {
      throw bad(whole, "invalid package name \"" + owner + "/" + name
          + "\": expected OWNER/NAME using letters, digits, '_', '-' and '.'");
    }
    String path = parts.length == 3 ? parts[2] : "";
    if (encodedPath) {
      path = decode(path, whole);
    }
    while (path.endsWith("/")) {
      path = path.substring(0, path.length() - 1);
    }
    return new DatasetUri(owner + "/" + name, revision, path, List.of(), null, null, null, null, 0, null, false);
  }

  private static boolean validPart(String part) {
    return PART.matcher(part).matches() && !part.startsWith(".");
  }

  private static SheafException bad(String uri, String why) {
    return new SheafException(ErrorCode.INVALID_ARGUMENT, "invalid dataset URI \"" + uri + "\": " + why, null);
  }

  /** @return the package, {@code OWNER/NAME} */
  public String packageName() {
    return packageName;
  }

  /** @return {@code @HASH_PREFIX}, {@code :TAG}, or null for latest */
  public String revision() {
    return revision;
  }

  /** @return the table path inside the package (a logical key, not encoded); empty for the manifest table */
  public String path() {
    return path;
  }

  /** @return the columns to read, in order; empty for all */
  public List<String> columns() {
    return columns;
  }

  /** @return the filter (DataFusion SQL), or null */
  public String filter() {
    return filter;
  }

  /** @return the row limit, or null */
  public Long limit() {
    return limit;
  }

  /** @return the sampled fraction, or null */
  public Double sample() {
    return sample;
  }

  /** @return the exact sample size, or null */
  public Long sampleRows() {
    return sampleRows;
  }

  /** @return the sampling seed (an unsigned 64-bit value) */
  public long seed() {
    return seed;
  }

  /** @return the number of endpoints asked for, or null for the server's default */
  public Integer partitions() {
    return partitions;
  }

  /** @return whether the manifest table includes file contents */
  public boolean content() {
    return content;
  }

  /**
   * The same URI pinned to a revision by its top hash.
   *
   * @param topHash a full top hash or a prefix of 6 or more hex characters
   * @return the pinned URI
   */
  public DatasetUri withHash(String topHash) {
    if (!HASH.matcher(topHash).matches()) {
      throw new SheafException("a top hash must be 6 to 64 hex characters, not \"" + topHash + "\"");
    }
    return copy("@" + topHash.toLowerCase(java.util.Locale.ROOT), path, columns, filter, limit, sample, sampleRows, seed, partitions, content);
  }

  /**
   * The same URI at a tagged revision.
   *
   * @param tag the tag
   * @return the URI
   */
  public DatasetUri withTag(String tag) {
    if (!validPart(tag)) {
      throw new SheafException("invalid tag \"" + tag + "\": use letters, digits, '_', '-' and '.'");
    }
    return copy(tag.equals("latest") ? null : ":" + tag, path, columns, filter, limit, sample, sampleRows, seed, partitions, content);
  }

  /**
   * The same URI with another table path.
   *
   * @param tablePath the logical key (not encoded); empty for the manifest table
   * @return the URI
   */
  public DatasetUri withPath(String tablePath) {
    return copy(revision, Objects.requireNonNull(tablePath, "path"), columns, filter, limit, sample, sampleRows, seed, partitions, content);
  }

  /**
   * The same URI reading only these columns, in this order (empty: all). The server splits the
   * list on commas and trims blanks, so a name containing a comma or with leading or trailing
   * blanks cannot be asked for.
   *
   * @param names column names
   * @return the URI
   * @throws SheafException for a name the server cannot receive
   */
  public DatasetUri withColumns(List<String> names) {
    for (String c : names) {
      if (!expressible(c)) {
        throw new SheafException("column \"" + c + "\" cannot be named in a dataset URI "
            + "(the server splits columns=... on commas and trims blanks)");
      }
    }
    return copy(revision, path, List.copyOf(names), filter, limit, sample, sampleRows, seed, partitions, content);
  }

  /**
   * Whether a column can be named in {@code columns=}.
   *
   * @param column a column name
   * @return false for names with a comma, blanks at either end, or nothing but blanks
   */
  public static boolean expressible(String column) {
    return !column.isEmpty() && column.indexOf(',') < 0 && column.trim().equals(column);
  }

  /**
   * The same URI with a filter: a DataFusion SQL expression over the table's columns, such as
   * {@code temp_c > 30 AND "odd name" = 'x'}.
   *
   * @param sql the filter, or null or blank for none
   * @return the URI
   */
  public DatasetUri withFilter(String sql) {
    String f = sql == null || sql.trim().isEmpty() ? null : sql;
    return copy(revision, path, columns, f, limit, sample, sampleRows, seed, partitions, content);
  }

  /**
   * The same URI reading at most {@code n} rows (the server then plans one endpoint).
   *
   * @param n the limit, or null for none
   * @return the URI
   */
  public DatasetUri withLimit(Long n) {
    if (n != null && n < 0) {
      throw new SheafException("limit must not be negative, not " + n);
    }
    return copy(revision, path, columns, filter, n, sample, sampleRows, seed, partitions, content);
  }

  /**
   * The same URI keeping about this fraction of the rows, chosen by the seeded hash of each
   * row's position (the same rows for the same seed, whatever the partitioning).
   *
   * @param fraction between 0 and 1, or null for no sampling
   * @return the URI
   */
  public DatasetUri withSample(Double fraction) {
    if (fraction != null && !(fraction >= 0.0 && fraction <= 1.0)) {
      throw new SheafException("sample must be between 0 and 1, not " + fraction);
    }
    return copy(revision, path, columns, filter, limit, fraction, fraction == null ? sampleRows : null, seed, partitions, content);
  }

  /**
   * The same URI keeping exactly {@code n} rows (those with the smallest seeded hashes).
   *
   * @param n the sample size, or null for no sampling
   * @return the URI
   */
  public DatasetUri withSampleRows(Long n) {
    if (n != null && n < 0) {
      throw new SheafException("sample_rows must not be negative, not " + n);
    }
    return copy(revision, path, columns, filter, limit, n == null ? sample : null, n, seed, partitions, content);
  }

  /**
   * The same URI with a sampling seed, read as an unsigned 64-bit value (so negative seeds,
   * as Spark's, are valid and distinct).
   *
   * @param s the seed
   * @return the URI
   */
  public DatasetUri withSeed(long s) {
    return copy(revision, path, columns, filter, limit, sample, sampleRows, s, partitions, content);
  }

  /**
   * The same URI asking for {@code n} endpoints (at most one per Parquet row group).
   *
   * @param n between 1 and 100000, or null for the server's default (about 64 MiB each)
   * @return the URI
   */
  public DatasetUri withPartitions(Integer n) {
    if (n != null && (n < 1 || n > 100_000)) {
      throw new SheafException("partitions must be between 1 and 100000, not " + n);
    }
    return copy(revision, path, columns, filter, limit, sample, sampleRows, seed, n, content);
  }

  /**
   * For the manifest table: include each entry's file contents as a binary column.
   *
   * @param include whether to include contents
   * @return the URI
   */
  public DatasetUri withContent(boolean include) {
    return copy(revision, path, columns, filter, limit, sample, sampleRows, seed, partitions, include);
  }

  /** @return the same URI without any parameter */
  public DatasetUri withoutParameters() {
    return copy(revision, path, List.of(), null, null, null, null, 0, null, false);
  }

  /**
   * The reference part, {@code OWNER/NAME[@HASH|:TAG][/PATH]}, unencoded (for messages).
   *
   * @return the reference
   */
  public String reference() {
    return packageName + (revision == null ? "" : revision) + (path.isEmpty() ? "" : "/" + path);
  }

  /** @return the URI, encoded, as the server parses it */
  @Override
  public String toString() {
    StringBuilder b = new StringBuilder(SCHEME).append(packageName);
    if (revision != null) {
      b.append(revision);
    }
    if (!path.isEmpty()) {
      b.append('/').append(encode(path, true));
    }
    List<String> params = new ArrayList<>();
    if (!columns.isEmpty()) {
      List<String> enc = new ArrayList<>();
      for (String c : columns) {
        enc.add(encode(c, false));
      }
      params.add("columns=" + String.join(",", enc));
    }
    if (filter != null) {
      params.add("filter=" + encode(filter, false));
    }
    if (limit != null) {
      params.add("limit=" + limit);
    }
    if (sample != null) {
      params.add("sample=" + sample);
    }
    if (sampleRows != null) {
      params.add("sample_rows=" + sampleRows);
    }
    if (seed != 0) {
      params.add("seed=" + Long.toUnsignedString(seed));
    }
    if (partitions != null) {
      params.add("partitions=" + partitions);
    }
    if (content) {
      params.add("content=true");
    }
    if (!params.isEmpty()) {
      b.append('?').append(String.join("&", params));
    }
    return b.toString();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof DatasetUri && o.toString().equals(toString());
  }

  @Override
  public int hashCode() {
    return toString().hashCode();
  }

  /** Percent-encodes all but unreserved characters (and {@code /} in paths), as UTF-8. */
  static String encode(String s, boolean keepSlash) {
    StringBuilder b = new StringBuilder();
    for (byte x : s.getBytes(StandardCharsets.UTF_8)) {
      int c = x & 0xff;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
          || c == '-' || c == '.' || c == '_' || c == '~' || (keepSlash && c == '/')) {
        b.append((char) c);
      } else {
        b.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
            .append(Character.toUpperCase(Character.forDigit(c & 15, 16)));
      }
    }
    return b.toString();
  }

  /** Percent-decodes UTF-8 ({@code +} stays a plus sign, as the server reads it). */
  static String decode(String s, String whole) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '%' && i + 2 < s.length()
          && Character.digit(s.charAt(i + 1), 16) >= 0 && Character.digit(s.charAt(i + 2), 16) >= 0) {
        out.write(Character.digit(s.charAt(i + 1), 16) * 16 + Character.digit(s.charAt(i + 2), 16));
        i += 2;
      } else {
        byte[] bytes = String.valueOf(c).getBytes(StandardCharsets.UTF_8);
        if (Character.isHighSurrogate(c) && i + 1 < s.length()) {
          bytes = s.substring(i, i + 2).getBytes(StandardCharsets.UTF_8);
          i++;
        }
        out.write(bytes, 0, bytes.length);
      }
    }
    return new String(out.toByteArray(), StandardCharsets.UTF_8);
  }
}
