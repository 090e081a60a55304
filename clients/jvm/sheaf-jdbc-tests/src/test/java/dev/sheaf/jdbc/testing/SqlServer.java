package dev.sheaf.jdbc.testing;

import dev.sheaf.client.testing.TestAuth;
import dev.sheaf.client.testing.TestPki;
import dev.sheaf.client.testing.TestServer;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.Comparator;
import java.util.List;
import java.util.Properties;
import java.util.stream.Stream;

/**
 * The real {@code sheaf serve} over TLS with an auth file, holding the JDBC tests' packages, and
 * JDBC connections to it through the stock Arrow Flight SQL driver.
 *
 * <p>The registry is {@link TestServer}'s ({@code demo/weather}, {@code test/types} at two
 * revisions, the first tagged {@code v1}) plus {@code test/sales} and {@code test/stores} from
 * {@code testdata/make_sql_tables.py} ({@link SalesData} has their values). Credentials are {@link
 * TestAuth}'s: user {@code alice} reads {@code test/*} but not {@code demo/weather}.
 */
public final class SqlServer implements AutoCloseable {
  /** The sales table, quoted for SQL. */
  public static final String SALES = "\"test/sales\".\"tables/sales.parquet\"";

  /** The stores table, quoted for SQL. */
  public static final String STORES = "\"test/stores\".\"tables/stores.parquet\"";

  private final TestServer plain;
  private final TestServer tls;
  private final Path dir;

  /** The certificates ({@link TestPki#ca} is the CA the client trusts). */
  public final TestPki pki;

  /** The auth file and its credentials. */
  public final TestAuth auth;

  /** Top hash of {@code test/sales}. */
  public final String salesRevision;

  /** Top hash of {@code test/stores}. */
  public final String storesRevision;

  private SqlServer(
      TestServer plain,
      TestServer tls,
      Path dir,
      TestPki pki,
      TestAuth auth,
      String salesRevision,
      String storesRevision) {
    this.plain = plain;
    this.tls = tls;
    this.dir = dir;
    this.pki = pki;
    this.auth = auth;
    this.salesRevision = salesRevision;
    this.storesRevision = storesRevision;
  }

  /**
   * Starts {@link TestServer} (which fills the registry), pushes the JDBC packages into its
   * registry, and serves that registry again over TLS with the test auth file.
   *
   * @return the running server; close it
   * @throws Exception if a step fails (with its output)
   */
  public static SqlServer start() throws Exception {
    TestServer plain = TestServer.start();
    Path dir = Files.createTempDirectory("sheaf-jdbc-tests-");
    try {
      Path gen = dir.resolve("gen");
      TestServer.run(
          List.of(
              TestServer.python().toString(),
              TestServer.jvmRoot()
                  .resolve("sheaf-jdbc-tests/testdata/make_sql_tables.py")
                  .toString(),
              gen.toString()));
      String sales = plain.push("test/sales", gen.resolve("sales"));
      String stores = plain.push("test/stores", gen.resolve("stores"));
      TestPki pki = TestPki.create(Files.createDirectories(dir.resolve("pki")));
      TestAuth auth = TestAuth.create(dir);
      TestServer tls = plain.another(auth.serveArgs(pki, false));
      return new SqlServer(plain, tls, dir, pki, auth, sales, stores);
    } catch (Exception | Error e) {
      plain.close();
      delete(dir);
      throw e;
    }
  }

  /**
   * The JDBC URL of the TLS server, trusting the test CA, without credentials.
   *
   * @return {@code jdbc:arrow-flight-sql://127.0.0.1:PORT/?useEncryption=true&tlsRootCerts=CA.pem}
   */
  public String url() {
    return "jdbc:arrow-flight-sql://127.0.0.1:"
        + tls.port()
        + "/?useEncryption=true&tlsRootCerts="
        + pki.ca;
  }

  /**
   * @return the TLS server (its log shows what reached it)
   */
  public TestServer server() {
    return tls;
  }

  /**
   * A connection as {@code alice}.
   *
   * @return the connection; close it
   * @throws SQLException if the driver cannot connect or log in
   */
  public Connection connect() throws SQLException {
    return connect(TestAuth.USER, auth.password);
  }

  /**
   * A connection logging in with a user name and password (Flight handshake, Basic).
   *
   * @param user the user
   * @param password the password
   * @return the connection; close it
   * @throws SQLException if the driver cannot connect or log in
   */
  public Connection connect(String user, String password) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", user);
    p.setProperty("password", password);
    return DriverManager.getConnection(url(), p);
  }

  /**
   * A connection with an API token (sent as {@code Authorization: Bearer}).
   *
   * @param token the token
   * @return the connection; close it
   * @throws SQLException if the driver cannot connect
   */
  public Connection connectWithToken(String token) throws SQLException {
    Properties p = new Properties();
    p.setProperty("token", token);
    return DriverManager.getConnection(url(), p);
  }

  /** Stops both servers and deletes the registry, certificates and generated tables. */
  @Override
  public void close() throws Exception {
    try {
      tls.close();
    } finally {
      try {
        plain.close();
      } finally {
        delete(dir);
      }
    }
  }

  private static void delete(Path dir) throws IOException {
    try (Stream<Path> files = Files.walk(dir)) {
      files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
    }
  }
}
