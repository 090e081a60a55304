package dev.sheaf.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.sheaf.client.testing.SheafServerExtension;
import dev.sheaf.client.testing.TestAuth;
import dev.sheaf.client.testing.TestPki;
import dev.sheaf.client.testing.TestServer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Collectors;
import org.apache.arrow.flight.CallHeaders;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.SyncPutListener;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/**
 * Credentials and TLS against the real {@code sheaf serve --auth --tls-cert --tls-key} (and a
 * second server with {@code --tls-client-ca}): API tokens, password logins that keep only the
 * session token, refusals with the right codes, untrusted certificates, mutual TLS. Auth file and
 * credentials from {@code sheaf auth} ({@link TestAuth}), certificates from trustme ({@link
 * TestPki}).
 */
@ExtendWith(SheafServerExtension.class)
class AuthAndTlsTest {
  private static final String TYPES = "test/types/tables/types.parquet";
  private static final DatasetRequest TYPES_REQUEST =
      DatasetRequest.of("test/types").withPath("tables/types.parquet");
  private static final int ROWS = 20_000;

  @TempDir static Path dir;
  private static TestServer plain;
  private static TestServer tls;
  private static TestServer mtls;
  private static TestPki pki;
  private static TestAuth auth;
  private BufferAllocator root;

  @BeforeAll
  static void start(TestServer shared) throws Exception {
    plain = shared;
    pki = TestPki.create(Files.createDirectories(dir.resolve("pki")));
    auth = TestAuth.create(dir);
    tls = shared.another(auth.serveArgs(pki, false));
    mtls = shared.another(auth.serveArgs(pki, true));
  }

  @AfterAll
  static void stop() throws Exception {
    for (TestServer s : new TestServer[] {tls, mtls}) {
      if (s != null) {
        s.close();
      }
    }
  }

  @BeforeEach
  void allocator() {
    root = new RootAllocator();
  }

  @AfterEach
  void noLeaks() {
    assertEquals(
        0, root.getAllocatedMemory(), "Arrow memory still allocated after the clients closed");
    root.close(); // throws if a client (even one whose build failed) left a child allocator open
  }

  /** A client of {@code server} trusting the test CA. */
  private SheafClient.Builder to(TestServer server) {
    return SheafClient.builder(server.url())
        .allocator(root)
        .tlsRootCerts(pki.ca)
        .callTimeout(Duration.ofSeconds(30));
  }

  private static long rows(SheafClient client, String table) {
    // The text form (JSON metadata) under credentials and TLS; the typed form is below.
    Dataset ds = client.dataset("sheaf://" + table + "?partitions=3");
    long n = 0;
    try (DatasetReader reader = client.read(ds, 2)) {
      while (reader.next()) {
        n += reader.root().getRowCount();
      }
    }
    return n;
  }

  private static SheafException fails(ErrorCode code, Executable call) {
    SheafException e = assertThrows(SheafException.class, call);
    assertEquals(code, e.code(), e.getMessage());
    return e;
  }

  private static void assertNoSecret(String text) {
    for (String secret : List.of(auth.password, auth.token, auth.outsiderToken)) {
      assertFalse(text.contains(secret), "a secret appears in: " + text);
    }
  }

  // -- credentials -------------------------------------------------------------------------

  @Test
  void anApiTokenReadsOverTls() throws Exception {
    assertTrue(tls.url().startsWith("grpc+tls://127.0.0.1:"), tls.url());
    int mark = tls.logMark();
    try (SheafClient client = to(tls).token(auth.token).build()) {
      assertEquals(auth.token, client.token());
      assertEquals(ROWS, rows(client, TYPES));
      List<String> visible =
          client.listPackages().stream().map(PackageInfo::name).collect(Collectors.toList());
      assertTrue(
          visible.contains("test/types") && !visible.contains("demo/weather"), visible.toString());
    }
    List<String> log = tls.logLinesSince(mark, l -> l.contains("GetFlightInfo"));
    assertTrue(
        log.stream().anyMatch(l -> l.contains("GetFlightInfo") && l.contains("token:job")),
        String.join("\n", log));
    assertNoSecret(String.join("\n", tls.logLines()));
  }

