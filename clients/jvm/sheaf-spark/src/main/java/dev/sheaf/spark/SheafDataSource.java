package dev.sheaf.spark;

import java.util.Map;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.catalog.TableProvider;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.sources.DataSourceRegister;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * The {@code sheaf} data source: {@code spark.read.format("sheaf").option("server", URL)
 * .load("OWNER/NAME[@HASH|:TAG]/PATH")}, or in SQL {@code CREATE TEMPORARY VIEW v USING sheaf
 * OPTIONS (server 'grpc://...', path 'OWNER/NAME/PATH')}. See {@link SheafOptions} for options.
 */
public final class SheafDataSource implements TableProvider, DataSourceRegister {
  /** The table resolved by the last inferSchema, reused by getTable (Spark calls both in turn). */
  private SheafTable last;

  private Map<String, String> lastOptions;

  /** Created by Spark. */
  public SheafDataSource() {}

  @Override
  public String shortName() {
    return "sheaf";
  }

  @Override
  public StructType inferSchema(CaseInsensitiveStringMap options) {
    return table(options.asCaseSensitiveMap()).schema();
  }

  @Override
  public Table getTable(
      StructType schema, Transform[] partitioning, Map<String, String> properties) {
    SheafTable t = table(properties);
    if (schema != null && !schema.equals(t.schema())) {
      throw new dev.sheaf.client.SheafException(
          "sheaf: a schema cannot be given for "
              + t.reference()
              + "; its schema is "
              + t.schema().simpleString());
    }
    return t;
  }

  private synchronized SheafTable table(Map<String, String> options) {
    if (last == null || !options.equals(lastOptions)) {
      last = SheafTable.load(SheafOptions.parse(options));
      lastOptions = Map.copyOf(options);
    }
    return last;
  }
}
