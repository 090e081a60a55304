package dev.sheaf.spark;

import java.io.Serializable;
import org.apache.spark.sql.types.StructType;

/**
 * What an executor does with an endpoint's batches: which stream columns become which Spark
 * columns, with which conversion. Plain data, sent with every task.
 */
final class ReadPlan implements Serializable {
  private static final long serialVersionUID = 1L;

  /** For each output column, its index in the stream's schema. */
  final int[] streamIndex;

  /** For each output column, its conversion. */
  final SparkTypes.Conversion[] conversions;

  /** The output (Spark) schema; empty when Spark needs only row counts. */
  final StructType schema;

  /** The pinned dataset URI, for messages. */
  final String uri;

  ReadPlan(int[] streamIndex, SparkTypes.Conversion[] conversions, StructType schema, String uri) {
    this.streamIndex = streamIndex;
    this.conversions = conversions;
    this.schema = schema;
    this.uri = uri;
  }
}
