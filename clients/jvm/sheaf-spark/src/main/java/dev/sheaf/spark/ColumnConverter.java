package dev.sheaf.spark;

import java.math.BigDecimal;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BaseFixedWidthVector;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.DateDayVector;
import org.apache.arrow.vector.DateMilliVector;
import org.apache.arrow.vector.Decimal256Vector;
import org.apache.arrow.vector.DecimalVector;
import org.apache.arrow.vector.DurationVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.FixedSizeBinaryVector;
import org.apache.arrow.vector.Float2Vector;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.SmallIntVector;
import org.apache.arrow.vector.TimeStampMicroTZVector;
import org.apache.arrow.vector.TimeStampMicroVector;
import org.apache.arrow.vector.TimeStampVector;
import org.apache.arrow.vector.UInt1Vector;
import org.apache.arrow.vector.UInt2Vector;
import org.apache.arrow.vector.UInt4Vector;
import org.apache.arrow.vector.UInt8Vector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.ViewVarBinaryVector;
import org.apache.arrow.vector.ViewVarCharVector;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.FieldType;

/**
 * Converts one top-level column, batch by batch, into a vector Spark's
 * {@code ArrowColumnVector} reads. The target vector is reused across batches and freed by
 * {@link #close()}. Only columns of the types in {@link SparkTypes.Conversion} pass through here;
 * all others reach Spark without a copy.
 */
final class ColumnConverter implements AutoCloseable {
  private final SparkTypes.Conversion kind;
  private final String column;
  private final BufferAllocator allocator;
  private FieldVector target;

  ColumnConverter(SparkTypes.Conversion kind, String column, BufferAllocator allocator) {
    this.kind = kind;
    this.column = column;
    this.allocator = allocator;
  }

  /**
   * Converts a batch's column.
   *
   * @param source the column as it arrived
   * @return the converted column, valid until the next call or {@link #close()}
   */
  FieldVector convert(FieldVector source) {
    int n = source.getValueCount();
    if (target == null) {
      target = FieldType.nullable(targetType(source)).createNewSingleVector(source.getName(), allocator, null);
    }
    target.clear();
    target.setInitialCapacity(n);
    target.allocateNew();
    try {
      fill(source, n);
    } catch (ArithmeticException e) {
      throw new IllegalStateException("column \"" + column + "\": a value does not fit Spark's type after conversion (" + e.getMessage() + ")", e);
    }
    target.setValueCount(n);
    return target;
  }

  private ArrowType targetType(FieldVector source) {
    ArrowType t = source.getField().getType();
    switch (kind) {
      case UINT8: return new ArrowType.Int(16, true);
      case UINT16: return new ArrowType.Int(32, true);
      case UINT32: return new ArrowType.Int(64, true);
      case UINT64: return new ArrowType.Decimal(20, 0, 128);
      case TIMESTAMP: return new ArrowType.Timestamp(TimeUnit.MICROSECOND, ((ArrowType.Timestamp) t).getTimezone());
      case DURATION: return new ArrowType.Duration(TimeUnit.MICROSECOND);
      case DATE_MILLIS: return new ArrowType.Date(org.apache.arrow.vector.types.DateUnit.DAY);
      case FLOAT16: return new ArrowType.FloatingPoint(org.apache.arrow.vector.types.FloatingPointPrecision.SINGLE);
      case FIXED_BINARY:
      case BINARY_VIEW: return ArrowType.Binary.INSTANCE;
      case STRING_VIEW: return ArrowType.Utf8.INSTANCE;
      case DECIMAL256: {
        ArrowType.Decimal d = (ArrowType.Decimal) t;
        return new ArrowType.Decimal(d.getPrecision(), d.getScale(), 128);
      }
      default: throw new IllegalArgumentException("no conversion " + kind);
    }
  }

  /** Microseconds per unit, as a multiplier (positive) or divisor (negative). */
  private static long scaleToMicros(TimeUnit unit) {
    switch (unit) {
      case SECOND: return 1_000_000L;
      case MILLISECOND: return 1_000L;
      case MICROSECOND: return 1L;
      default: return -1_000L;
    }
  }

  private static long toMicros(long v, long scale) {
    return scale > 0 ? Math.multiplyExact(v, scale) : Math.floorDiv(v, -scale);
  }

  private void fill(FieldVector source, int n) {
    switch (kind) {
      case UINT8: {
        UInt1Vector s = (UInt1Vector) source;
        SmallIntVector t = (SmallIntVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, (short) s.getValueAsLong(i));
          }
        }
        break;
      }
      case UINT16: {
        UInt2Vector s = (UInt2Vector) source;
        IntVector t = (IntVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, s.get(i));
          }
        }
        break;
      }
      case UINT32: {
        UInt4Vector s = (UInt4Vector) source;
        BigIntVector t = (BigIntVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, s.getValueAsLong(i));
          }
        }
        break;
      }
      case UINT64: {
        UInt8Vector s = (UInt8Vector) source;
        DecimalVector t = (DecimalVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, new BigDecimal(s.getObjectNoOverflow(i)));
          }
        }
        break;
      }
      case TIMESTAMP: {
        TimeStampVector s = (TimeStampVector) source;
        long scale = scaleToMicros(((ArrowType.Timestamp) s.getField().getType()).getUnit());
        BaseFixedWidthVector t = (BaseFixedWidthVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else if (t instanceof TimeStampMicroTZVector) {
            ((TimeStampMicroTZVector) t).set(i, toMicros(s.get(i), scale));
          } else {
            ((TimeStampMicroVector) t).set(i, toMicros(s.get(i), scale));
          }
        }
        break;
      }
      case DURATION: {
        DurationVector s = (DurationVector) source;
        long scale = scaleToMicros(((ArrowType.Duration) s.getField().getType()).getUnit());
        DurationVector t = (DurationVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, toMicros(DurationVector.get(s.getDataBuffer(), i), scale));
          }
        }
        break;
      }
      case DATE_MILLIS: {
        DateMilliVector s = (DateMilliVector) source;
        DateDayVector t = (DateDayVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, Math.toIntExact(Math.floorDiv(s.get(i), 86_400_000L)));
          }
        }
        break;
      }
      case FLOAT16: {
        Float2Vector s = (Float2Vector) source;
        Float4Vector t = (Float4Vector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, s.getValueAsFloat(i));
          }
        }
        break;
      }
      case FIXED_BINARY: {
        FixedSizeBinaryVector s = (FixedSizeBinaryVector) source;
        VarBinaryVector t = (VarBinaryVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.setSafe(i, s.get(i));
          }
        }
        break;
      }
      case STRING_VIEW: {
        ViewVarCharVector s = (ViewVarCharVector) source;
        VarCharVector t = (VarCharVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.setSafe(i, s.get(i));
          }
        }
        break;
      }
      case BINARY_VIEW: {
        ViewVarBinaryVector s = (ViewVarBinaryVector) source;
        VarBinaryVector t = (VarBinaryVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.setSafe(i, s.get(i));
          }
        }
        break;
      }
      case DECIMAL256: {
        Decimal256Vector s = (Decimal256Vector) source;
        DecimalVector t = (DecimalVector) target;
        for (int i = 0; i < n; i++) {
          if (s.isNull(i)) {
            t.setNull(i);
          } else {
            t.set(i, s.getObject(i));
          }
        }
        break;
      }
      default:
        throw new IllegalArgumentException("no conversion " + kind);
    }
  }

  /** Frees the target vector. Idempotent. */
  @Override
  public void close() {
    if (target != null) {
      target.close();
      target = null;
    }
  }
}
