package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.Decimal256Vector;
import org.apache.arrow.vector.DecimalVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;

/** Decimal256 of a precision of at most 38 to Decimal128 of the same precision and scale. */
final class Decimal256Converter extends ColumnConverter {
  Decimal256Converter(String column, BufferAllocator allocator) {
    super(column, allocator);
  }

  @Override
  ArrowType targetType(ArrowType source) {
    ArrowType.Decimal d = (ArrowType.Decimal) source;
    return new ArrowType.Decimal(d.getPrecision(), d.getScale(), 128);
  }

  @Override
  void fill(FieldVector source, FieldVector target, int n) {
    Decimal256Vector s = (Decimal256Vector) source;
    DecimalVector t = (DecimalVector) target;
    for (int i = 0; i < n; i++) {
      if (s.isNull(i)) {
        t.setNull(i);
      } else {
        t.set(i, s.getObject(i));
      }
    }
  }
}
