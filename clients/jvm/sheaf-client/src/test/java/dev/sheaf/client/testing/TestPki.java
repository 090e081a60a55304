package dev.sheaf.client.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Fresh TLS certificates for a test class, made by {@code testdata/make_certs.py} (trustme, in the
 * project venv): a CA and the server's certificate for 127.0.0.1 and localhost; a second CA for
 * client certificates and a client certificate ({@code CN=ci-job}) with its PKCS#8 key (and the
 * same key in SEC1 form); and a CA nobody trusts with a client certificate of its own.
 */
public final class TestPki {
  /** The CA of the server's certificate. */
  public final Path ca;

  /** The server's certificate chain. */
  public final Path serverCert;

  /** The server's private key. */
  public final Path serverKey;

  /** The CA the server trusts for client certificates ({@code --tls-client-ca}). */
  public final Path clientCa;

  /** A client certificate signed by {@link #clientCa}. */
  public final Path clientCert;

  /** Its key, PKCS#8. */
  public final Path clientKey;

  /** The same key in SEC1 form ({@code BEGIN EC PRIVATE KEY}). */
  public final Path clientKeySec1;

  /** A CA that signed neither the server's certificate nor trusted client certificates. */
  public final Path otherCa;

  /** A client certificate signed by {@link #otherCa}. */
  public final Path otherClientCert;

  /** Its key, PKCS#8. */
  public final Path otherClientKey;

  private TestPki(Path dir) {
    ca = dir.resolve("ca.pem");
    serverCert = dir.resolve("server.pem");
    serverKey = dir.resolve("server.key");
    clientCa = dir.resolve("client-ca.pem");
    clientCert = dir.resolve("client.pem");
    clientKey = dir.resolve("client.key");
    clientKeySec1 = dir.resolve("client-sec1.key");
    otherCa = dir.resolve("other-ca.pem");
    otherClientCert = dir.resolve("other-client.pem");
    otherClientKey = dir.resolve("other-client.key");
  }

  /**
   * Makes the certificates.
   *
   * @param dir where to write them
   * @return the certificates
   * @throws Exception if the generator fails (trustme missing: see its message)
   */
  public static TestPki create(Path dir) throws Exception {
    TestServer.run(
        List.of(
            TestServer.python().toString(),
            TestServer.jvmRoot().resolve("testdata/make_certs.py").toString(),
            dir.toString()));
    return new TestPki(dir);
  }

  /**
   * The bytes of one of the files.
   *
   * @param file a path of this PKI
   * @return its contents
   * @throws IOException if it cannot be read
   */
  public static byte[] bytes(Path file) throws IOException {
    return Files.readAllBytes(file);
  }
}
