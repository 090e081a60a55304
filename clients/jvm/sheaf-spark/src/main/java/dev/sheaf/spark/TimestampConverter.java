package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.TimeStampVector;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;

/** Timestamps in seconds, milliseconds or nanoseconds to microseconds, keeping the time zone. */
final class TimestampConverter extends ColumnConverter {
  TimestampConverter(String column, BufferAllocator allocator) {
    super(column, allocator);
  }

  @Override
  ArrowType targetType(ArrowType source) {
    return new ArrowType.Timestamp(
        TimeUnit.MICROSECOND, ((ArrowType.Timestamp) source).getTimezone());
  }

  @Override
  void fill(FieldVector source, FieldVector target, int n) {
    TimeStampVector s = (TimeStampVector) source;
    TimeStampVector t = (TimeStampVector) target;
    TimeUnit unit = ((ArrowType.Timestamp) s.getField().getType()).getUnit();
    for (int i = 0; i < n; i++) {
      if (s.isNull(i)) {
        t.setNull(i);
      } else {
        t.set(i, toMicros(s.get(i), unit));
      }
    }
  }
}
