package dev.sheaf.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.apache.arrow.vector.types.IntervalUnit;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.junit.jupiter.api.Test;

/** Which Arrow types Spark takes as they are, which are converted, and how refusals read. */
class SparkTypesTest {
  private static Field field(String name, ArrowType t, Field... children) {
    return new Field(name, FieldType.nullable(t), List.of(children));
  }

  @Test
  void nativeAndConvertedTypes() {
    assertEquals(
        SparkTypes.Conversion.NONE,
        SparkTypes.map(field("a", new ArrowType.Int(64, true))).conversion());
    assertEquals(
        SparkTypes.Conversion.UINT32,
        SparkTypes.map(field("a", new ArrowType.Int(32, false))).conversion());
    SparkTypes.Mapping ns =
        SparkTypes.map(field("t", new ArrowType.Timestamp(TimeUnit.NANOSECOND, "UTC")));
    assertEquals(SparkTypes.Conversion.TIMESTAMP, ns.conversion());
    assertEquals("timestamp", ns.field().dataType().catalogString());
    assertEquals(
        "timestamp_ntz",
        SparkTypes.map(field("t", new ArrowType.Timestamp(TimeUnit.MILLISECOND, null)))
            .field()
            .dataType()
            .catalogString());
    assertEquals(
        "decimal(20,0)",
        SparkTypes.map(field("u", new ArrowType.Int(64, false)))
            .field()
            .dataType()
            .catalogString());
    assertEquals(
        "array<string>",
        SparkTypes.map(field("l", ArrowType.List.INSTANCE, field("e", ArrowType.Utf8.INSTANCE)))
            .field()
            .dataType()
            .catalogString());
  }

  @Test
  void refusalsNameTheColumnAndThePartInside() {
    SparkTypes.Mapping time =
        SparkTypes.map(field("clock", new ArrowType.Time(TimeUnit.MICROSECOND, 64)));
    assertFalse(time.supported());
    assertTrue(time.unsupported().startsWith("column \"clock\" is Time("), time.unsupported());
    SparkTypes.Mapping nested =
        SparkTypes.map(
            field("counts", ArrowType.List.INSTANCE, field("item", new ArrowType.Int(32, false))));
    assertFalse(nested.supported());
    assertTrue(
        nested.unsupported().contains("column \"counts\" element is Int(32, false)"),
        nested.unsupported());
    assertTrue(
        nested.unsupported().contains("only top-level columns are converted"),
        nested.unsupported());
    SparkTypes.Mapping struct =
        SparkTypes.map(
            field(
                "s",
                ArrowType.Struct.INSTANCE,
                field("ok", new ArrowType.Int(8, true)),
                field("when", new ArrowType.Interval(IntervalUnit.DAY_TIME))));
    assertTrue(
        struct.unsupported().contains("column \"s\" field \"when\" is Interval(DAY_TIME)"),
        struct.unsupported());
    assertFalse(SparkTypes.map(field("d", new ArrowType.Decimal(50, 2, 256))).supported());
  }
}
