package dev.sheaf.jdbc;

import static dev.sheaf.jdbc.testing.FlightErrors.assertFlightError;
import static dev.sheaf.jdbc.testing.FlightErrors.flightError;
import static dev.sheaf.jdbc.testing.SqlServer.SALES;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.jdbc.testing.SqlServer;
import dev.sheaf.jdbc.testing.SqlServerExtension;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.List;
import java.util.Locale;
import org.apache.arrow.driver.jdbc.shaded.org.apache.arrow.flight.FlightRuntimeException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.function.Executable;

/**
 * Errors through the driver: a SQLException carrying the server's gRPC code, with a message naming
 * the table, column or revision at fault; writes refused as read-only.
 */
@ExtendWith(SqlServerExtension.class)
class ErrorsTest {
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

  private static void query(String sql) throws SQLException {
    try (Statement s = conn.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      while (rs.next()) {
        rs.getObject(1);
      }
    }
  }

  @Test
  void unknownTableNamesTheTableAndThePackage() {
    assertFlightError(
        "NOT_FOUND",
        () -> query("SELECT * FROM \"test/sales\".\"tables/nope.parquet\""),
        "tables/nope.parquet",
        "test/sales");
  }

  @Test
  void unknownColumnNamesTheColumn() {
    assertFlightError(
        "INVALID_ARGUMENT", () -> query("SELECT no_such_col FROM " + SALES), "no_such_col");
  }

  @Test
  void unknownRevisionNamesIt() {
    assertFlightError(
        "NOT_FOUND",
        () -> query("SELECT * FROM \"test/sales@deadbeef0bad\".\"tables/sales.parquet\""),
        "deadbeef0bad");
    assertFlightError(
        "NOT_FOUND",
        () -> query("SELECT * FROM \"test/sales:no-such-tag\".\"tables/sales.parquet\""),
        "no-such-tag");
  }

  @Test
  void badSqlAndUnqualifiedTables() {
    assertFlightError("INVALID_ARGUMENT", () -> query("SELEC id FROM " + SALES));
    assertFlightError("INVALID_ARGUMENT", () -> query("SELECT * FROM sales"), "owner/name");
    assertFlightError(
        "INVALID_ARGUMENT", () -> query("SELECT no_such_fn(id) FROM " + SALES), "no_such_fn");
  }

  /** {@code call} fails with INVALID_ARGUMENT or UNIMPLEMENTED saying Sheaf SQL is read-only. */
  private static void assertReadOnly(String what, Executable call) {
    SQLException e = assertThrows(SQLException.class, call, what);
    FlightRuntimeException f = flightError(e);
    String code = f.status().code().name();
    String description = String.valueOf(f.status().description());
    assertTrue(
        code.equals("INVALID_ARGUMENT") || code.equals("UNIMPLEMENTED"),
        what + ": " + code + " " + description);
    assertTrue(
        description.toLowerCase(Locale.ROOT).contains("read-only"), what + ": " + description);
  }

  @Test
  void writesAreRefusedAsReadOnly() throws SQLException {
    for (String sql :
        List.of(
            "INSERT INTO " + SALES + " VALUES (1000, 1, 'kiwi', 1, 1.5, DATE '2026-02-01')",
            "DELETE FROM " + SALES + " WHERE id = 1",
            "CREATE TABLE \"test/sales\".\"tables/new.parquet\" (id BIGINT)")) {
      assertReadOnly(
          sql,
          () -> {
            try (Statement s = conn.createStatement()) {
              s.executeUpdate(sql);
            }
          });
    }
    // Through a prepared statement as well.
    assertReadOnly(
        "UPDATE (prepared)",
        () -> {
          try (PreparedStatement ps =
              conn.prepareStatement("UPDATE " + SALES + " SET qty = ? WHERE id = 1")) {
            ps.setInt(1, 5);
            ps.executeUpdate();
          }
        });
    // Nothing changed.
    try (Statement s = conn.createStatement();
        ResultSet rs = s.executeQuery("SELECT count(*), max(qty) FROM " + SALES)) {
      rs.next();
      assertEquals(1000, rs.getLong(1));
      assertEquals(7, rs.getInt(2));
    }
  }
}
