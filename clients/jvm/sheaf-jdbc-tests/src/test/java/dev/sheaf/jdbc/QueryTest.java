package dev.sheaf.jdbc;

import static dev.sheaf.jdbc.testing.SqlServer.SALES;
import static dev.sheaf.jdbc.testing.SqlServer.STORES;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.jdbc.testing.SalesData;
import dev.sheaf.jdbc.testing.SqlServer;
import dev.sheaf.jdbc.testing.SqlServerExtension;
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.time.Instant;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * {@code Statement.executeQuery} through the Flight SQL JDBC driver over TLS as {@code alice}:
 * values and JDBC types of plain SELECTs, full scans, aggregates, a join across two packages,
 * revision-pinned schemas, the {@code _manifest} table and the {@code sheaf()} table function.
 */
@ExtendWith(SqlServerExtension.class)
class QueryTest {
  private static SqlServer server;
  private static Connection conn;

  @BeforeAll
  static void connect(SqlServer shared) throws SQLException {
    server = shared;
    conn = server.connect();
  }

  @AfterAll
  static void close() throws SQLException {
    if (conn != null) {
      conn.close();
    }
  }

  /** The single value of a one-row, one-column query. */
  private static long single(String sql) throws SQLException {
    try (Statement s = conn.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      assertTrue(rs.next(), "no row: " + sql);
      long v = rs.getLong(1);
      assertFalse(rs.next(), "more than one row: " + sql);
      return v;
    }
  }

  @Test
  void selectReturnsTheTableValuesWithTheirJdbcTypes() throws SQLException {
    try (Statement s = conn.createStatement();
        ResultSet rs =
            s.executeQuery(
                "SELECT id, store_id, item, qty, price, sold_on FROM "
                    + SALES
                    + " WHERE id < 10 ORDER BY id")) {
      ResultSetMetaData md = rs.getMetaData();
      assertEquals(6, md.getColumnCount());
      List<String> names = new ArrayList<>();
      List<Integer> types = new ArrayList<>();
      for (int i = 1; i <= 6; i++) {
        names.add(md.getColumnName(i));
        types.add(md.getColumnType(i));
      }
      assertEquals(List.of("id", "store_id", "item", "qty", "price", "sold_on"), names);
      assertEquals(
          List.of(
              Types.BIGINT, Types.INTEGER, Types.VARCHAR, Types.INTEGER, Types.DOUBLE, Types.DATE),
          types);
      for (long id = 0; id < 10; id++) {
        assertTrue(rs.next(), "row " + id);
        assertEquals(id, rs.getLong("id"));
        assertEquals(SalesData.storeId(id), rs.getInt("store_id"));
        assertEquals(SalesData.item(id), rs.getString("item"));
        assertEquals(SalesData.qty(id), rs.getInt("qty"));
        assertEquals(SalesData.price(id), rs.getDouble("price"));
        assertEquals(SalesData.soldOn(id), rs.getDate("sold_on").toLocalDate());
      }
      assertFalse(rs.next());
    }
  }

  @Test
  void fullScanReadsEveryRowOfEveryEndpoint() throws SQLException {
    long count = 0;
    long sum = 0;
    try (Statement s = conn.createStatement();
        ResultSet rs = s.executeQuery("SELECT id, item FROM " + SALES)) {
      while (rs.next()) {
        long id = rs.getLong(1);
        assertEquals(SalesData.item(id), rs.getString(2), "item of id " + id);
        count++;
        sum += id;
      }
    }
    assertEquals(SalesData.ROWS, count);
    assertEquals((long) SalesData.ROWS * (SalesData.ROWS - 1) / 2, sum);
    assertEquals(SalesData.ROWS, single("SELECT count(*) FROM " + SALES));
  }

