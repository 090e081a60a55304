package dev.sheaf.spark;

import dev.sheaf.client.Dataset;
import dev.sheaf.client.DatasetRequest;
import dev.sheaf.client.ErrorCode;
import dev.sheaf.client.LineageInput;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.connector.catalog.SupportsRead;
import org.apache.spark.sql.connector.catalog.SupportsWrite;
import org.apache.spark.sql.connector.catalog.TableCapability;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.connector.write.LogicalWriteInfo;
import org.apache.spark.sql.connector.write.WriteBuilder;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A package table. For reads it is pinned to one revision: the revision is resolved once, on first
 * need, so every scan of a DataFrame reads the same data even if the package moves on. It is also
 * the target of writes ({@link SheafWriteBuilder}), which need not exist yet.
 *
 * <p>Three kinds, by how Spark loaded it:
 *
 * <ul>
 *   <li>read by {@code spark.read...load()}: resolved at once (a missing table fails the load);
 *   <li>given a schema ({@code df.write}, a catalog table, a read with {@code .schema(...)}):
 *       resolved lazily; a table that does not exist yet has the given schema, and reading it fails
 *       with the server's NOT_FOUND;
 *   <li>the target of the connector's own inner write (option {@link SheafOptions#SAVE_MODE}):
 *       never resolved; it takes the written DataFrame's schema, and accepts any.
 * </ul>
 *
 * <p>Capabilities: batch reads; {@code V1_BATCH_WRITE} and {@code TRUNCATE} for the first two
 * kinds, so {@code df.write} (every save mode) and {@code INSERT [OVERWRITE]} come to {@link
 * SheafDataSource#createRelation} or a {@link SheafWriteBuilder}'s V1 write, which run the inner
 * write; {@code BATCH_WRITE}, {@code TRUNCATE} and {@code ACCEPT_ANY_SCHEMA} for the inner write's
 * target, written by {@link SheafBatchWrite}.
 */
final class SheafTable implements SupportsRead, SupportsWrite {
  private static final Logger LOG = LoggerFactory.getLogger(SheafTable.class);

  private final SheafOptions options;
  private final StructType given;
  private SheafConnection connection;
  private Resolved resolved;

  /** What the server said about the table: its revision and schema, or that it does not exist. */
  private static final class Resolved {
    final String topHash;
    final DatasetRequest pinned;
    final TableColumns columns;
    final int defaultEndpoints;
    final SheafException missing;

    Resolved(
        String topHash,
        DatasetRequest pinned,
        TableColumns columns,
        int defaultEndpoints,
        SheafException missing) {
      this.topHash = topHash;
      this.pinned = pinned;
      this.columns = columns;
      this.defaultEndpoints = defaultEndpoints;
      this.missing = missing;
    }
  }

  private SheafTable(SheafOptions options, StructType given) {
    this.options = options;
    this.given = given;
  }

  /**
   * Resolves a table now: connects (logging in once, with username and password), has the server
   * read the path (a dataset URI, sent as it is) for the table and its revision, then plans the
   * base read, pinned to that revision with the options' parameters, for its schema.
   *
   * @param options the read's options
   * @return the pinned table
   * @throws SheafException naming what the server refused, or a path with a query
   */
  static SheafTable load(SheafOptions options) {
    SheafTable t = new SheafTable(options, null);
    t.resolved();
    return t;
  }

  /**
   * A table resolved on first need (or never, for the inner write's target).
   *
   * @param options the options
   * @param schema the schema Spark gave (the written DataFrame's, a catalog's, a user's)
   * @return the table
   */
  static SheafTable lazy(SheafOptions options, StructType schema) {
    return new SheafTable(options, schema);
  }

  /**
   * @return whether this table is the target of the connector's inner write
   */
  boolean isWriteTarget() {
    return options.saveMode != null;
  }

  /**
   * @return the options the table was loaded with
   */
  SheafOptions options() {
    return options;
  }

  /**
   * @return how executors connect (server, token, TLS bytes; never a password); opened once, on the
   *     driver (logging in with username and password)
   */
  synchronized SheafConnection connection() {
    if (connection == null) {
      SheafConnection.Opened opened = SheafConnection.open(options);
      opened.client.close();
      connection = opened.connection;
    }
    return connection;
  }

  private synchronized Resolved resolved() {
    if (resolved == null) {
      resolved = resolve();
    }
    return resolved;
  }

  private Resolved resolve() {
    Dataset base;
    DatasetRequest pinned;
    try (SheafClient client = connection().client()) {
      Dataset table;
      try {
        table = client.dataset(options.table);
      } catch (SheafException e) {
        if (given != null && e.code() == ErrorCode.NOT_FOUND) {
          // Not there (yet): a write creates it; a read fails with this error.
          LOG.info("sheaf: {} does not exist: {}", options.table, e.getMessage());
          return new Resolved(null, null, null, 0, e);
        }
        throw e;
      }
      // The server writes the URI it read back, with its query: the path must have none.
      if (table.pinnedUri().indexOf('?') >= 0) {
        throw new SheafException(
            "sheaf: the path "
                + options.table
                + " names a table, with no query (?...): give partitions, sample, seed and filter"
                + " as options, and let Spark push columns and filters");
      }
      pinned = options.base(table.packageName(), table.topHash(), table.path());
      base = client.dataset(pinned);
    }
    String name = pinned.reference();
    TableColumns columns = new TableColumns(base.schema(), options.dropUnsupported, name);
    for (String why : columns.dropped()) {
      LOG.warn("sheaf: {}: left out, {}", name, why);
    }
    LOG.info("sheaf: {} resolved to top_hash {}", options.table, base.topHash());
    return new Resolved(base.topHash(), pinned, columns, base.endpoints().size(), null);
  }

  /** The resolved table, failing with the server's NOT_FOUND when it does not exist. */
  private Resolved present() {
    Resolved r = resolved();
    if (r.missing != null) {
      throw r.missing.withMessage(r.missing.getMessage());
    }
    return r;
  }

  /**
   * @return a new client of the table's server with its token (the caller closes it)
   */
  SheafClient client() {
    return connection().client();
  }

  /**
   * @return the resolved revision
   */
  String topHash() {
    return present().topHash;
  }

  /**
   * @return the table's request pinned to {@link #topHash()}, with the options' parameters
   */
  DatasetRequest pinned() {
    return present().pinned;
  }

  /**
   * @return {@code OWNER/NAME@TOP_HASH/PATH}
   */
  String reference() {
    return pinned().reference();
  }

  /**
   * @return the table's columns as the server sends them and Spark reads them
   */
  TableColumns tableColumns() {
    return present().columns;
  }

  /**
   * @return the endpoints the server plans for the table by default (with the options' parameters)
   */
  int defaultEndpoints() {
    return present().defaultEndpoints;
  }

  /**
   * What reading this table contributes to a write's lineage, when it was read (resolved and
   * present): its package, top hash, and URI pinned to that hash (with the {@code filter}, {@code
   * sample} and {@code seed} options, which choose the rows read; Spark's own pushed filters and
   * columns are not part of it).
   *
   * @return the input, or null
   */
  synchronized LineageInput lineageInput() {
    if (resolved == null || resolved.missing != null) {
      return null;
    }
    // The data read: the pinned table with the options' filter and sample (not partitions).
    return new LineageInput(
        resolved.pinned.packageName(),
        resolved.topHash,
        resolved.pinned.withPartitions(null).toString());
  }

  @Override
  public String name() {
    if (isWriteTarget()) {
      return "sheaf:" + options.table;
    }
    Resolved r = resolved();
    return "sheaf:" + (r.missing != null ? options.table : r.pinned.reference());
  }

  @Override
  public StructType schema() {
    if (isWriteTarget()) {
      return given;
    }
    Resolved r = resolved();
    return r.missing != null ? given : r.columns.spark();
  }

  @Override
  public Set<TableCapability> capabilities() {
    if (isWriteTarget()) {
      return EnumSet.of(
          TableCapability.BATCH_READ,
          TableCapability.BATCH_WRITE,
          TableCapability.TRUNCATE,
          TableCapability.ACCEPT_ANY_SCHEMA);
    }
    return EnumSet.of(
        TableCapability.BATCH_READ, TableCapability.V1_BATCH_WRITE, TableCapability.TRUNCATE);
  }

  @Override
  public Map<String, String> properties() {
    Resolved r = isWriteTarget() ? null : resolved();
    if (r == null || r.missing != null) {
      return Map.of("path", options.table, "server", options.server);
    }
    return Map.of(
        "top_hash",
        r.topHash,
        "package",
        r.pinned.packageName(),
        "path",
        r.pinned.path(),
        "server",
        options.server);
  }

  @Override
  public ScanBuilder newScanBuilder(CaseInsensitiveStringMap ignored) {
    Resolved r = present();
    if (given != null
        && given.fields().length > 0
        && !DataType.equalsIgnoreNullability(given, r.columns.spark())) {
      throw new SheafException(
          "sheaf: "
              + r.pinned.reference()
              + " has the schema "
              + r.columns.spark().simpleString()
              + ", not "
              + given.simpleString()
              + " (a schema cannot be given to a read; a catalog table made before the package"
              + " changed must be made again)");
    }
    return new SheafScanBuilder(this);
  }

  @Override
  public WriteBuilder newWriteBuilder(LogicalWriteInfo info) {
    return new SheafWriteBuilder(this, info);
  }
}