  @Test
  void aLoginKeepsOnlyTheSessionToken() throws Exception {
    int mark = tls.logMark();
    String session;
    try (SheafClient client = to(tls).username(TestAuth.USER).password(auth.password).build()) {
      session = client.token();
      assertNotNull(session);
      assertFalse(session.contains(auth.password), "the session token holds the password");
      assertEquals(ROWS, rows(client, TYPES));
    }
    // The session token alone reads (what Spark executors are given), with no new login.
    try (SheafClient again = to(tls).token(session).build()) {
      assertEquals(ROWS, rows(again, TYPES));
    }
    List<String> log = tls.logLinesSince(mark, l -> l.contains("GetFlightInfo"));
    assertEquals(
        1,
        log.stream()
            .filter(l -> l.contains("login") && l.contains("alice") && !l.contains("fail"))
            .count(),
        String.join("\n", log));
    assertTrue(
        log.stream().anyMatch(l -> l.contains("GetFlightInfo") && l.contains("user:alice")),
        String.join("\n", log));
    assertNoSecret(String.join("\n", tls.logLines()));
    assertFalse(
        String.join("\n", tls.logLines()).contains(session), "the server logged a session token");
  }

  @Test
  void aWrongPasswordIsUnauthenticated() {
    String wrong = "not-" + auth.password;
    SheafException e =
        fails(
            ErrorCode.UNAUTHENTICATED,
            () -> to(tls).username(TestAuth.USER).password(wrong).build());
    assertTrue(e.getMessage().contains("logging in as \"alice\" to " + tls.url()), e.getMessage());
    assertFalse(e.getMessage().contains(wrong), e.getMessage());
    assertNoSecret(e.getMessage());
  }

  @Test
  void callsWithoutValidCredentialsAreUnauthenticated() {
    try (SheafClient anonymous = to(tls).build()) {
      // No credentials means no authorization header at all (the server tells the two apart).
      SheafException e = fails(ErrorCode.UNAUTHENTICATED, anonymous::listPackages);
      assertTrue(
          e.getMessage().contains(tls.url()) && e.getMessage().contains("authentication required"),
          e.getMessage());
      fails(ErrorCode.UNAUTHENTICATED, () -> anonymous.dataset(TYPES_REQUEST));
    }
    try (SheafClient bogus = to(tls).token("sheaf_not-a-token").build()) {
      fails(ErrorCode.UNAUTHENTICATED, () -> bogus.dataset(TYPES_REQUEST));
    }
  }

  @Test
  void packagesWithoutAGrantAnswerLikeMissingOnes() {
    try (SheafClient client = to(tls).token(auth.token).build()) {
      SheafException ungranted =
          fails(
              ErrorCode.NOT_FOUND,
              () ->
                  client.dataset(
                      DatasetRequest.of("demo/weather").withPath("tables/readings.parquet")));
      assertTrue(ungranted.getMessage().contains("demo/weather"), ungranted.getMessage());
      fails(ErrorCode.NOT_FOUND, () -> client.resolve("demo/weather"));
      fails(
          ErrorCode.NOT_FOUND,
          () -> client.dataset(DatasetRequest.of("test/absent").withPath("x.parquet")));
    }
    try (SheafClient outsider = to(tls).token(auth.outsiderToken).build()) {
      assertEquals(List.of(), outsider.listPackages());
      fails(ErrorCode.NOT_FOUND, () -> outsider.dataset(TYPES_REQUEST));
    }
  }

  @Test
  void aWriteWithAReadGrantIsPermissionDenied() throws Exception {
    // The client has no upload call: DoPut through Arrow's FlightClient, error mapped by ours.
    CallHeaders headers = new FlightCallHeaders();
    headers.insert("authorization", "Bearer " + auth.token);
    Location where = Location.forGrpcTls("127.0.0.1", tls.port());
    try (FlightClient flight =
            FlightClient.builder(root, where)
                .trustedCertificates(Files.newInputStream(pki.ca))
                .build();
        BigIntVector x = new BigIntVector("x", root)) {
      x.allocateNew(1);
      x.set(0, 1L);
      x.setValueCount(1);
      try (VectorSchemaRoot batch = VectorSchemaRoot.of(x)) {
        SyncPutListener result = new SyncPutListener();
        FlightClient.ClientStreamListener put =
            flight.startPut(
                FlightDescriptor.command(
                    "sheaf://test/types/uploads/x.parquet".getBytes(StandardCharsets.UTF_8)),
                batch,
                result,
                new HeaderCallOption(headers));
        FlightRuntimeException e =
            assertThrows(
                FlightRuntimeException.class,
                () -> {
                  put.putNext();
                  put.completed();
                  put.getResult();
                });
        SheafException mapped = SheafException.from("DoPut test/types", e);
        assertEquals(ErrorCode.PERMISSION_DENIED, mapped.code(), mapped.getMessage());
        assertTrue(mapped.getMessage().contains("test/types"), mapped.getMessage());
        result.close();
      }
    }
  }

