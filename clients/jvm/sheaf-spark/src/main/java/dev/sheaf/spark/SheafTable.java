package dev.sheaf.spark;

import dev.sheaf.client.Dataset;
import dev.sheaf.client.DatasetRequest;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.connector.catalog.SupportsRead;
import org.apache.spark.sql.connector.catalog.TableCapability;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A package table pinned to one revision: the revision is resolved once, when the table is loaded,
 * so every scan of a DataFrame reads the same data even if the package moves on.
 */
final class SheafTable implements SupportsRead {
  private static final Logger LOG = LoggerFactory.getLogger(SheafTable.class);

  private final SheafConnection connection;
  private final String topHash;
  private final DatasetRequest pinned;
  private final TableColumns columns;

  private SheafTable(
      SheafConnection connection, String topHash, DatasetRequest pinned, TableColumns columns) {
    this.connection = connection;
    this.topHash = topHash;
    this.pinned = pinned;
    this.columns = columns;
  }

  /**
   * Resolves a table: connects (logging in once, with username and password), has the server read
   * the path (a dataset URI, sent as it is) for the table and its revision, then plans the base
   * read, pinned to that revision with the options' parameters, for its schema.
   *
   * @param options the read's options
   * @return the pinned table
   * @throws SheafException naming what the server refused, or a path with a query
   */
  static SheafTable load(SheafOptions options) {
    Dataset base;
    DatasetRequest pinned;
    SheafConnection.Opened opened = SheafConnection.open(options);
    try (SheafClient client = opened.client) {
      Dataset table = client.dataset(options.table);
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
    return new SheafTable(opened.connection, base.topHash(), pinned, columns);
  }

  /**
   * @return how executors connect (server, token, TLS bytes; never a password)
   */
  SheafConnection connection() {
    return connection;
  }

  /**
   * @return a new client of the table's server with its token (the caller closes it)
   */
  SheafClient client() {
    return connection.client();
  }

  /**
   * @return the resolved revision
   */
  String topHash() {
    return topHash;
  }

  /**
   * @return the table's URI pinned to {@link #topHash()}, with the options' parameters
   */
  DatasetRequest pinned() {
    return pinned;
  }

  /**
   * @return {@code OWNER/NAME@TOP_HASH/PATH}
   */
  String reference() {
    return pinned.reference();
  }

  /**
   * @return the table's columns as the server sends them and Spark reads them
   */
  TableColumns tableColumns() {
    return columns;
  }

  @Override
  public String name() {
    return "sheaf:" + pinned.reference();
  }

  @Override
  public StructType schema() {
    return columns.spark();
  }

  @Override
  public Set<TableCapability> capabilities() {
    return Set.of(TableCapability.BATCH_READ);
  }

  @Override
  public Map<String, String> properties() {
    return Map.of(
        "top_hash",
        topHash,
        "package",
        pinned.packageName(),
        "path",
        pinned.path(),
        "server",
        connection.server);
  }

  @Override
  public ScanBuilder newScanBuilder(CaseInsensitiveStringMap ignored) {
    return new SheafScanBuilder(this);
  }
}