  @Test
  void everyColumnTypeOfAWideTableReads() throws SQLException {
    // test/types (testdata/make_tables.py): 20,000 rows in 8 row groups, nulls in every nullable
    // column, decimals, timestamps, lists, structs, maps and awkward column names.
    Instant epoch = Instant.parse("2026-01-01T00:00:00Z");
    long rows = 0;
    try (Statement s = conn.createStatement();
        ResultSet rs =
            s.executeQuery("SELECT * FROM \"test/types\".\"tables/types.parquet\" ORDER BY id")) {
      ResultSetMetaData md = rs.getMetaData();
      assertEquals("odd \"name\", with comma", md.getColumnName(md.getColumnCount() - 1));
      assertEquals("CamelCase", md.getColumnName(md.getColumnCount()));
      assertEquals(Types.DECIMAL, md.getColumnType(rs.findColumn("amount")));
      assertEquals(Types.TIMESTAMP_WITH_TIMEZONE, md.getColumnType(rs.findColumn("ts")));
      while (rs.next()) {
        long i = rs.getLong("id");
        assertEquals(rows, i);
        assertEquals((int) ((i * 7919) % 100_000 - 50_000), rs.getInt("i32"));
        assertEquals(LocalDate.of(2020, 1, 1).plusDays(i % 2000), rs.getDate("day").toLocalDate());
        // (getObject of a time-zoned timestamp is "not implemented" in the 18.3 driver.)
        Timestamp ts = rs.getTimestamp("ts");
        if (i % 61 == 0) {
          assertNull(ts, "ts of " + i);
        } else {
          assertEquals(epoch.plusSeconds(i * 37).plusNanos((i % 1_000_000) * 1000), ts.toInstant());
        }
        BigDecimal amount = rs.getBigDecimal("amount");
        if (i % 43 == 0) {
          assertNull(amount, "amount of " + i);
        } else {
          assertEquals(BigDecimal.valueOf(i * 37 % 1_000_000 - 500_000, 3), amount);
        }
        Object tags = rs.getObject("tags");
        if (i % 19 != 0) {
          assertEquals((int) (i % 3), ((Object[]) rs.getArray("tags").getArray()).length);
        } else {
          assertNull(tags);
        }
        rs.getObject("point");
        rs.getObject("attrs");
        assertEquals(i % 10, rs.getInt(md.getColumnCount() - 1));
        assertEquals(i % 4, rs.getLong("CamelCase"));
        rows++;
      }
    }
    assertEquals(20_000, rows);
  }

  @Test
  void aggregatesGroupedByItem() throws SQLException {
    Map<String, long[]> counts = new TreeMap<>(); // item -> {rows, sum(qty)}
    Map<String, Double> prices = new TreeMap<>();
    for (long id = 0; id < SalesData.ROWS; id++) {
      long[] c = counts.computeIfAbsent(SalesData.item(id), k -> new long[2]);
      c[0]++;
      c[1] += SalesData.qty(id);
      prices.merge(SalesData.item(id), SalesData.price(id), Double::sum);
    }
    try (Statement s = conn.createStatement();
        ResultSet rs =
            s.executeQuery(
                "SELECT item, count(*) AS n, sum(qty) AS units, avg(price) AS mean_price,"
                    + " min(sold_on) AS first_day, max(sold_on) AS last_day FROM "
                    + SALES
                    + " GROUP BY item ORDER BY item")) {
      for (Map.Entry<String, long[]> e : counts.entrySet()) {
        assertTrue(rs.next(), "group " + e.getKey());
        long[] c = e.getValue();
        assertEquals(e.getKey(), rs.getString("item"));
        assertEquals(c[0], rs.getLong("n"));
        assertEquals(c[1], rs.getLong("units"));
        assertEquals(prices.get(e.getKey()) / c[0], rs.getDouble("mean_price"), 1e-9);
        assertEquals(LocalDate.of(2026, 1, 1), rs.getDate("first_day").toLocalDate());
        assertEquals(LocalDate.of(2026, 1, 31), rs.getDate("last_day").toLocalDate());
      }
      assertFalse(rs.next());
    }
  }

