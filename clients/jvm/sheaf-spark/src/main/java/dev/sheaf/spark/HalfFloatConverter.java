package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float2Vector;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;

/** Half floats to floats. */
final class HalfFloatConverter extends ColumnConverter {
  HalfFloatConverter(String column, BufferAllocator allocator) {
    super(column, allocator);
  }

  @Override
  ArrowType targetType(ArrowType source) {
    return new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE);
  }

  @Override
  void fill(FieldVector source, FieldVector target, int n) {
    Float2Vector s = (Float2Vector) source;
    Float4Vector t = (Float4Vector) target;
    for (int i = 0; i < n; i++) {
      if (s.isNull(i)) {
        t.setNull(i);
      } else {
        t.set(i, s.getValueAsFloat(i));
      }
    }
  }
}
