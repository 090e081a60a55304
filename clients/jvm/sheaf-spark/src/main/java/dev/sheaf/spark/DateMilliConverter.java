package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.DateDayVector;
import org.apache.arrow.vector.DateMilliVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.DateUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;

/** date64 (milliseconds) to date32 (days, floored). */
final class DateMilliConverter extends ColumnConverter {
  private static final long MILLIS_PER_DAY = 86_400_000L;

  DateMilliConverter(String column, BufferAllocator allocator) {
    super(column, allocator);
  }

  @Override
  ArrowType targetType(ArrowType source) {
    return new ArrowType.Date(DateUnit.DAY);
  }

  @Override
  void fill(FieldVector source, FieldVector target, int n) {
    DateMilliVector s = (DateMilliVector) source;
    DateDayVector t = (DateDayVector) target;
    for (int i = 0; i < n; i++) {
      if (s.isNull(i)) {
        t.setNull(i);
      } else {
        t.set(i, Math.toIntExact(Math.floorDiv(s.get(i), MILLIS_PER_DAY)));
      }
    }
  }
}
