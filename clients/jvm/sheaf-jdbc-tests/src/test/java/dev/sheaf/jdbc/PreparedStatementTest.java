package dev.sheaf.jdbc;

import static dev.sheaf.jdbc.testing.SqlServer.SALES;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.jdbc.testing.SalesData;
import dev.sheaf.jdbc.testing.SqlServer;
import dev.sheaf.jdbc.testing.SqlServerExtension;
import java.sql.Connection;
import java.sql.Date;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongPredicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * {@code PreparedStatement} with {@code ?} parameters of each kind (int, string, double, date),
 * executed again with other values, and result metadata before execution.
 */
@ExtendWith(SqlServerExtension.class)
class PreparedStatementTest {
  private static Connection conn;

  @BeforeAll
  static void connect(SqlServer server) throws SQLException {
    conn = server.connect();
  }

  @AfterAll
  static void close() throws SQLException {
    if (conn != null) {
      conn.close();
    }
  }

  /** Rows of the sales table where {@code p} holds for the id. */
  private static long expectedCount(LongPredicate p) {
    long n = 0;
    for (long id = 0; id < SalesData.ROWS; id++) {
      if (p.test(id)) {
        n++;
      }
    }
    return n;
  }

  /** Executes {@code ps} and returns its single long value. */
  private static long count(PreparedStatement ps) throws SQLException {
    try (ResultSet rs = ps.executeQuery()) {
      assertTrue(rs.next());
      long n = rs.getLong(1);
      assertFalse(rs.next());
      return n;
    }
  }

  @Test
  void intParameterReExecuted() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT count(*) FROM " + SALES + " WHERE store_id = ?")) {
      assertEquals(1, ps.getParameterMetaData().getParameterCount());
      for (int store : new int[] {1, 3, 5, 99}) {
        ps.setInt(1, store);
        assertEquals(
            expectedCount(id -> SalesData.storeId(id) == store), count(ps), "store " + store);
      }
    }
  }

  @Test
  void stringParameterReExecuted() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT count(*), min(id) FROM " + SALES + " WHERE item = ?")) {
      for (String item : List.of("o'range", "fig", "kiwi")) {
        ps.setString(1, item);
        try (ResultSet rs = ps.executeQuery()) {
          assertTrue(rs.next());
          long n = expectedCount(id -> SalesData.item(id).equals(item));
          assertEquals(n, rs.getLong(1), item);
          if (n == 0) {
            rs.getLong(2);
            assertTrue(rs.wasNull(), "min(id) of no rows is NULL");
          } else {
            assertEquals(SalesData.ITEMS.indexOf(item), rs.getLong(2), item);
          }
        }
      }
    }
  }

  @Test
  void doubleParameterReExecuted() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT count(*) FROM " + SALES + " WHERE price > ?")) {
      for (double limit : new double[] {6.0, 1.0, 7.25}) {
        ps.setDouble(1, limit);
        assertEquals(
            expectedCount(id -> SalesData.price(id) > limit), count(ps), "price > " + limit);
      }
    }
  }

  @Test
  void dateParameterReExecuted() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT count(*) FROM " + SALES + " WHERE sold_on = ?")) {
      for (LocalDate day :
          List.of(
              LocalDate.of(2026, 1, 5), LocalDate.of(2026, 1, 31), LocalDate.of(2025, 12, 31))) {
        ps.setDate(1, Date.valueOf(day));
        assertEquals(expectedCount(id -> SalesData.soldOn(id).equals(day)), count(ps), "on " + day);
      }
    }
  }

  @Test
  void severalParametersOfMixedTypesReturnTheMatchingRows() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement(
            "SELECT id, item, price, sold_on FROM "
                + SALES
                + " WHERE store_id = ? AND item = ? AND price >= ? AND sold_on <= ? ORDER BY id")) {
      Object[][] cases = {
        {2, "pear", 3.0, LocalDate.of(2026, 1, 20)},
        {4, "o'range", 1.25, LocalDate.of(2026, 1, 31)},
      };
      for (Object[] c : cases) {
        int store = (Integer) c[0];
        String item = (String) c[1];
        double minPrice = (Double) c[2];
        LocalDate until = (LocalDate) c[3];
        ps.setInt(1, store);
        ps.setString(2, item);
        ps.setDouble(3, minPrice);
        ps.setDate(4, Date.valueOf(until));
        List<Long> expected = new ArrayList<>();
        for (long id = 0; id < SalesData.ROWS; id++) {
          if (SalesData.storeId(id) == store
              && SalesData.item(id).equals(item)
              && SalesData.price(id) >= minPrice
              && !SalesData.soldOn(id).isAfter(until)) {
            expected.add(id);
          }
        }
        List<Long> got = new ArrayList<>();
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            long id = rs.getLong("id");
            got.add(id);
            assertEquals(item, rs.getString("item"));
            assertEquals(SalesData.price(id), rs.getDouble("price"));
            assertEquals(SalesData.soldOn(id), rs.getDate("sold_on").toLocalDate());
          }
        }
        assertFalse(expected.isEmpty(), "the case should select rows");
        assertEquals(expected, got, "store " + store + ", " + item);
      }
    }
  }

  @Test
  void dollarPlaceholdersAndNullParameters() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement(
            "SELECT count(*) FROM " + SALES + " WHERE store_id = $1 AND qty > $2")) {
      assertEquals(2, ps.getParameterMetaData().getParameterCount());
      ps.setInt(1, 2);
      ps.setInt(2, 3);
      assertEquals(
          expectedCount(id -> SalesData.storeId(id) == 2 && SalesData.qty(id) > 3), count(ps));
      ps.setNull(1, Types.INTEGER);
      assertEquals(0, count(ps), "store_id = NULL matches nothing");
    }
  }

  @Test
  void metadataBeforeExecutionAndRepeatedExecution() throws SQLException {
    try (PreparedStatement ps =
        conn.prepareStatement("SELECT id, item FROM " + SALES + " WHERE id < 3 ORDER BY id")) {
      assertEquals(2, ps.getMetaData().getColumnCount());
      assertEquals("id", ps.getMetaData().getColumnName(1));
      assertEquals("item", ps.getMetaData().getColumnName(2));
      assertEquals(0, ps.getParameterMetaData().getParameterCount());
      for (int run = 0; run < 2; run++) {
        List<String> items = new ArrayList<>();
        try (ResultSet rs = ps.executeQuery()) {
          while (rs.next()) {
            items.add(rs.getString("item"));
          }
        }
        assertEquals(SalesData.ITEMS.subList(0, 3), items, "run " + run);
      }
    }
  }
}
