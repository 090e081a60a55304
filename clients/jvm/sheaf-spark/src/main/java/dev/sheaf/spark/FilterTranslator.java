package dev.sheaf.spark;

import java.math.BigDecimal;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.spark.sql.connector.expressions.Expression;
import org.apache.spark.sql.connector.expressions.Literal;
import org.apache.spark.sql.connector.expressions.NamedReference;
import org.apache.spark.sql.connector.expressions.filter.Predicate;
import org.apache.spark.sql.types.BooleanType;
import org.apache.spark.sql.types.ByteType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DateType;
import org.apache.spark.sql.types.Decimal;
import org.apache.spark.sql.types.DecimalType;
import org.apache.spark.sql.types.DoubleType;
import org.apache.spark.sql.types.FloatType;
import org.apache.spark.sql.types.IntegerType;
import org.apache.spark.sql.types.LongType;
import org.apache.spark.sql.types.ShortType;
import org.apache.spark.sql.types.StringType;
import org.apache.spark.sql.types.TimestampNTZType;
import org.apache.spark.sql.types.TimestampType;

/**
 * Spark's V2 predicates as the server's filter language (DataFusion SQL over the table's columns).
 * Identifiers are always double-quoted (case kept, {@code "} doubled), strings single-quoted
 * ({@code '} doubled; backslashes are literal), and every operator is parenthesised. A predicate is
 * translated only when its meaning on the server is Spark's: anything else (unknown functions,
 * casts, nested fields, binary or NaN literals, columns the connector converts) yields empty, and
 * Spark evaluates it after the scan.
 */
final class FilterTranslator {
  /** Longest filter text pushed for one predicate (it travels in the URI). */
  static final int MAX_LENGTH = 16 * 1024;

  private static final Set<String> COMPARISONS = Set.of("=", "<>", "<", "<=", ">", ">=");
  private static final Set<String> UTC =
      Set.of("UTC", "Etc/UTC", "+00:00", "Z", "GMT", "Etc/GMT", "+0000", "00:00");

  /** Top-level columns the server filters as Spark would: name to its Arrow field. */
  private final Map<String, Field> columns;

  /**
   * A translator over the table's columns.
   *
   * @param columns columns that may appear in a pushed filter (those read without conversion)
   */
  FilterTranslator(Map<String, Field> columns) {
    this.columns = columns;
  }

  /**
   * Translates a predicate.
   *
   * @param p a Spark predicate
   * @return its filter text, or empty if it cannot be pushed
   */
  Optional<String> translate(Predicate p) {
    String s = predicate(p);
    return s == null || s.length() > MAX_LENGTH ? Optional.empty() : Optional.of(s);
  }

  /**
   * The parts of a predicate that can be pushed when it is a conjunction of which only some parts
   * translate (Spark still evaluates the whole predicate).
   *
   * @param p a Spark predicate
   * @return the translatable conjuncts
   */
  List<String> translatableConjuncts(Predicate p) {
    List<String> out = new ArrayList<>();
    if (p.name().equals("AND")) {
      for (Expression c : p.children()) {
        if (c instanceof Predicate) {
          Optional<String> whole = translate((Predicate) c);
          if (whole.isPresent()) {
            out.add(whole.get());
          } else {
            out.addAll(translatableConjuncts((Predicate) c));
          }
        }
      }
    }
    return out;
  }

  private String predicate(Predicate p) {
    Expression[] c = p.children();
    String name = p.name();
    switch (name) {
      case "ALWAYS_TRUE":
        return "TRUE";
      case "ALWAYS_FALSE":
        return "FALSE";
      case "AND":
      case "OR":
        {
          String l = child(c[0]);
          String r = child(c[1]);
          return l == null || r == null ? null : "(" + l + " " + name + " " + r + ")";
        }
      case "NOT":
        {
          String x = child(c[0]);
          return x == null ? null : "(NOT " + x + ")";
        }
      case "IS_NULL":
      case "IS_NOT_NULL":
        {
          String x = operand(c[0], null);
          return x == null
              ? null
              : "(" + x + (name.equals("IS_NULL") ? " IS NULL)" : " IS NOT NULL)");
        }
      case "IN":
        {
          Field f = column(c[0]);
          String x = operand(c[0], null);
          if (x == null) {
            return null;
          }
          List<String> values = new ArrayList<>();
          for (int i = 1; i < c.length; i++) {
            String v = operand(c[i], f);
            if (v == null) {
              return null;
            }
            values.add(v);
          }
          return values.isEmpty() ? null : "(" + x + " IN (" + String.join(", ", values) + "))";
        }
      case "STARTS_WITH":
      case "ENDS_WITH":
      case "CONTAINS":
        {
          String x = operand(c[0], null);
          String v = c[1] instanceof Literal ? literal((Literal<?>) c[1], null) : null;
          return x == null || v == null
              ? null
              : name.toLowerCase(Locale.ROOT) + "(" + x + ", " + v + ")";
        }
      case "<=>":
        {
          Field f = column(c[0]) != null ? column(c[0]) : column(c[1]);
          String l = operand(c[0], f);
          String r = operand(c[1], f);
          return l == null || r == null ? null : "(" + l + " IS NOT DISTINCT FROM " + r + ")";
        }
      default:
        {
          if (!COMPARISONS.contains(name) || c.length != 2) {
            return null;
          }
          Field f = column(c[0]) != null ? column(c[0]) : column(c[1]);
          String l = operand(c[0], f);
          String r = operand(c[1], f);
          return l == null || r == null ? null : "(" + l + " " + name + " " + r + ")";
        }
    }
  }

