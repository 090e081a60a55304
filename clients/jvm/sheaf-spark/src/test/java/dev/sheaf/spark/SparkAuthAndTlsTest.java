package dev.sheaf.spark;

import static dev.sheaf.spark.SparkSupport.checksum;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestAuth;
import dev.sheaf.client.testing.TestPki;
import dev.sheaf.client.testing.TestServer;
import java.io.ByteArrayOutputStream;
import java.io.ObjectOutputStream;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.spark.sql.DataFrameReader;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Spark reading from the real {@code sheaf serve --auth} over TLS (and mutual TLS): an API token; a
 * user name and password, with which the driver logs in once and executors receive only the session
 * token; client certificates from PEM files; refusals that name what is wrong and never quote a
 * secret.
 */
@ExtendWith(SheafServerExtension.class)
class SparkAuthAndTlsTest {
  private static final String TABLE = "test/types/tables/types.parquet";

  @TempDir static Path dir;
  private static TestServer plain;
  private static TestServer tls;
  private static TestServer mtls;
  private static TestPki pki;
  private static TestAuth auth;
  private static SparkSession spark;

  @BeforeAll
  static void start(TestServer shared) throws Exception {
    plain = shared;
    pki = TestPki.create(Files.createDirectories(dir.resolve("pki")));
    auth = TestAuth.create(dir);
    tls = shared.another(auth.serveArgs(pki, false));
    mtls = shared.another(auth.serveArgs(pki, true));
    spark = SparkSupport.session("SparkAuthAndTlsTest");
  }

  @AfterAll
  static void stop() throws Exception {
    if (spark != null) {
      spark.stop();
    }
    for (TestServer s : new TestServer[] {tls, mtls}) {
      if (s != null) {
        s.close();
      }
    }
  }

  /** A reader of {@code server} trusting the test CA. */
  private static DataFrameReader sheaf(TestServer server) {
    return spark
        .read()
        .format("sheaf")
        .option("server", server.url())
        .option("tlsRootCerts", pki.ca.toString());
  }

  private static Dataset<Row> parquet() {
    return spark.read().parquet(plain.file("tables/types.parquet").toString());
  }

  /** The message of an exception and of its causes. */
  private static String messages(Throwable t) {
    StringBuilder b = new StringBuilder();
    for (Throwable c = t; c != null; c = c.getCause()) {
      b.append(c.getMessage()).append(" | ");
    }
    return b.toString();
  }

  private static String failure(org.junit.jupiter.api.function.Executable call) {
    String m = messages(assertThrows(Exception.class, call));
    for (String secret : List.of(auth.password, auth.token, auth.outsiderToken)) {
      assertFalse(m.contains(secret), "an error quotes a secret: " + m);
    }
    return m;
  }

  private static byte[] serialized(Serializable... objects) throws Exception {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (ObjectOutputStream out = new ObjectOutputStream(bytes)) {
      for (Serializable o : objects) {
        out.writeObject(o);
      }
    }
    return bytes.toByteArray();
  }

  private static boolean contains(byte[] haystack, String needle) {
    return new String(haystack, StandardCharsets.ISO_8859_1)
        .contains(new String(needle.getBytes(StandardCharsets.UTF_8), StandardCharsets.ISO_8859_1));
  }

  @Test
  void anApiTokenOverTls() {
    Dataset<Row> df = sheaf(tls).option("token", auth.token).option("partitions", "4").load(TABLE);
    assertEquals(4, df.rdd().getNumPartitions());
    assertEquals(checksum(parquet()), checksum(df));
    assertEquals(
        parquet().where("id >= 1000 AND flag").count(), df.where("id >= 1000 AND flag").count());
  }

