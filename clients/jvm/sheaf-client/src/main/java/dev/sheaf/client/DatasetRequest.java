package dev.sheaf.client;

import com.google.common.escape.Escaper;
import com.google.common.net.PercentEscaper;
import com.google.protobuf.Any;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.function.Consumer;
import org.apache.arrow.flight.FlightDescriptor;
import sheaf.v1.Sheaf;

/**
 * What to read: a table of a package revision and which of its rows and columns, as the typed
 * request {@code sheaf.v1.DatasetRequest} of {@code proto/sheaf.proto}.
 *
 * <pre>{@code
 * DatasetRequest r = DatasetRequest.of("demo/weather").withPath("tables/readings.parquet")
 *     .withColumns("id", "temp_c").withFilter("temp_c > 30").withPartitions(4);
 * }</pre>
 *
 * <p>Immutable; the {@code with...} methods return modified copies. The client sends the message
 * packed in a {@code google.protobuf.Any} as the Flight descriptor's command. It checks only what
 * the message cannot carry - a negative {@code limit}, {@code sampleRows} or {@code partitions}
 * (unsigned fields) is refused with an {@link IllegalArgumentException} - and leaves the rest to
 * the server, which validates every field (package name, revision, path, columns, filter, ranges)
 * with the same rules as for a text dataset URI, and whose errors name what is wrong. Without a
 * revision the server reads {@code latest}; without a path, the package's manifest table. To send a
 * text URI instead, pass it to {@link SheafClient#dataset(String)} as it is.
 */
public final class DatasetRequest implements Serializable {
  private static final long serialVersionUID = 2L;

  /** Path characters shown as they are: unreserved ones, sub-delimiters and {@code /}. */
  private static final Escaper PATH = new PercentEscaper("-._~!$&'()*+,;=/", false);

  /** Characters of parameter values shown as they are ({@code &}, {@code =}, {@code +} are not). */
  private static final Escaper VALUE = new PercentEscaper("-._~!$'()*,;:@/", false);

  private final Sheaf.DatasetRequest proto;

  private DatasetRequest(Sheaf.DatasetRequest proto) {
    this.proto = proto;
  }

  /**
   * A request for the manifest table of a package's latest revision; set the rest with the {@code
   * with...} methods.
   *
   * @param packageName {@code OWNER/NAME}
   * @return the request
   */
  public static DatasetRequest of(String packageName) {
    Objects.requireNonNull(packageName, "package");
    return new DatasetRequest(Sheaf.DatasetRequest.newBuilder().setPackage(packageName).build());
  }

  /**
   * A request from its message.
   *
   * @param message a {@code sheaf.v1.DatasetRequest}
   * @return the request
   */
  public static DatasetRequest of(Sheaf.DatasetRequest message) {
    return new DatasetRequest(Objects.requireNonNull(message, "message"));
  }

  private DatasetRequest with(Consumer<Sheaf.DatasetRequest.Builder> change) {
    Sheaf.DatasetRequest.Builder b = proto.toBuilder();
    change.accept(b);
    return new DatasetRequest(b.build());
  }

  /**
   * @return the message sent to the server
   */
  public Sheaf.DatasetRequest toProto() {
    return proto;
  }

  /**
   * @return the message packed as the server receives it
   */
  public Any toAny() {
    return Any.pack(proto);
  }

  /** The Flight descriptor of this request: a CMD holding the packed message. */
  FlightDescriptor descriptor() {
    return FlightDescriptor.command(toAny().toByteArray());
  }

  /**
   * @return the package, {@code OWNER/NAME}
   */
  public String packageName() {
    return proto.getPackage();
  }

  /**
   * @return the top hash (or prefix) asked for, or null
   */
  public String topHash() {
    return proto.hasTopHash() ? proto.getTopHash() : null;
  }

  /**
   * @return the tag asked for, or null
   */
  public String tag() {
    return proto.hasTag() ? proto.getTag() : null;
  }

  /**
   * @return the table path inside the package (a logical key); empty for the manifest table
   */
  public String path() {
    return proto.getPath();
  }

  /**
   * @return the columns to read, in order; empty for all
   */
  public List<String> columns() {
    return List.copyOf(proto.getColumnsList());
  }

  /**
   * @return the filter (the server's SQL), or null
   */
  public String filter() {
    return proto.getFilter().isEmpty() ? null : proto.getFilter();
  }

  /**
   * @return the row limit, or null
   */
  public Long limit() {
    return proto.hasLimit() ? proto.getLimit() : null;
  }

  /**
   * @return the sampled fraction, or null
   */
  public Double sample() {
    return proto.hasSample() ? proto.getSample() : null;
  }

  /**
   * @return the exact sample size, or null
   */
  public Long sampleRows() {
    return proto.hasSampleRows() ? proto.getSampleRows() : null;
  }

