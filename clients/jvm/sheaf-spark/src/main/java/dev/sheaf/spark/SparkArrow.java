package dev.sheaf.spark;

import dev.sheaf.client.SheafException;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.CalendarIntervalType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DayTimeIntervalType;
import org.apache.spark.sql.types.MapType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.types.YearMonthIntervalType;
import org.apache.spark.sql.util.ArrowUtils;

/**
 * Spark schemas as Arrow schemas for writes, with Spark's own mapping ({@code ArrowUtils}, the one
 * {@code toArrow} and pandas UDFs use): timestamps as {@code timestamp[us, UTC]}, {@code
 * TIMESTAMP_NTZ} as {@code timestamp[us]}, decimals as decimal128, nested types as Arrow's.
 */
final class SparkArrow {
  /** The time zone of written timestamps (instants: any zone gives the same values). */
  static final String TIME_ZONE = "UTC";

  private SparkArrow() {}

  /**
   * The Arrow schema of written rows.
   *
   * @param schema the DataFrame's schema
   * @return its Arrow schema
   */
  static Schema arrow(StructType schema) {
    return ArrowUtils.toArrowSchema(schema, TIME_ZONE, true);
  }

  /** Whether a type is or holds an interval (which the server cannot store in Parquet). */
  static boolean hasInterval(DataType t) {
    if (t instanceof CalendarIntervalType
        || t instanceof DayTimeIntervalType
        || t instanceof YearMonthIntervalType) {
      return true;
    }
    if (t instanceof ArrayType) {
      return hasInterval(((ArrayType) t).elementType());
    }
    if (t instanceof MapType) {
      return hasInterval(((MapType) t).keyType()) || hasInterval(((MapType) t).valueType());
    }
    if (t instanceof StructType) {
      for (StructField f : ((StructType) t).fields()) {
        if (hasInterval(f.dataType())) {
          return true;
        }
      }
    }
    return false;
  }

  /**
   * Checks that every column can be sent, naming the first that cannot.
   *
   * @param schema the DataFrame's schema
   * @param target the table written, for messages
   * @throws SheafException naming the column and its type
   */
  static void check(StructType schema, String target) {
    java.util.Set<String> seen = new java.util.HashSet<>();
    for (StructField f : schema.fields()) {
      if (!seen.add(f.name())) {
        throw new SheafException(
            "sheaf: cannot write to " + target + ": two columns are named \"" + f.name() + "\"");
      }
      if (hasInterval(f.dataType())) {
        throw new SheafException(
            "sheaf: cannot write to "
                + target
                + ": column \""
                + f.name()
                + "\" is "
                + f.dataType().sql()
                + ": Parquet has no interval type (as for Spark's own Parquet writer); cast it to a"
                + " number or a string");
      }
      try {
        arrow(new StructType(new StructField[] {f}));
      } catch (RuntimeException e) {
        throw new SheafException(
            "sheaf: cannot write to "
                + target
                + ": column \""
                + f.name()
                + "\" is "
                + f.dataType().sql()
                + ", which has no Arrow type ("
                + e.getMessage()
                + ")");
      }
    }
  }
}
