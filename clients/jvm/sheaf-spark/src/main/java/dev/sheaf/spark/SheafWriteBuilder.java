package dev.sheaf.spark;

import java.util.HashMap;
import java.util.Map;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.connector.write.LogicalWriteInfo;
import org.apache.spark.sql.connector.write.SupportsTruncate;
import org.apache.spark.sql.connector.write.V1Write;
import org.apache.spark.sql.connector.write.Write;
import org.apache.spark.sql.connector.write.WriteBuilder;
import org.apache.spark.sql.sources.InsertableRelation;
import sheaf.v1.Sheaf;

/**
 * Builds a write of a {@link SheafTable}: append, or overwrite when Spark truncates ({@code
 * mode("overwrite")}, {@code INSERT OVERWRITE}).
 *
 * <p>For the inner write's target ({@link SheafTable#isWriteTarget()}) it builds a {@link
 * SheafWrite}; its save mode picks the commit's mode: append (folder: parts join the table),
 * overwrite (the table is replaced), errorifexists and ignore (the commit fails with ALREADY_EXISTS
 * if the table exists; ignore then drops the session quietly). For other tables ({@code INSERT}
 * into a catalog table) it builds a V1 write that runs the inner write ({@link SheafWrites#save}).
 */
final class SheafWriteBuilder implements WriteBuilder, SupportsTruncate {
  private final SheafTable table;
  private final LogicalWriteInfo info;
  private boolean truncate;

  SheafWriteBuilder(SheafTable table, LogicalWriteInfo info) {
    this.table = table;
    this.info = info;
  }

  @Override
  public WriteBuilder truncate() {
    truncate = true;
    return this;
  }

  @Override
  public Write build() {
    if (!table.isWriteTarget()) {
      Map<String, String> options = new HashMap<>(table.options().given);
      options.putAll(info.options().asCaseSensitiveMap());
      options.remove(SheafOptions.SAVE_MODE);
      SaveMode mode = truncate ? SaveMode.Overwrite : SaveMode.Append;
      return new V1Write() {
        @Override
        public InsertableRelation toInsertableRelation() {
          return (data, overwrite) ->
              SheafWrites.save(data, options, overwrite ? SaveMode.Overwrite : mode);
        }

        @Override
        public String description() {
          return "Sheaf " + mode.name().toLowerCase(java.util.Locale.ROOT) + " " + table.name();
        }
      };
    }
    String saveMode = table.options().saveMode;
    Sheaf.WriteMode mode;
    if (truncate || saveMode.equals("overwrite")) {
      mode = Sheaf.WriteMode.WRITE_MODE_OVERWRITE;
    } else if (saveMode.equals("errorifexists") || saveMode.equals("ignore")) {
      mode = Sheaf.WriteMode.WRITE_MODE_ERROR_IF_EXISTS;
    } else if (saveMode.equals("append")) {
      mode = Sheaf.WriteMode.WRITE_MODE_APPEND;
    } else {
      throw new dev.sheaf.client.SheafException(
          "sheaf: unknown save mode \"" + saveMode + "\" (internal option)");
    }
    return new SheafWrite(table, info, mode, saveMode.equals("ignore"));
  }
}
