package dev.sheaf.spark;

import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.vector.types.DateUnit;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.IntervalUnit;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.DayTimeIntervalType;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.Metadata;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.YearMonthIntervalType;

/**
 * Arrow types to Spark types. Spark's {@code ArrowColumnVector} reads a fixed set of Arrow vectors;
 * a column of another type is either converted per batch ({@link Conversion}) or unsupported, with
 * a reason naming the column.
 */
final class SparkTypes {
  private SparkTypes() {}

  /** How a top-level column reaches Spark. */
  enum Conversion {
    /** Handed to Spark as it arrives (no copy). */
    NONE,
    /** uint8 to short. */
    UINT8,
    /** uint16 to int. */
    UINT16,
    /** uint32 to long. */
    UINT32,
    /** uint64 to decimal(20,0). */
    UINT64,
    /**
     * Timestamps in seconds, milliseconds or nanoseconds to microseconds (nanoseconds truncated
     * toward the past).
     */
    TIMESTAMP,
    /** Durations in seconds, milliseconds or nanoseconds to microseconds. */
    DURATION,
    /** date64 (milliseconds) to date32 (days). */
    DATE_MILLIS,
    /** Half floats to float. */
    FLOAT16,
    /** Fixed-size binary to binary. */
    FIXED_BINARY,
    /** Decimal256 with a precision of at most 38 to Decimal128. */
    DECIMAL256
  }

  /**
   * What a column becomes in Spark.
   *
   * @param field the Spark field (null when unsupported)
   * @param conversion how its vectors are converted
   * @param unsupported why Spark cannot read it (null when supported)
   */
  record Mapping(StructField field, Conversion conversion, String unsupported) {
    boolean supported() {
      return unsupported == null;
    }
  }

  /**
   * Maps a top-level column.
   *
   * @param f the Arrow field
   * @return its Spark field and conversion, or why it is unsupported
   */
  static Mapping map(Field f) {
    Conversion conversion = conversion(f.getType());
    DataType t;
    List<String> problems = new ArrayList<>();
    if (conversion != null && conversion != Conversion.NONE) {
      t = converted(f.getType(), conversion);
    } else {
      t = nativeType(f, "column \"" + f.getName() + "\"", false, problems);
    }
    if (t == null) {
      String why =
          problems.isEmpty()
              ? "column \""
                  + f.getName()
                  + "\" is "
                  + describe(f.getType())
                  + ", which Spark cannot read"
              : String.join("; ", problems);
      return new Mapping(null, null, why);
    }
    return new Mapping(
        new StructField(f.getName(), t, f.isNullable(), Metadata.empty()),
        conversion == null ? Conversion.NONE : conversion,
        null);
  }

  /** The conversion a top-level type needs, NONE if Spark reads it as is, null if neither. */
  private static Conversion conversion(ArrowType t) {
    switch (t.getTypeID()) {
      case Int:
        {
          ArrowType.Int i = (ArrowType.Int) t;
          if (i.getIsSigned()) {
            return Conversion.NONE;
          }
          switch (i.getBitWidth()) {
            case 8:
              return Conversion.UINT8;
            case 16:
              return Conversion.UINT16;
            case 32:
              return Conversion.UINT32;
            default:
              return Conversion.UINT64;
          }
        }
      case Timestamp:
        return ((ArrowType.Timestamp) t).getUnit() == TimeUnit.MICROSECOND
            ? Conversion.NONE
            : Conversion.TIMESTAMP;
      case Duration:
        return ((ArrowType.Duration) t).getUnit() == TimeUnit.MICROSECOND
            ? Conversion.NONE
            : Conversion.DURATION;
      case Date:
        return ((ArrowType.Date) t).getUnit() == DateUnit.DAY
            ? Conversion.NONE
            : Conversion.DATE_MILLIS;
      case FloatingPoint:
        return ((ArrowType.FloatingPoint) t).getPrecision() == FloatingPointPrecision.HALF
            ? Conversion.FLOAT16
            : Conversion.NONE;
      case FixedSizeBinary:
        return Conversion.FIXED_BINARY;
      case Decimal:
        {
          ArrowType.Decimal d = (ArrowType.Decimal) t;
          if (d.getBitWidth() == 128) {
            return Conversion.NONE;
          }
          return d.getPrecision() <= DecimalType.MAX_PRECISION() ? Conversion.DECIMAL256 : null;
        }
      default:
        return Conversion.NONE;
    }
  }

