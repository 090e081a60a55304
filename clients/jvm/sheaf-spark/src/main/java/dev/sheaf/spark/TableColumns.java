package dev.sheaf.spark;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * The columns of a table as the server sends them (Arrow) and as Spark sees them: their Spark
 * types, how each is converted, and which are left out because Spark cannot read them.
 */
final class TableColumns {
  private final List<Field> arrow;
  private final Map<String, SparkTypes.Mapping> mappings = new LinkedHashMap<>();
  private final List<String> dropped = new ArrayList<>();
  private final StructType spark;

  /**
   * Maps a server schema.
   *
   * @param schema the Arrow schema of the table (every column)
   * @param dropUnsupported leave out columns Spark cannot read, instead of failing
   * @param table the table, for messages
   * @throws dev.sheaf.client.SheafException naming the first unsupported column, unless dropping
   */
  TableColumns(Schema schema, boolean dropUnsupported, String table) {
    this.arrow = schema.getFields();
    List<StructField> fields = new ArrayList<>();
    for (Field f : arrow) {
      if (mappings.containsKey(f.getName())) {
        throw new dev.sheaf.client.SheafException(
            "sheaf: " + table + " has two columns named \"" + f.getName() + "\"");
      }
      SparkTypes.Mapping m = SparkTypes.map(f);
      mappings.put(f.getName(), m);
      if (m.supported()) {
        fields.add(m.field());
      } else if (dropUnsupported) {
        dropped.add(m.unsupported());
      } else {
        throw new dev.sheaf.client.SheafException(
            "sheaf: "
                + table
                + ": "
                + m.unsupported()
                + ". Read the other columns with .option(\"unsupportedColumns\", \"drop\").");
      }
    }
    this.spark = new StructType(fields.toArray(new StructField[0]));
  }

  /**
   * @return the Spark schema (supported columns, in the table's order)
   */
  StructType spark() {
    return spark;
  }

  /**
   * @return why each left-out column was left out
   */
  List<String> dropped() {
    return Collections.unmodifiableList(dropped);
  }

  /**
   * @return the mapping of a column, or null for an unknown name
   */
  SparkTypes.Mapping mapping(String column) {
    return mappings.get(column);
  }

  /**
   * @return the columns the server can filter exactly as Spark would: supported, not converted
   */
  Map<String, Field> filterable() {
    Map<String, Field> out = new LinkedHashMap<>();
    for (Field f : arrow) {
      SparkTypes.Mapping m = mappings.get(f.getName());
      if (m.supported() && m.conversion() == SparkTypes.Conversion.NONE) {
        out.put(f.getName(), f);
      }
    }
    return out;
  }

  /**
   * The column cheapest to send when Spark needs only row counts: the narrowest fixed-width column,
   * else the first column.
   *
   * @return its name
   */
  String cheapest() {
    String best = arrow.get(0).getName();
    int bestWidth = Integer.MAX_VALUE;
    for (Field f : arrow) {
      int w = width(f.getType());
      if (w < bestWidth) {
        best = f.getName();
        bestWidth = w;
      }
    }
    return best;
  }

  private static int width(ArrowType t) {
    switch (t.getTypeID()) {
      case Bool:
        return 1;
      case Int:
        return ((ArrowType.Int) t).getBitWidth();
      case FloatingPoint:
        return 32;
      case Date:
        return 32;
      case Timestamp:
      case Duration:
        return 64;
      case Null:
        return 0;
      default:
        return 1000;
    }
  }
}
