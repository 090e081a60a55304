package dev.sheaf.spark;

import dev.sheaf.client.ErrorCode;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import java.io.IOException;
import java.io.InputStream;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SaveMode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs the connector's inner write (see {@link SheafDataSource}): {@code data} written through
 * DataSource V2 to a target table carrying the save mode in {@link SheafOptions#SAVE_MODE}.
 */
final class SheafWrites {
  private static final Logger LOG = LoggerFactory.getLogger(SheafWrites.class);

  private SheafWrites() {}

  /**
   * Writes {@code data} with a save mode: append, overwrite (the table is replaced), errorifexists
   * (the commit fails with ALREADY_EXISTS if the table exists) or ignore (nothing happens if the
   * table exists).
   *
   * @param data the rows
   * @param options the write's options (server, path, credentials, message, ...)
   * @param mode the save mode
   */
  static void save(Dataset<Row> data, Map<String, String> options, SaveMode mode) {
    Map<String, String> o = new HashMap<>(options);
    String name = mode.name().toLowerCase(Locale.ROOT);
    if (mode == SaveMode.Ignore && exists(SheafOptions.parse(o))) {
      LOG.info("sheaf: {} exists: nothing written (mode ignore)", o.get("path"));
      return;
    }
    o.put(SheafOptions.SAVE_MODE, name);
    data.write()
        .format(SheafDataSource.class.getName())
        .options(o)
        .mode(mode == SaveMode.Overwrite ? SaveMode.Overwrite : SaveMode.Append)
        .save();
  }

  /** Whether the table exists in the package's latest revision. */
  static boolean exists(SheafOptions options) {
    options.writeTarget(); // a bad target fails here, naming it
    SheafConnection.Opened opened = SheafConnection.open(options);
    try (SheafClient client = opened.client) {
      client.schema(options.table);
      return true;
    } catch (SheafException e) {
      if (e.code() == ErrorCode.NOT_FOUND) {
        return false;
      }
      throw e;
    }
  }

  /**
   * @return {@code spark VERSION sheaf-spark VERSION}, the tool recorded in written revisions
   */
  static String tool(String sparkVersion) {
    return "spark " + sparkVersion + " sheaf-spark " + version();
  }

  /**
   * @return the connector's version (from the jar), or {@code unknown}
   */
  static String version() {
    try (InputStream in = SheafWrites.class.getResourceAsStream("sheaf-spark.properties")) {
      if (in != null) {
        Properties p = new Properties();
        p.load(in);
        String v = p.getProperty("version");
        if (v != null && !v.startsWith("${")) {
          return v;
        }
      }
    } catch (IOException e) {
      LOG.debug("sheaf: no version resource", e);
    }
    return "unknown";
  }
}
