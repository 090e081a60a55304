package dev.sheaf.spark;

import java.math.BigDecimal;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BaseIntVector;
import org.apache.arrow.vector.DecimalVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.UInt8Vector;
import org.apache.arrow.vector.types.pojo.ArrowType;

/**
 * Unsigned integers to the next wider signed type: uint8 to short, uint16 to int, uint32 to long,
 * uint64 to decimal(20, 0).
 */
final class UnsignedIntConverter extends ColumnConverter {
  UnsignedIntConverter(String column, BufferAllocator allocator) {
    super(column, allocator);
  }

  @Override
  ArrowType targetType(ArrowType source) {
    int bits = ((ArrowType.Int) source).getBitWidth();
    return bits == 64 ? new ArrowType.Decimal(20, 0, 128) : new ArrowType.Int(bits * 2, true);
  }

  @Override
  void fill(FieldVector source, FieldVector target, int n) {
    if (source instanceof UInt8Vector) {
      UInt8Vector s = (UInt8Vector) source;
      DecimalVector t = (DecimalVector) target;
      for (int i = 0; i < n; i++) {
        if (s.isNull(i)) {
          t.setNull(i);
        } else {
          t.set(i, new BigDecimal(s.getObjectNoOverflow(i)));
        }
      }
      return;
    }
    // getValueAsLong of UInt1, UInt2 and UInt4 vectors is unsigned: it fits the wider type.
    BaseIntVector s = (BaseIntVector) source;
    BaseIntVector t = (BaseIntVector) target;
    for (int i = 0; i < n; i++) {
      if (s.isNull(i)) {
        target.setNull(i);
      } else {
        t.setWithPossibleTruncate(i, s.getValueAsLong(i));
      }
    }
  }
}
