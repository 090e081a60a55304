package dev.sheaf.jdbc;

import static dev.sheaf.jdbc.testing.FlightErrors.assertFlightError;
import static dev.sheaf.jdbc.testing.FlightErrors.flightError;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.TestAuth;
import dev.sheaf.jdbc.testing.SqlServer;
import dev.sheaf.jdbc.testing.SqlServerExtension;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Logins and grants through the driver: a wrong password is refused at connect; a package the
 * caller may not read is invisible to metadata and answers a query exactly like a missing package;
 * an API token (the driver's {@code token} property) logs in with its own grants.
 */
@ExtendWith(SqlServerExtension.class)
class AuthTest {
  private static final String UNGRANTED = "\"demo/weather\".\"tables/readings.parquet\"";
  private static SqlServer server;

  @BeforeAll
  static void start(SqlServer shared) {
    server = shared;
  }

  private static void query(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      while (rs.next()) {
        rs.getObject(1);
      }
    }
  }

  @Test
  void credentialsInTheUrlLogInAndAWrongPasswordIsRefused() throws SQLException {
    // The URL form the README shows: everything in the URL.
    String url = server.url() + "&user=" + TestAuth.USER + "&password=" + server.auth.password;
    try (Connection c = DriverManager.getConnection(url)) {
      query(c, "SELECT count(*) FROM " + SqlServer.STORES);
    }
    // The server's certificate is verified: without the test CA the TLS handshake fails.
    String untrusted = url.replace("&tlsRootCerts=" + server.pki.ca, "");
    SQLException e =
        assertThrows(SQLException.class, () -> DriverManager.getConnection(untrusted).close());
    assertEquals("UNAVAILABLE", flightError(e).status().code().name());
    assertFlightError(
        "UNAUTHENTICATED", () -> server.connect(TestAuth.USER, server.auth.password + "x").close());
    assertFlightError("UNAUTHENTICATED", () -> server.connect("mallory", "pw").close());
  }

  @Test
  void ungrantedPackageIsNotListed() throws SQLException {
    try (Connection c = server.connect()) {
      List<String> schemas = new ArrayList<>();
      try (ResultSet rs = c.getMetaData().getSchemas("sheaf", "demo/%")) {
        while (rs.next()) {
          schemas.add(rs.getString("TABLE_SCHEM"));
        }
      }
      assertEquals(List.of(), schemas);
      try (ResultSet rs = c.getMetaData().getTables("sheaf", "demo/weather", "%", null)) {
        assertFalse(rs.next(), "tables of an ungranted package");
      }
    }
  }

  @Test
  void ungrantedPackageAnswersLikeAMissingOne() throws SQLException {
    try (Connection c = server.connect()) {
      String ungranted =
          assertFlightError(
              "NOT_FOUND", () -> query(c, "SELECT count(*) FROM " + UNGRANTED), "demo/weather");
      String missing =
          assertFlightError(
              "NOT_FOUND",
              () -> query(c, "SELECT count(*) FROM \"demo/nothing\".\"tables/readings.parquet\""),
              "demo/nothing");
      // Nothing tells the two apart but the name.
      assertEquals(missing.replace("demo/nothing", "X"), ungranted.replace("demo/weather", "X"));
      // Nor through the other ways of naming it: the manifest table, a tag, the sheaf() function.
      for (String from :
          List.of(
              "\"demo/weather\".\"_manifest\"",
              "\"demo/weather:latest\".\"tables/readings.parquet\"",
              "sheaf('sheaf://demo/weather/tables/readings.parquet')")) {
        assertFlightError(
            "NOT_FOUND", () -> query(c, "SELECT count(*) FROM " + from), "demo/weather");
      }
      // The connection still works after the refusals.
      query(c, "SELECT count(*) FROM " + SqlServer.STORES);
    }
  }

  @Test
  void apiTokenLogsInWithItsOwnGrants() throws SQLException {
    try (Connection job = server.connectWithToken(server.auth.token)) {
      try (Statement s = job.createStatement();
          ResultSet rs = s.executeQuery("SELECT count(*) FROM " + SqlServer.STORES)) {
        assertTrue(rs.next());
        assertEquals(5, rs.getLong(1));
      }
    }
    try (Connection outsider = server.connectWithToken(server.auth.outsiderToken)) {
      try (ResultSet rs = outsider.getMetaData().getSchemas()) {
        assertFalse(rs.next(), "a token with no grant sees no package");
      }
      assertFlightError(
          "NOT_FOUND", () -> query(outsider, "SELECT * FROM " + SqlServer.SALES), "test/sales");
    }
  }
}