  @Test
  void theDriverLogsInOnceAndExecutorsGetOnlyTheSessionToken() throws Exception {
    int mark = tls.logMark();
    Dataset<Row> df =
        sheaf(tls)
            .option("username", TestAuth.USER)
            .option("password", auth.password)
            .option("partitions", "3")
            .load(TABLE);
    assertEquals(20_000, df.count());
    String q = "station = 'oslo' AND i32 > 0";
    assertEquals(parquet().where(q).count(), df.where(q).count());

    // What Spark sends to executors: the reader factory and the partitions.
    SheafScan scan = SparkSupport.scan(df);
    SheafReaderFactory factory = (SheafReaderFactory) scan.createReaderFactory();
    Serializable[] partitions =
        java.util.Arrays.stream(scan.planInputPartitions())
            .map(p -> (Serializable) p)
            .toArray(Serializable[]::new);
    byte[] shipped = serialized(factory);
    byte[] shippedPartitions = serialized(partitions);
    String basic =
        Base64.getEncoder()
            .encodeToString((TestAuth.USER + ":" + auth.password).getBytes(StandardCharsets.UTF_8));
    for (byte[] b : List.of(shipped, shippedPartitions)) {
      assertFalse(contains(b, auth.password), "the password is in what executors receive");
      assertFalse(contains(b, basic), "the Basic credentials are in what executors receive");
    }
    String session = tokenOf(factory);
    assertTrue(
        session != null && !session.contains(auth.password),
        "executors should get a session token");
    assertTrue(contains(shipped, session), "the session token should reach executors");

    // One login (the driver's), though executors read every endpoint (DoGet needs credentials).
    List<String> log = tls.logLinesSince(mark, l -> l.contains("GetFlightInfo"));
    List<String> logins =
        log.stream()
            .filter(l -> l.contains("login") && l.contains("alice") && !l.contains("fail"))
            .collect(Collectors.toList());
    assertEquals(1, logins.size(), String.join("\n", log));
    assertTrue(
        log.stream().anyMatch(l -> l.contains("GetFlightInfo") && l.contains("user:alice")),
        String.join("\n", log));
    String all = String.join("\n", tls.logLines());
    assertFalse(all.contains(auth.password) || all.contains(session), "the server logged a secret");
    // Spark's plans do not show it either.
    String plans = df.queryExecution().toString() + scan.description();
    assertFalse(plans.contains(auth.password), plans);
  }

  /** The token in a reader factory (its connection's private field). */
  private static String tokenOf(SheafReaderFactory factory) throws Exception {
    java.lang.reflect.Field c = SheafReaderFactory.class.getDeclaredField("connection");
    c.setAccessible(true);
    Object connection = c.get(factory);
    java.lang.reflect.Field t = SheafConnection.class.getDeclaredField("token");
    t.setAccessible(true);
    return (String) t.get(connection);
  }

  @Test
  void writesWithALoginAndRefusalsWithoutAWriteGrant() throws Exception {
    String pkg = "written/p" + java.util.UUID.randomUUID().toString().substring(0, 8);
    Dataset<Row> df = spark.range(0, 5_000, 1, 3).selectExpr("id", "concat('x', id) AS s");
    int mark = tls.logMark();
    df.write()
        .format("sheaf")
        .option("server", tls.url())
        .option("tlsRootCerts", pki.ca.toString())
        .option("username", TestAuth.USER)
        .option("password", auth.password)
        .mode("append")
        .save(pkg + "/t");
    assertEquals(checksum(df), checksum(sheaf(tls).option("token", auth.token).load(pkg + "/t")));
    // One login (the driver's); the tasks' DoPuts carried its session token.
    List<String> log = tls.logLinesSince(mark, l -> l.contains("commit_write"));
    List<String> logins =
        log.stream()
            .filter(l -> l.contains("login") && l.contains("alice") && !l.contains("fail"))
            .collect(Collectors.toList());
    assertEquals(1, logins.size(), String.join("\n", log));
    assertTrue(
        log.stream().anyMatch(l -> l.contains("DoPut") && l.contains("user:alice")),
        String.join("\n", log));
    assertFalse(String.join("\n", tls.logLines()).contains(auth.password));
    try (dev.sheaf.client.SheafClient c =
        dev.sheaf.client.SheafClient.builder(tls.url())
            .tlsRootCerts(pki.ca)
            .token(auth.token)
            .build()) {
      dev.sheaf.client.LineageNode node = c.lineage(pkg).get(0);
      assertTrue(node.principal().contains(TestAuth.USER), node.toString());
    }
    // Read access only (test/*): the write is refused before any data moves.
    String refused =
        failure(
            () ->
                df.write()
                    .format("sheaf")
                    .option("server", tls.url())
                    .option("tlsRootCerts", pki.ca.toString())
                    .option("token", auth.token)
                    .mode("append")
                    .save("test/types/refused"));
    assertTrue(refused.contains("PERMISSION_DENIED"), refused);
    // No grant at all: the package is as if it did not exist.
    String outsider =
        failure(
            () ->
                df.write()
                    .format("sheaf")
                    .option("server", tls.url())
                    .option("tlsRootCerts", pki.ca.toString())
                    .option("token", auth.outsiderToken)
                    .mode("append")
                    .save(pkg + "/t"));
    assertTrue(outsider.contains("NOT_FOUND") || outsider.contains("PERMISSION_DENIED"), outsider);
  }