  /**
   * @return the sampling seed (an unsigned 64-bit value)
   */
  public long seed() {
    return proto.getSeed();
  }

  /**
   * @return the number of endpoints asked for, or null for the server's default
   */
  public Integer partitions() {
    return proto.hasPartitions() ? proto.getPartitions() : null;
  }

  /**
   * @return the IPC body compression asked for ({@code ""}, {@code zstd}, {@code lz4})
   */
  public String compression() {
    return proto.getCompression();
  }

  /**
   * @return whether the manifest table includes file contents
   */
  public boolean content() {
    return proto.getContent();
  }

  /**
   * @return the write session a DoPut uploads a part of, or null
   */
  public String session() {
    return proto.getSession().isEmpty() ? null : proto.getSession();
  }

  /**
   * @return the part's position in its folder table (a DoPut in a session), or null
   */
  public Integer part() {
    return proto.hasPart() ? proto.getPart() : null;
  }

  /**
   * The same request pinned to a revision by its top hash.
   *
   * @param hash a full top hash or a prefix of at least six hex characters
   * @return the request
   */
  public DatasetRequest withHash(String hash) {
    Objects.requireNonNull(hash, "top hash");
    return with(b -> b.setTopHash(hash));
  }

  /**
   * The same request at a tagged revision.
   *
   * @param tag the tag ({@code latest} is the default)
   * @return the request
   */
  public DatasetRequest withTag(String tag) {
    Objects.requireNonNull(tag, "tag");
    return with(b -> b.setTag(tag));
  }

  /**
   * @return the same request at the latest revision (no hash or tag)
   */
  public DatasetRequest withLatest() {
    return with(Sheaf.DatasetRequest.Builder::clearRevision);
  }

  /**
   * The same request of another table.
   *
   * @param tablePath the logical key; empty for the manifest table
   * @return the request
   */
  public DatasetRequest withPath(String tablePath) {
    Objects.requireNonNull(tablePath, "path");
    return with(b -> b.setPath(tablePath));
  }

  /**
   * The same request reading only these columns, in this order (empty: all). Any name can be asked
   * for, commas and blanks included.
   *
   * @param names column names
   * @return the request
   */
  public DatasetRequest withColumns(List<String> names) {
    List<String> copy = List.copyOf(names);
    return with(b -> b.clearColumns().addAllColumns(copy));
  }

  /**
   * The same request reading only these columns, in this order.
   *
   * @param names column names
   * @return the request
   */
  public DatasetRequest withColumns(String... names) {
    return withColumns(Arrays.asList(names));
  }

  /**
   * The same request with a filter: a SQL expression over the table's columns, such as {@code
   * temp_c > 30 AND "odd name" = 'x'}.
   *
   * @param sql the filter, or null for none
   * @return the request
   */
  public DatasetRequest withFilter(String sql) {
    return with(b -> b.setFilter(sql == null ? "" : sql));
  }

  /**
   * The same request reading at most {@code n} rows (the server then plans one endpoint).
   *
   * @param n the limit (0 or more), or null for none
   * @return the request
   * @throws IllegalArgumentException for a negative limit
   */
  public DatasetRequest withLimit(Long n) {
    notNegative("limit", n);
    return with(b -> optional(n, b::setLimit, b::clearLimit));
  }

  /**
   * The same request keeping about this fraction of the rows, chosen by the seeded hash of each
   * row's position (the same rows for the same seed, whatever the partitioning).
   *
   * @param fraction between 0 and 1, or null for no sampling
   * @return the request
   */
  public DatasetRequest withSample(Double fraction) {
    return with(b -> optional(fraction, b::setSample, b::clearSample));
  }

  /**
   * The same request keeping exactly {@code n} rows (those with the smallest seeded hashes).
   *
   * @param n the sample size (0 or more), or null for no sampling
   * @return the request
   * @throws IllegalArgumentException for a negative size
   */
  public DatasetRequest withSampleRows(Long n) {
    notNegative("sampleRows", n);
    return with(b -> optional(n, b::setSampleRows, b::clearSampleRows));
  }

  /**
   * The same request with a sampling seed, read as an unsigned 64-bit value (so negative seeds, as
   * Spark's, are valid and distinct).
   *
   * @param seed the seed
   * @return the request
   */
  public DatasetRequest withSeed(long seed) {
    return with(b -> b.setSeed(seed));
  }

  /**
   * The same request asking for {@code n} endpoints (the server may plan fewer).
   *
   * @param n the number of endpoints (0 or more), or null for the server's default (about 64 MiB
   *     each)
   * @return the request
   * @throws IllegalArgumentException for a negative number
   */
  public DatasetRequest withPartitions(Integer n) {
    notNegative("partitions", n);
    return with(b -> optional(n, b::setPartitions, b::clearPartitions));
  }