  private String child(Expression e) {
    return e instanceof Predicate ? predicate((Predicate) e) : operand(e, null);
  }

  /** The column a reference names, if it is a top-level column the server filters on. */
  private Field column(Expression e) {
    if (e instanceof NamedReference) {
      String[] names = ((NamedReference) e).fieldNames();
      return names.length == 1 ? columns.get(names[0]) : null;
    }
    return null;
  }

  /** A column reference or a literal (typed for comparison with {@code against}). */
  private String operand(Expression e, Field against) {
    if (e instanceof NamedReference) {
      Field f = column(e);
      return f == null ? null : quoteIdentifier(f.getName());
    }
    if (e instanceof Literal) {
      return literal((Literal<?>) e, against);
    }
    return null;
  }

  /** A literal in DataFusion SQL, or null if it cannot be written exactly. */
  private static String literal(Literal<?> lit, Field against) {
    Object v = lit.value();
    DataType t = lit.dataType();
    if (v == null) {
      return "NULL";
    }
    if (t instanceof BooleanType) {
      return ((Boolean) v) ? "TRUE" : "FALSE";
    }
    if (t instanceof ByteType
        || t instanceof ShortType
        || t instanceof IntegerType
        || t instanceof LongType) {
      return "(" + v + ")";
    }
    if (t instanceof FloatType || t instanceof DoubleType) {
      double d = ((Number) v).doubleValue();
      if (Double.isNaN(d) || Double.isInfinite(d)) {
        return null;
      }
      // The exact decimal value of the double: DataFusion reads it back to the same double.
      String text = new BigDecimal(d).toPlainString();
      return "(" + (text.contains(".") ? text : text + ".0") + ")";
    }
    if (t instanceof StringType) {
      return quoteString(v.toString());
    }
    if (t instanceof DecimalType) {
      DecimalType dt = (DecimalType) t;
      BigDecimal d = v instanceof Decimal ? ((Decimal) v).toJavaBigDecimal() : (BigDecimal) v;
      return "CAST('"
          + d.toPlainString()
          + "' AS DECIMAL("
          + dt.precision()
          + ", "
          + dt.scale()
          + "))";
    }
    if (t instanceof DateType) {
      LocalDate day = LocalDate.ofEpochDay(((Number) v).longValue());
      if (day.getYear() < 1 || day.getYear() > 9999) {
        return null;
      }
      return "CAST('" + day + "' AS DATE)";
    }
    if (t instanceof TimestampType || t instanceof TimestampNTZType) {
      return timestamp(((Number) v).longValue(), t instanceof TimestampType, against);
    }
    return null;
  }

  /**
   * A timestamp literal in microseconds, comparable with the column it is compared with: naive with
   * naive, and with a UTC column as UTC. Columns in other time zones are not compared (DataFusion
   * would read the literal as local time in that zone).
   */
  private static String timestamp(long micros, boolean instant, Field against) {
    if (against == null || !(against.getType() instanceof ArrowType.Timestamp)) {
      return null;
    }
    ArrowType.Timestamp ts = (ArrowType.Timestamp) against.getType();
    if (ts.getUnit() != TimeUnit.MICROSECOND) {
      return null;
    }
    boolean utcColumn = ts.getTimezone() != null && UTC.contains(ts.getTimezone());
    boolean naiveColumn = ts.getTimezone() == null;
    if ((instant && utcColumn) || (!instant && naiveColumn)) {
      return "to_timestamp_micros(" + micros + ")";
    }
    return null;
  }

  /** {@code "name"} with {@code "} doubled. */
  static String quoteIdentifier(String name) {
    return "\"" + name.replace("\"", "\"\"") + "\"";
  }

  /** {@code 'text'} with {@code '} doubled. */
  static String quoteString(String s) {
    return "'" + s.replace("'", "''") + "'";
  }
}
