package dev.sheaf.spark;

import java.util.Map;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SQLContext;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.catalog.TableProvider;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.sources.BaseRelation;
import org.apache.spark.sql.sources.CreatableRelationProvider;
import org.apache.spark.sql.sources.DataSourceRegister;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The {@code sheaf} data source.
 *
 * <ul>
 *   <li>Reads: {@code spark.read.format("sheaf").option("server", URL)
 *       .load("OWNER/NAME[@HASH|:TAG]/PATH")}, or in SQL {@code CREATE TEMPORARY VIEW v USING sheaf
 *       OPTIONS (server 'grpc://...', path 'OWNER/NAME/PATH')}.
 *   <li>Writes: {@code df.write.format("sheaf").option("server", URL).mode(MODE)
 *       .save("OWNER/NAME/PATH")} with every save mode, and {@code INSERT [OVERWRITE]} into a table
 *       made with {@code CREATE TABLE t USING sheaf OPTIONS (...)}. One write is one new revision.
 * </ul>
 *
 * <p>How save modes reach the connector: Spark writes a DataSource V2 {@code TableProvider}'s table
 * only in modes append and overwrite, and refuses errorifexists and ignore for a table with {@code
 * BATCH_WRITE}. So, as Delta Lake's source does, the tables Spark loads here declare {@code
 * V1_BATCH_WRITE}: {@code df.write} in any mode comes to {@link #createRelation} (Spark's V1 path,
 * which carries the mode) and {@code INSERT} to a {@link SheafWriteBuilder}'s V1 write. Both run
 * one inner DataSource V2 write of the same rows with the mode in an internal option ({@link
 * SheafOptions#SAVE_MODE}); its target declares {@code BATCH_WRITE} and is written by {@link
 * SheafBatchWrite}: a session, one part per task, one commit. errorifexists commits with {@code
 * ERROR_IF_EXISTS} (the server refuses an existing table, ALREADY_EXISTS); ignore does nothing when
 * the table exists (checked first, and again at the commit).
 *
 * <p>See {@link SheafOptions} for options.
 */
public final class SheafDataSource
    implements TableProvider, DataSourceRegister, CreatableRelationProvider {
  /** The table resolved by the last inferSchema, reused by getTable (Spark calls both in turn). */
  private SheafTable last;

  private Map<String, String> lastOptions;

  /** Created by Spark. */
  public SheafDataSource() {}

  @Override
  public String shortName() {
    return "sheaf";
  }

  /** Spark passes the written DataFrame's schema (and a catalog's) to {@link #getTable}. */
  @Override
  public boolean supportsExternalMetadata() {
    return true;
  }

  @Override
  public synchronized StructType inferSchema(CaseInsensitiveStringMap options) {
    Map<String, String> o = options.asCaseSensitiveMap();
    if (last == null || !o.equals(lastOptions)) {
      last = SheafTable.load(SheafOptions.parse(o));
      lastOptions = Map.copyOf(o);
    }
    return last.schema();
  }

  @Override
  public synchronized Table getTable(
      StructType schema, Transform[] partitioning, Map<String, String> properties) {
    if (partitioning != null && partitioning.length > 0) {
      throw new dev.sheaf.client.SheafException(
          "sheaf: tables are not partitioned by columns (partitionBy): a write of "
              + properties.get("path")
              + " is one folder of part files");
    }
    if (last != null && properties.equals(lastOptions) && schema == last.schema()) {
      return last; // inferSchema, then getTable with what it answered: a read
    }
    return SheafTable.lazy(SheafOptions.parse(properties), schema);
  }

  /**
   * Spark's V1 write path, which {@code df.write.format("sheaf").save()} takes in every mode (see
   * the class comment): runs the inner write of {@code data} with the mode.
   *
   * @param sqlContext the session
   * @param mode the save mode
   * @param parameters the write's options
   * @param data the rows
   * @return a relation of the written schema (Spark does not read it)
   */
  @Override
  public BaseRelation createRelation(
      SQLContext sqlContext,
      SaveMode mode,
      scala.collection.immutable.Map<String, String> parameters,
      Dataset<Row> data) {
    SheafWrites.save(data, CollectionConverters.asJava(parameters), mode);
    StructType schema = data.schema();
    return new BaseRelation() {
      @Override
      public SQLContext sqlContext() {
        return sqlContext;
      }

      @Override
      public StructType schema() {
        return schema;
      }
    };
  }
}