  /**
   * The same request asking for compressed IPC bodies.
   *
   * @param codec {@code zstd}, {@code lz4}, or null or empty for none
   * @return the request
   */
  public DatasetRequest withCompression(String codec) {
    return with(b -> b.setCompression(codec == null ? "" : codec));
  }

  /**
   * For the manifest table: include each entry's file contents as a binary column.
   *
   * @param include whether to include contents
   * @return the request
   */
  public DatasetRequest withContent(boolean include) {
    return with(b -> b.setContent(include));
  }

  /**
   * For a DoPut: upload a part of this write session ({@link SheafClient#beginWrite}) instead of
   * committing a revision. The path names the table the part belongs to: a file ({@code
   * features.parquet}) or a folder ({@code features}) whose parts become {@code
   * features/part-NNNNN-ID.parquet}.
   *
   * @param id the session id, or null for none
   * @return the request
   */
  public DatasetRequest withSession(String id) {
    return with(b -> b.setSession(id == null ? "" : id));
  }

  /**
   * For a DoPut in a session: the part's position in its folder table (parts are ordered by it,
   * then by upload), such as a Spark partition index.
   *
   * @param position the position, or null for none
   * @return the request
   */
  public DatasetRequest withPart(Integer position) {
    return with(b -> optional(position, b::setPart, b::clearPart));
  }

  /**
   * Refuses a negative count: the message's fields are unsigned, where a negative Java value would
   * arrive as a huge one.
   */
  private static void notNegative(String parameter, Number n) {
    if (n != null && n.longValue() < 0) {
      throw new IllegalArgumentException(
          parameter + " must not be negative, not " + n + " (" + parameter + " is unsigned)");
    }
  }

  private static <T> void optional(T value, Consumer<T> set, Runnable clear) {
    if (value == null) {
      clear.run();
    } else {
      set.accept(value);
    }
  }

  /**
   * The table, {@code OWNER/NAME[@HASH|:TAG][/PATH]}, unencoded (for messages).
   *
   * @return the reference
   */
  public String reference() {
    return packageName() + revisionText() + (path().isEmpty() ? "" : "/" + path());
  }

  private String revisionText() {
    switch (proto.getRevisionCase()) {
      case TOP_HASH:
        return "@" + proto.getTopHash();
      case TAG:
        return ":" + proto.getTag();
      default:
        return "";
    }
  }

  /**
   * A column name as the URI's {@code columns=} list writes it: in double quotes (SQL's way, a
   * quote doubled) when it holds a comma or a quote, or has blanks at its edges.
   */
  private static String listedColumn(String name) {
    boolean plain =
        !name.isEmpty() && !name.contains(",") && !name.contains("\"") && name.strip().equals(name);
    return plain ? name : "\"" + name.replace("\"", "\"\"") + "\"";
  }

  /**
   * The request as a text dataset URI, percent-encoded, for people (messages, plans); the server
   * reads the same request from it.
   *
   * @return {@code sheaf://OWNER/NAME[@HASH|:TAG][/PATH][?PARAM=VALUE&...]}
   */
  @Override
  public String toString() {
    StringBuilder b = new StringBuilder("sheaf://").append(packageName()).append(revisionText());
    if (!path().isEmpty()) {
      b.append('/').append(PATH.escape(path()));
    }
    List<String> params = new ArrayList<>();
    if (proto.getColumnsCount() > 0) {
      List<String> names = new ArrayList<>();
      proto.getColumnsList().forEach(c -> names.add(listedColumn(c)));
      params.add("columns=" + VALUE.escape(String.join(",", names)));
    }
    if (filter() != null) {
      params.add("filter=" + VALUE.escape(filter()));
    }
    if (limit() != null) {
      params.add("limit=" + Long.toUnsignedString(limit()));
    }
    if (sample() != null) {
      params.add("sample=" + sample());
    }
    if (sampleRows() != null) {
      params.add("sample_rows=" + Long.toUnsignedString(sampleRows()));
    }
    if (seed() != 0) {
      params.add("seed=" + Long.toUnsignedString(seed()));
    }
    if (partitions() != null) {
      params.add("partitions=" + Integer.toUnsignedString(partitions()));
    }
    if (!compression().isEmpty()) {
      params.add("compression=" + VALUE.escape(compression()));
    }
    if (content()) {
      params.add("content=true");
    }
    if (!params.isEmpty()) {
      b.append('?').append(String.join("&", params));
    }
    return b.toString();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof DatasetRequest && ((DatasetRequest) o).proto.equals(proto);
  }

  @Override
  public int hashCode() {
    return proto.hashCode();
  }
}