  @Test
  void inconsistentCredentialsAreRefusedBeforeConnecting() {
    SheafException alone = fails(ErrorCode.CLIENT, () -> to(tls).username(TestAuth.USER).build());
    assertTrue(alone.getMessage().contains("username and password together"), alone.getMessage());
    fails(ErrorCode.CLIENT, () -> to(tls).password(auth.password).build());
    SheafException both =
        fails(
            ErrorCode.CLIENT,
            () ->
                to(tls).token(auth.token).username(TestAuth.USER).password(auth.password).build());
    assertTrue(both.getMessage().contains("not both"), both.getMessage());
    assertNoSecret(alone.getMessage() + both.getMessage());
  }

  @Test
  void aLoginToAServerWithoutAuthSaysSo() {
    SheafException e =
        fails(
            ErrorCode.UNIMPLEMENTED,
            () ->
                SheafClient.builder(plain.url())
                    .allocator(root)
                    .username(TestAuth.USER)
                    .password(auth.password)
                    .build());
    assertTrue(e.getMessage().contains("--auth"), e.getMessage());
  }

  // -- TLS ---------------------------------------------------------------------------------

  @Test
  void anUntrustedServerCertificateIsRefused() {
    try (SheafClient other =
        SheafClient.builder(tls.url())
            .allocator(root)
            .tlsRootCerts(pki.otherCa)
            .token(auth.token)
            .build()) {
      SheafException e = fails(ErrorCode.UNAVAILABLE, other::listPackages);
      assertTrue(
          e.getMessage().contains(tls.url())
              && e.getMessage()
                  .contains("TLS: the server's certificate is not signed by a trusted CA"),
          e.getMessage());
      assertFalse(e.getMessage().contains("Channel Pipeline"), e.getMessage());
      assertNoSecret(e.getMessage());
    }
    // The JVM's own CAs do not know the test CA either.
    try (SheafClient system =
        SheafClient.builder(tls.url()).allocator(root).token(auth.token).build()) {
      fails(ErrorCode.UNAVAILABLE, system::listPackages);
    }
    // A login does not send the password to an untrusted server.
    fails(
        ErrorCode.UNAVAILABLE,
        () ->
            SheafClient.builder(tls.url())
                .allocator(root)
                .tlsRootCerts(pki.otherCa)
                .username(TestAuth.USER)
                .password(auth.password)
                .build());
  }

  @Test
  void grpcTlsNeverFallsBackToPlaintext() {
    // A plaintext server at a grpc+tls:// URL: the TLS handshake fails; nothing is sent in clear.
    String url = "grpc+tls://127.0.0.1:" + plain.port();
    try (SheafClient client =
        SheafClient.builder(url).allocator(root).tlsRootCerts(pki.ca).token(auth.token).build()) {
      SheafException e = fails(ErrorCode.UNAVAILABLE, client::listPackages);
      assertTrue(
          e.getMessage().contains(url) && e.getMessage().contains("the server does not speak TLS"),
          e.getMessage());
    }
  }

  @Test
  void endpointsAtAPlaintextLocationAreRefusedOverTls() throws Exception {
    List<String> args = new java.util.ArrayList<>(auth.serveArgs(pki, false));
    args.addAll(List.of("--advertise", plain.url()));
    try (TestServer advertising = plain.another(args);
        SheafClient client = to(advertising).token(auth.token).build()) {
      Dataset ds = client.dataset(TYPES_REQUEST);
      assertEquals(plain.url(), ds.endpoints().get(0).locations().get(0));
      SheafException e =
          fails(ErrorCode.CLIENT, () -> client.stream(ds.endpoints().get(0)).close());
      assertTrue(
          e.getMessage().contains(plain.url()) && e.getMessage().contains("plaintext"),
          e.getMessage());
    }
  }

  @Test
  void certificatesNeedAGrpcTlsUrl() {
    SheafException roots =
        fails(
            ErrorCode.CLIENT,
            () -> SheafClient.builder(plain.url()).allocator(root).tlsRootCerts(pki.ca).build());
    assertTrue(
        roots.getMessage().contains("tlsRootCerts") && roots.getMessage().contains("grpc+tls://"),
        roots.getMessage());
    SheafException cert =
        fails(
            ErrorCode.CLIENT,
            () ->
                SheafClient.builder(plain.url())
                    .allocator(root)
                    .clientCertificate(pki.clientCert, pki.clientKey)
                    .build());
    assertTrue(cert.getMessage().contains("client certificate"), cert.getMessage());
  }

