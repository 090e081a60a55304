package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.DurationVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;

/** Durations in seconds, milliseconds or nanoseconds to microseconds. */
final class DurationConverter extends ColumnConverter {
  DurationConverter(String column, BufferAllocator allocator) {
    super(column, allocator);
  }

  @Override
  ArrowType targetType(ArrowType source) {
    return new ArrowType.Duration(TimeUnit.MICROSECOND);
  }

  @Override
  void fill(FieldVector source, FieldVector target, int n) {
    DurationVector s = (DurationVector) source;
    DurationVector t = (DurationVector) target;
    TimeUnit unit = s.getUnit();
    for (int i = 0; i < n; i++) {
      if (s.isNull(i)) {
        t.setNull(i);
      } else {
        t.set(i, toMicros(DurationVector.get(s.getDataBuffer(), i), unit));
      }
    }
  }
}