  private static DataType converted(ArrowType t, Conversion c) {
    switch (c) {
      case UINT8:
        return DataTypes.ShortType;
      case UINT16:
        return DataTypes.IntegerType;
      case UINT32:
        return DataTypes.LongType;
      case UINT64:
        return DataTypes.createDecimalType(20, 0);
      case TIMESTAMP:
        return ((ArrowType.Timestamp) t).getTimezone() == null
            ? DataTypes.TimestampNTZType
            : DataTypes.TimestampType;
      case DURATION:
        return DayTimeIntervalType.apply();
      case DATE_MILLIS:
        return DataTypes.DateType;
      case FLOAT16:
        return DataTypes.FloatType;
      case FIXED_BINARY:
        return DataTypes.BinaryType;
      case DECIMAL256:
        {
          ArrowType.Decimal d = (ArrowType.Decimal) t;
          return DataTypes.createDecimalType(d.getPrecision(), d.getScale());
        }
      default:
        throw new IllegalArgumentException(c.toString());
    }
  }

  /**
   * The Spark type of an Arrow type that {@code ArrowColumnVector} reads as is (at any depth), or
   * null, adding why to {@code problems}.
   */
  private static DataType nativeType(Field f, String path, boolean nested, List<String> problems) {
    ArrowType t = f.getType();
    switch (t.getTypeID()) {
      case Null:
        return DataTypes.NullType;
      case Bool:
        return DataTypes.BooleanType;
      case Int:
        {
          ArrowType.Int i = (ArrowType.Int) t;
          if (!i.getIsSigned()) {
            break;
          }
          switch (i.getBitWidth()) {
            case 8:
              return DataTypes.ByteType;
            case 16:
              return DataTypes.ShortType;
            case 32:
              return DataTypes.IntegerType;
            default:
              return DataTypes.LongType;
          }
        }
      case FloatingPoint:
        switch (((ArrowType.FloatingPoint) t).getPrecision()) {
          case SINGLE:
            return DataTypes.FloatType;
          case DOUBLE:
            return DataTypes.DoubleType;
          default:
            break;
        }
        break;
      case Decimal:
        {
          ArrowType.Decimal d = (ArrowType.Decimal) t;
          if (d.getBitWidth() == 128) {
            return DataTypes.createDecimalType(d.getPrecision(), d.getScale());
          }
          break;
        }
      case Utf8:
      case LargeUtf8:
        return DataTypes.StringType;
      case Binary:
      case LargeBinary:
        return DataTypes.BinaryType;
      case Date:
        if (((ArrowType.Date) t).getUnit() == DateUnit.DAY) {
          return DataTypes.DateType;
        }
        break;
      case Timestamp:
        {
          ArrowType.Timestamp ts = (ArrowType.Timestamp) t;
          if (ts.getUnit() == TimeUnit.MICROSECOND) {
            return ts.getTimezone() == null ? DataTypes.TimestampNTZType : DataTypes.TimestampType;
          }
          break;
        }
      case Duration:
        if (((ArrowType.Duration) t).getUnit() == TimeUnit.MICROSECOND) {
          return DayTimeIntervalType.apply();
        }
        break;
      case Interval:
        {
          IntervalUnit u = ((ArrowType.Interval) t).getUnit();
          if (u == IntervalUnit.YEAR_MONTH) {
            return YearMonthIntervalType.apply();
          }
          if (u == IntervalUnit.MONTH_DAY_NANO) {
            return DataTypes.CalendarIntervalType;
          }
          break;
        }
      case List:
        {
          Field element = f.getChildren().get(0);
          DataType e = nativeType(element, path + " element", true, problems);
          return e == null ? null : DataTypes.createArrayType(e, element.isNullable());
        }
      case Map:
        {
          Field entries = f.getChildren().get(0);
          Field key = entries.getChildren().get(0);
          Field value = entries.getChildren().get(1);
          DataType k = nativeType(key, path + " key", true, problems);
          DataType v = nativeType(value, path + " value", true, problems);
          return k == null || v == null ? null : DataTypes.createMapType(k, v, value.isNullable());
        }
      case Struct:
        {
          List<StructField> fields = new ArrayList<>();
          boolean ok = true;
          for (Field c : f.getChildren()) {
            DataType ct = nativeType(c, path + " field \"" + c.getName() + "\"", true, problems);
            ok &= ct != null;
            if (ct != null) {
              fields.add(new StructField(c.getName(), ct, c.isNullable(), Metadata.empty()));
            }
          }
          return ok ? DataTypes.createStructType(fields) : null;
        }
      default:
        break;
    }
    problems.add(
        path
            + " is "
            + describe(t)
            + ", which Spark cannot read"
            + (nested ? " (only top-level columns are converted)" : ""));
    return null;
  }

  /** A readable name of an Arrow type. */
  static String describe(ArrowType t) {
    return t.toString();
  }
}
