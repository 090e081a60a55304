package dev.sheaf.jdbc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.jdbc.testing.SqlServer;
import dev.sheaf.jdbc.testing.SqlServerExtension;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * {@code DatabaseMetaData} as {@code alice}: catalogs, schemas (packages), tables, columns, table
 * types, keys, type info, and what the driver takes from GetSqlInfo.
 */
@ExtendWith(SqlServerExtension.class)
class MetadataTest {
  private static Connection conn;
  private static DatabaseMetaData md;

  @BeforeAll
  static void connect(SqlServer server) throws SQLException {
    conn = server.connect();
    md = conn.getMetaData();
  }

  @AfterAll
  static void close() throws SQLException {
    if (conn != null) {
      conn.close();
    }
  }

  /** One column of every row of {@code rs}, which it closes. */
  private static List<String> column(ResultSet rs, String name) throws SQLException {
    List<String> values = new ArrayList<>();
    try (rs) {
      while (rs.next()) {
        values.add(rs.getString(name));
      }
    }
    return values;
  }

  @Test
  void catalogIsSheaf() throws SQLException {
    assertEquals(List.of("sheaf"), column(md.getCatalogs(), "TABLE_CAT"));
  }

  @Test
  void schemasAreTheReadablePackages() throws SQLException {
    List<String> all = column(md.getSchemas(), "TABLE_SCHEM");
    for (String p : List.of("test/sales", "test/stores", "test/types")) {
      assertTrue(all.contains(p), p + " in " + all);
    }
    // alice's grants cover test/* only.
    assertFalse(all.contains("demo/weather"), "demo/weather is not granted: " + all);
    // The pattern is SQL LIKE.
    assertEquals(
        List.of("test/sales", "test/stores"),
        column(md.getSchemas("sheaf", "test/s%"), "TABLE_SCHEM").stream().sorted().toList());
    try (ResultSet rs = md.getSchemas("sheaf", "test/sales")) {
      assertTrue(rs.next());
      assertEquals("sheaf", rs.getString("TABLE_CATALOG"));
      assertEquals("test/sales", rs.getString("TABLE_SCHEM"));
      assertFalse(rs.next());
    }
  }

  @Test
  void tablesOfAPackage() throws SQLException {
    Map<String, String> types = new TreeMap<>();
    try (ResultSet rs = md.getTables("sheaf", "test/sales", "%", null)) {
      while (rs.next()) {
        assertEquals("sheaf", rs.getString("TABLE_CAT"));
        assertEquals("test/sales", rs.getString("TABLE_SCHEM"));
        types.put(rs.getString("TABLE_NAME"), rs.getString("TABLE_TYPE"));
      }
    }
    // "tables" too: a folder holding Parquet files is itself a table (as in Flight requests).
    assertEquals(
        Map.of("_manifest", "TABLE", "tables", "TABLE", "tables/sales.parquet", "TABLE"), types);
    // Filtered by type and a LIKE pattern (_ is one character); a folder of parts is one table.
    List<String> parts =
        column(
            md.getTables("sheaf", "test/types", "tables/part_", new String[] {"TABLE"}),
            "TABLE_NAME");
    assertEquals(List.of("tables/parts"), parts);
  }

  @Test
  void columnsWithNamesAndJdbcTypes() throws SQLException {
    List<String> names = new ArrayList<>();
    List<Integer> types = new ArrayList<>();
    List<Integer> positions = new ArrayList<>();
    try (ResultSet rs = md.getColumns("sheaf", "test/sales", "tables/sales.parquet", "%")) {
      while (rs.next()) {
        assertEquals("test/sales", rs.getString("TABLE_SCHEM"));
        assertEquals("tables/sales.parquet", rs.getString("TABLE_NAME"));
        names.add(rs.getString("COLUMN_NAME"));
        types.add(rs.getInt("DATA_TYPE"));
        positions.add(rs.getInt("ORDINAL_POSITION"));
      }
    }
    assertEquals(List.of("id", "store_id", "item", "qty", "price", "sold_on"), names);
    assertEquals(
        List.of(
            Types.BIGINT, Types.INTEGER, Types.VARCHAR, Types.INTEGER, Types.DOUBLE, Types.DATE),
        types);
    assertEquals(List.of(1, 2, 3, 4, 5, 6), positions);
  }

  @Test
  void tableTypesAndKeys() throws SQLException {
    assertEquals(List.of("TABLE"), column(md.getTableTypes(), "TABLE_TYPE"));
    try (ResultSet rs = md.getPrimaryKeys("sheaf", "test/sales", "tables/sales.parquet")) {
      assertFalse(rs.next(), "no primary keys");
    }
    try (ResultSet rs = md.getImportedKeys("sheaf", "test/sales", "tables/sales.parquet")) {
      assertFalse(rs.next(), "no imported keys");
    }
    try (ResultSet rs = md.getExportedKeys("sheaf", "test/stores", "tables/stores.parquet")) {
      assertFalse(rs.next(), "no exported keys");
    }
  }

  @Test
  void typeInfoAnswers() throws SQLException {
    // The 18.3 driver answers getTypeInfo itself (Avatica's default) without asking the server
    // (GetXdbcTypeInfo): this only checks that the call works and has the JDBC columns.
    try (ResultSet rs = md.getTypeInfo()) {
      assertNotNull(rs.getMetaData());
      List<String> cols = new ArrayList<>();
      for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) {
        cols.add(rs.getMetaData().getColumnName(i));
      }
      assertTrue(cols.containsAll(List.of("TYPE_NAME", "DATA_TYPE")), cols.toString());
      while (rs.next()) {
        assertNotNull(rs.getString("TYPE_NAME"));
      }
    }
  }

  @Test
  void serverFactsFromGetSqlInfo() throws SQLException {
    assertEquals("Sheaf", md.getDatabaseProductName());
    String version = md.getDatabaseProductVersion();
    assertTrue(version != null && !version.isBlank(), "version: " + version);
    assertTrue(md.isReadOnly(), "Sheaf SQL is read-only");
    assertEquals("\"", md.getIdentifierQuoteString());
  }
}