  @Test
  void badPemIsNamed() throws Exception {
    SheafException notCert =
        fails(ErrorCode.CLIENT, () -> to(tls).tlsRootCerts(pki.clientKey).build());
    assertTrue(
        notCert.getMessage().contains("tlsRootCerts " + pki.clientKey)
            && notCert.getMessage().contains("no PEM certificate"),
        notCert.getMessage());
    SheafException sec1 =
        fails(
            ErrorCode.CLIENT,
            () -> to(mtls).clientCertificate(pki.clientCert, pki.clientKeySec1).build());
    assertTrue(
        sec1.getMessage().contains(pki.clientKeySec1.toString())
            && sec1.getMessage().contains("PKCS#8")
            && sec1.getMessage().contains("openssl pkcs8"),
        sec1.getMessage());
    String key = Files.readString(pki.clientKeySec1);
    String body = key.substring(key.indexOf('\n') + 1, key.indexOf('\n') + 40);
    assertFalse(sec1.getMessage().contains(body), "the error quotes the key");
    SheafException missing =
        fails(ErrorCode.CLIENT, () -> to(tls).tlsRootCerts(dir.resolve("absent.pem")));
    assertTrue(missing.getMessage().contains("absent.pem"), missing.getMessage());
  }

  // -- mutual TLS --------------------------------------------------------------------------

  @Test
  void mutualTlsWithAClientCertificate() throws Exception {
    try (SheafClient client =
        to(mtls).clientCertificate(pki.clientCert, pki.clientKey).token(auth.token).build()) {
      assertEquals(ROWS, rows(client, TYPES));
    }
    // PEM given as bytes, and a login over mutual TLS.
    try (SheafClient client =
        SheafClient.builder(mtls.url())
            .allocator(root)
            .tlsRootCerts(TestPki.bytes(pki.ca))
            .clientCertificate(TestPki.bytes(pki.clientCert), TestPki.bytes(pki.clientKey))
            .username(TestAuth.USER)
            .password(auth.password)
            .build()) {
      assertEquals(ROWS, rows(client, TYPES));
    }
  }

  @Test
  void mutualTlsRefusesClientsWithoutATrustedCertificate() {
    try (SheafClient none = to(mtls).token(auth.token).build()) {
      SheafException e = fails(ErrorCode.UNAVAILABLE, none::listPackages);
      assertTrue(
          e.getMessage().contains(mtls.url())
              && e.getMessage().contains("requires a client certificate"),
          e.getMessage());
    }
    try (SheafClient other =
        to(mtls)
            .clientCertificate(pki.otherClientCert, pki.otherClientKey)
            .token(auth.token)
            .build()) {
      fails(ErrorCode.UNAVAILABLE, other::listPackages);
    }
  }

  @Test
  void aClientCertificateAloneNamesTheCaller() throws Exception {
    // No token: the certificate's subject CN is the caller, cert:ci-job, granted test/* to read.
    try (SheafClient certOnly = to(mtls).clientCertificate(pki.clientCert, pki.clientKey).build()) {
      assertEquals(ROWS, rows(certOnly, TYPES));
      SheafException hidden =
          fails(
              ErrorCode.NOT_FOUND,
              () ->
                  certOnly.dataset(
                      DatasetRequest.of("demo/weather").withPath("tables/readings.parquet")));
      assertTrue(hidden.getMessage().contains("demo/weather"), hidden.getMessage());
    }
    // A token on the same connection names its own caller: outsider has no grant.
    try (SheafClient outsider =
        to(mtls)
            .clientCertificate(pki.clientCert, pki.clientKey)
            .token(auth.outsiderToken)
            .build()) {
      fails(ErrorCode.NOT_FOUND, () -> outsider.dataset(TYPES_REQUEST));
    }
  }

  @Test
  void theClientKeepsNoPassword() throws Exception {
    try (SheafClient client = to(tls).username(TestAuth.USER).password(auth.password).build()) {
      assertNotEquals(auth.password, client.token());
      for (java.lang.reflect.Field f : SheafClient.class.getDeclaredFields()) {
        if (java.lang.reflect.Modifier.isStatic(f.getModifiers())) {
          continue;
        }
        f.setAccessible(true);
        Object value = f.get(client);
        String text =
            value instanceof Object[]
                ? java.util.Arrays.deepToString((Object[]) value)
                : String.valueOf(value);
        assertFalse(text.contains(auth.password), "field " + f.getName() + " holds the password");
      }
    }
  }
}
