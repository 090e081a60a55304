package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.FieldType;

/**
 * Converts one top-level column, batch by batch, into a vector Spark's {@code ArrowColumnVector}
 * reads: one subclass per family of Arrow vectors ({@link #of}). The target vector is reused across
 * batches and freed by {@link #close()}. Only columns of the types in {@link SparkTypes.Conversion}
 * pass through here; all others reach Spark without a copy.
 */
abstract class ColumnConverter implements AutoCloseable {
  private final String column;
  private final BufferAllocator allocator;
  private FieldVector target;

  ColumnConverter(String column, BufferAllocator allocator) {
    this.column = column;
    this.allocator = allocator;
  }

  /**
   * The converter of a conversion.
   *
   * @param kind the conversion (not NONE)
   * @param column the column's name, for messages
   * @param allocator where the converted vectors are allocated
   * @return the converter; close it
   */
  static ColumnConverter of(SparkTypes.Conversion kind, String column, BufferAllocator allocator) {
    switch (kind) {
      case UINT8:
      case UINT16:
      case UINT32:
      case UINT64:
        return new UnsignedIntConverter(column, allocator);
      case TIMESTAMP:
        return new TimestampConverter(column, allocator);
      case DURATION:
        return new DurationConverter(column, allocator);
      case DATE_MILLIS:
        return new DateMilliConverter(column, allocator);
      case FLOAT16:
        return new HalfFloatConverter(column, allocator);
      case FIXED_BINARY:
        return new FixedSizeBinaryConverter(column, allocator);
      case DECIMAL256:
        return new Decimal256Converter(column, allocator);
      default:
        throw new IllegalArgumentException("no conversion " + kind);
    }
  }

  /**
   * The Arrow type Spark reads for a column of this family.
   *
   * @param source the column's type as it arrives
   * @return the converted type
   */
  abstract ArrowType targetType(ArrowType source);

  /**
   * Converts {@code n} values, nulls included, into {@code target} (allocated for them).
   *
   * @param source the column as it arrived
   * @param target the converted column, of {@link #targetType}
   * @param n the number of values
   */
  abstract void fill(FieldVector source, FieldVector target, int n);

  /**
   * Converts a batch's column.
   *
   * @param source the column as it arrived
   * @return the converted column, valid until the next call or {@link #close()}
   */
  final FieldVector convert(FieldVector source) {
    int n = source.getValueCount();
    if (target == null) {
      target =
          FieldType.nullable(targetType(source.getField().getType()))
              .createNewSingleVector(source.getName(), allocator, null);
    }
    target.clear();
    target.setInitialCapacity(n);
    target.allocateNew();
    try {
      fill(source, target, n);
    } catch (ArithmeticException e) {
      throw new IllegalStateException(
          "column \""
              + column
              + "\": a value does not fit Spark's type after conversion ("
              + e.getMessage()
              + ")",
          e);
    }
    target.setValueCount(n);
    return target;
  }

  /**
   * A value in a time unit as microseconds: exact for coarser units (or an ArithmeticException on
   * overflow), floored for nanoseconds.
   */
  static long toMicros(long value, TimeUnit unit) {
    switch (unit) {
      case SECOND:
        return Math.multiplyExact(value, 1_000_000L);
      case MILLISECOND:
        return Math.multiplyExact(value, 1_000L);
      case MICROSECOND:
        return value;
      default:
        return Math.floorDiv(value, 1_000L);
    }
  }

  /** Frees the target vector. Idempotent. */
  @Override
  public final void close() {
    if (target != null) {
      target.close();
      target = null;
    }
  }
}