  @Test
  void joinAcrossTwoPackages() throws SQLException {
    Map<String, double[]> expected = new TreeMap<>(); // city -> {rows, revenue}
    for (long id = 0; id < SalesData.ROWS; id++) {
      double[] e =
          expected.computeIfAbsent(SalesData.city(SalesData.storeId(id)), k -> new double[2]);
      e[0]++;
      e[1] += SalesData.qty(id) * SalesData.price(id);
    }
    try (Statement s = conn.createStatement();
        ResultSet rs =
            s.executeQuery(
                "SELECT st.city, st.opened, count(*) AS n, sum(s.qty * s.price) AS revenue FROM "
                    + SALES
                    + " s JOIN "
                    + STORES
                    + " st ON s.store_id = st.store_id GROUP BY st.city, st.opened"
                    + " ORDER BY st.city")) {
      for (Map.Entry<String, double[]> e : expected.entrySet()) {
        assertTrue(rs.next(), "city " + e.getKey());
        assertEquals(e.getKey(), rs.getString("city"));
        int store = SalesData.CITIES.indexOf(e.getKey()) + 1;
        assertEquals(SalesData.opened(store), rs.getDate("opened").toLocalDate());
        assertEquals((long) e.getValue()[0], rs.getLong("n"));
        assertEquals(e.getValue()[1], rs.getDouble("revenue"), 1e-6);
      }
      assertFalse(rs.next());
    }
  }

  @Test
  void qualifiedNamesRevisionsAndTags() throws SQLException {
    long oranges = 0;
    for (long id = 0; id < SalesData.ROWS; id++) {
      if (SalesData.item(id).equals("o'range")
          && !SalesData.soldOn(id).isBefore(LocalDate.of(2026, 1, 15))) {
        oranges++;
      }
    }
    assertEquals(
        oranges,
        single(
            "SELECT count(*) FROM sheaf.\"test/sales\".\"tables/sales.parquet\""
                + " WHERE item = 'o''range' AND sold_on >= DATE '2026-01-15'"));
    assertEquals(
        SalesData.ROWS,
        single(
            "SELECT count(*) FROM \"test/sales@"
                + server.salesRevision.substring(0, 12)
                + "\".\"tables/sales.parquet\""));
    // test/types: 20,000 rows in its first revision (tag v1) as in the latest.
    assertEquals(20_000, single("SELECT count(*) FROM \"test/types:v1\".\"tables/types.parquet\""));
    // A folder of Parquet parts is one table, by its folder path.
    assertTrue(single("SELECT count(*) FROM \"test/types\".\"tables/parts\"") > 0);
  }

  @Test
  void manifestTableListsThePackageEntries() throws SQLException {
    List<String> keys = new ArrayList<>();
    try (Statement s = conn.createStatement();
        ResultSet rs =
            s.executeQuery(
                "SELECT logical_key, size FROM \"test/sales\".\"_manifest\" ORDER BY logical_key")) {
      while (rs.next()) {
        keys.add(rs.getString(1));
        assertTrue(rs.getLong(2) > 0, "size of " + rs.getString(1));
      }
    }
    assertEquals(List.of("README.md", "tables/sales.parquet"), keys);
  }

  @Test
  void sheafTableFunctionTakesADatasetUri() throws SQLException {
    List<Long> ids = new ArrayList<>();
    try (Statement s = conn.createStatement();
        ResultSet rs =
            s.executeQuery(
                "SELECT id, item FROM sheaf('sheaf://test/sales/tables/sales.parquet"
                    + "?columns=id,item&filter=store_id%20%3D%203&limit=4') ORDER BY id")) {
      assertEquals(2, rs.getMetaData().getColumnCount());
      while (rs.next()) {
        ids.add(rs.getLong("id"));
        assertEquals(SalesData.item(rs.getLong("id")), rs.getString("item"));
      }
    }
    // store_id = id % 5 + 1 = 3: ids 2, 7, 12, 17 are the first four in file order.
    assertEquals(List.of(2L, 7L, 12L, 17L), ids);
  }
}