  @Test
  void mutualTlsWithClientCertificateFiles() {
    Dataset<Row> df =
        sheaf(mtls)
            .option("token", auth.token)
            .option("tlsClientCert", pki.clientCert.toString())
            .option("tlsClientKey", pki.clientKey.toString())
            .option("partitions", "2")
            .load(TABLE);
    assertEquals(2, df.rdd().getNumPartitions());
    assertEquals(checksum(parquet()), checksum(df));
    String none = failure(() -> sheaf(mtls).option("token", auth.token).load(TABLE));
    assertTrue(
        none.contains("UNAVAILABLE") && none.contains("requires a client certificate"), none);
  }

  @Test
  void refusalsNameWhatIsWrong() {
    String wrong =
        failure(
            () ->
                sheaf(tls)
                    .option("username", TestAuth.USER)
                    .option("password", "not-" + auth.password)
                    .load(TABLE));
    assertTrue(
        wrong.contains("UNAUTHENTICATED")
            && wrong.contains("\"alice\"")
            && wrong.contains(tls.url()),
        wrong);
    assertFalse(wrong.contains("not-" + auth.password), wrong);
    String anonymous = failure(() -> sheaf(tls).load(TABLE));
    assertTrue(anonymous.contains("UNAUTHENTICATED"), anonymous);
    String ungranted =
        failure(
            () ->
                sheaf(tls)
                    .option("token", auth.token)
                    .load("demo/weather/tables/readings.parquet"));
    assertTrue(ungranted.contains("NOT_FOUND") && ungranted.contains("demo/weather"), ungranted);
    String untrusted =
        failure(
            () ->
                sheaf(tls)
                    .option("tlsRootCerts", pki.otherCa.toString())
                    .option("token", auth.token)
                    .load(TABLE));
    assertTrue(
        untrusted.contains("UNAVAILABLE") && untrusted.contains("not signed by a trusted CA"),
        untrusted);
  }

  @Test
  void badOptionsAreNamed() {
    String alone = failure(() -> sheaf(tls).option("username", TestAuth.USER).load(TABLE));
    assertTrue(alone.contains("username and password together"), alone);
    String both =
        failure(
            () ->
                sheaf(tls)
                    .option("token", auth.token)
                    .option("username", TestAuth.USER)
                    .option("password", auth.password)
                    .load(TABLE));
    assertTrue(both.contains("not both"), both);
    String key =
        failure(() -> sheaf(mtls).option("tlsClientCert", pki.clientCert.toString()).load(TABLE));
    assertTrue(key.contains("tlsClientCert and tlsClientKey together"), key);
    String plaintext =
        failure(
            () ->
                spark
                    .read()
                    .format("sheaf")
                    .option("server", plain.url())
                    .option("tlsRootCerts", pki.ca.toString())
                    .load(TABLE));
    assertTrue(plaintext.contains("tlsRootCerts") && plaintext.contains("grpc+tls://"), plaintext);
    Path absent = dir.resolve("absent.pem");
    String missing =
        failure(
            () ->
                sheaf(tls)
                    .option("tlsRootCerts", absent.toString())
                    .option("token", auth.token)
                    .load(TABLE));
    assertTrue(missing.contains("tlsRootCerts") && missing.contains(absent.toString()), missing);
    String sec1 =
        failure(
            () ->
                sheaf(mtls)
                    .option("token", auth.token)
                    .option("tlsClientCert", pki.clientCert.toString())
                    .option("tlsClientKey", pki.clientKeySec1.toString())
                    .load(TABLE));
    assertTrue(sec1.contains(pki.clientKeySec1.toString()) && sec1.contains("PKCS#8"), sec1);
  }
}
