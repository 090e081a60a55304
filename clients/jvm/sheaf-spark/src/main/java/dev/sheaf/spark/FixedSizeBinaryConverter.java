package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.FixedSizeBinaryVector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.types.pojo.ArrowType;

/** Fixed-size binary to binary. */
final class FixedSizeBinaryConverter extends ColumnConverter {
  FixedSizeBinaryConverter(String column, BufferAllocator allocator) {
    super(column, allocator);
  }

  @Override
  ArrowType targetType(ArrowType source) {
    return ArrowType.Binary.INSTANCE;
  }

  @Override
  void fill(FieldVector source, FieldVector target, int n) {
    FixedSizeBinaryVector s = (FixedSizeBinaryVector) source;
    VarBinaryVector t = (VarBinaryVector) target;
    for (int i = 0; i < n; i++) {
      if (s.isNull(i)) {
        t.setNull(i);
      } else {
        t.setSafe(i, s.get(i));
      }
    }
  }
}
