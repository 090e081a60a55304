package dev.sheaf.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.spark.sql.connector.expressions.Expression;
import org.apache.spark.sql.connector.expressions.Expressions;
import org.apache.spark.sql.connector.expressions.LiteralValue;
import org.apache.spark.sql.connector.expressions.filter.Predicate;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.unsafe.types.UTF8String;
import org.junit.jupiter.api.Test;

/**
 * The text of each operator and literal, checked without a server (the server runs them in
 * PushdownTest).
 */
class FilterTranslatorTest {
  private static final Map<String, Field> COLUMNS = new LinkedHashMap<>();

  static {
    COLUMNS.put("n", Field.nullable("n", new ArrowType.Int(64, true)));
    COLUMNS.put("s", Field.nullable("s", ArrowType.Utf8.INSTANCE));
    COLUMNS.put("Odd \"x\"", Field.nullable("Odd \"x\"", ArrowType.Utf8.INSTANCE));
    COLUMNS.put("utc", Field.nullable("utc", new ArrowType.Timestamp(TimeUnit.MICROSECOND, "UTC")));
    COLUMNS.put(
        "paris",
        Field.nullable("paris", new ArrowType.Timestamp(TimeUnit.MICROSECOND, "Europe/Paris")));
    COLUMNS.put(
        "naive", Field.nullable("naive", new ArrowType.Timestamp(TimeUnit.MICROSECOND, null)));
  }

  private final FilterTranslator t = new FilterTranslator(COLUMNS);

  private static Predicate p(String name, Expression... children) {
    return new Predicate(name, children);
  }

  private static Expression col(String name) {
    return org.apache.spark.sql.connector.expressions.FieldReference.column(name);
  }

  private static Expression str(String s) {
    return new LiteralValue<>(UTF8String.fromString(s), DataTypes.StringType);
  }

  private Optional<String> text(Predicate pr) {
    return t.translate(pr);
  }

  @Test
  void comparisonsKeepTheirOperator() {
    for (String op : List.of("=", "<>", "<", "<=", ">", ">=")) {
      assertEquals(
          Optional.of("(\"n\" " + op + " (5))"), text(p(op, col("n"), Expressions.literal(5L))));
    }
    assertEquals(Optional.of("((5) < \"n\")"), text(p("<", Expressions.literal(5L), col("n"))));
    assertEquals(
        Optional.of("(\"n\" IS NOT DISTINCT FROM (5))"),
        text(p("<=>", col("n"), Expressions.literal(5L))));
  }

  @Test
  void identifiersAndStringsAreQuoted() {
    assertEquals(
        Optional.of("(\"Odd \"\"x\"\"\" = 'it''s \\ 100%')"),
        text(p("=", col("Odd \"x\""), str("it's \\ 100%"))));
    assertEquals(
        Optional.of("starts_with(\"s\", 'a''b')"), text(p("STARTS_WITH", col("s"), str("a'b"))));
    assertEquals(Optional.of("(\"s\" IN ('a', 'b'))"), text(p("IN", col("s"), str("a"), str("b"))));
  }

  @Test
  void logicalOperatorsNest() {
    Predicate a = p(">", col("n"), Expressions.literal(1L));
    Predicate b = p("IS_NULL", col("s"));
    assertEquals(
        Optional.of("((\"n\" > (1)) OR (NOT (\"s\" IS NULL)))"), text(p("OR", a, p("NOT", b))));
  }

  @Test
  void doublesAreWrittenExactly() {
    assertEquals(
        Optional.of("(\"n\" > (0.1000000000000000055511151231257827021181583404541015625))"),
        text(p(">", col("n"), Expressions.literal(0.1d))));
    assertEquals(Optional.empty(), text(p(">", col("n"), Expressions.literal(Double.NaN))));
  }

  @Test
  void timestampsOnlyWhereZonesAgree() {
    Expression instant = new LiteralValue<>(1_767_225_600_000_000L, DataTypes.TimestampType);
    Expression local = new LiteralValue<>(1_767_225_600_000_000L, DataTypes.TimestampNTZType);
    assertEquals(
        Optional.of("(\"utc\" > to_timestamp_micros(1767225600000000))"),
        text(p(">", col("utc"), instant)));
    assertEquals(
        Optional.of("(\"naive\" > to_timestamp_micros(1767225600000000))"),
        text(p(">", col("naive"), local)));
    assertEquals(Optional.empty(), text(p(">", col("paris"), instant)));
    assertEquals(Optional.empty(), text(p(">", col("naive"), instant)));
  }

  @Test
  void unknownColumnsFunctionsAndNestedFieldsAreNotPushed() {
    assertEquals(Optional.empty(), text(p("=", col("absent"), Expressions.literal(1L))));
    assertEquals(Optional.empty(), text(p("=", Expressions.column("s.x"), str("a"))));
    assertEquals(Optional.empty(), text(p("=", Expressions.apply("UPPER", col("s")), str("A"))));
    Predicate partly =
        p(
            "AND",
            p("=", col("n"), Expressions.literal(1L)),
            p("=", Expressions.apply("UPPER", col("s")), str("A")));
    assertEquals(Optional.empty(), text(partly));
    assertEquals(List.of("(\"n\" = (1))"), t.translatableConjuncts(partly));
    assertTrue(text(p("IN", col("s"), str("x".repeat(FilterTranslator.MAX_LENGTH)))).isEmpty());
  }
}
