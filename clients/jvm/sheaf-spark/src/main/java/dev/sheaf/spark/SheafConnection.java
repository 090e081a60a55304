package dev.sheaf.spark;

import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import java.io.IOException;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;

/**
 * How executors connect: the server URL, a bearer token, the PEM bytes of the TLS options and the
 * stall timeout of their reads. Sent with every task (in {@link SheafReaderFactory}), so it never
 * holds a password: after a login on the driver, the token is the session token the server
 * answered. The PEM files are read on the driver and their bytes shipped, so executors need no copy
 * of them (the client key travels with the tasks, as the token does: on a shared cluster, encrypt
 * Spark's RPC with {@code spark.network.crypto.enabled}).
 */
final class SheafConnection implements Serializable {
  private static final long serialVersionUID = 2L;

  final String server;
  private final Duration stallTimeout;
  private final String token;
  private final byte[] rootCerts;
  private final byte[] clientCert;
  private final byte[] clientKey;

  private SheafConnection(
      String server,
      Duration stallTimeout,
      String token,
      byte[] rootCerts,
      byte[] clientCert,
      byte[] clientKey) {
    this.server = server;
    this.stallTimeout = stallTimeout;
    this.token = token;
    this.rootCerts = rootCerts;
    this.clientCert = clientCert;
    this.clientKey = clientKey;
  }

  /**
   * Connects on the driver: reads the PEM files and, with {@code username} and {@code password},
   * logs in once.
   *
   * @param options the read's options
   * @return the connection and a client that used it (the caller closes it)
   * @throws SheafException naming the option or the refusal
   */
  static Opened open(SheafOptions options) {
    byte[] roots = read(options.tlsRootCerts, "tlsRootCerts");
    byte[] cert = read(options.tlsClientCert, "tlsClientCert");
    byte[] key = read(options.tlsClientKey, "tlsClientKey");
    // The driver's client reads the files by path, so a bad one is named in the error.
    SheafClient.Builder b =
        SheafClient.builder(options.server)
            .token(options.token)
            .username(options.username)
            .password(options.password)
            .stallTimeout(options.stallTimeout);
    if (roots != null) {
      b.tlsRootCerts(Paths.get(options.tlsRootCerts));
    }
    if (cert != null) {
      b.clientCertificate(Paths.get(options.tlsClientCert), Paths.get(options.tlsClientKey));
    }
    SheafClient client = b.build();
    return new Opened(
        new SheafConnection(options.server, options.stallTimeout, client.token(), roots, cert, key),
        client);
  }

  /** A connection and the driver's client of it. */
  static final class Opened {
    final SheafConnection connection;
    final SheafClient client;

    Opened(SheafConnection connection, SheafClient client) {
      this.connection = connection;
      this.client = client;
    }
  }

  /**
   * @return a builder of a client with this connection's server, token and TLS settings
   */
  SheafClient.Builder builder() {
    SheafClient.Builder b = SheafClient.builder(server).token(token).stallTimeout(stallTimeout);
    if (rootCerts != null) {
      b.tlsRootCerts(rootCerts);
    }
    if (clientCert != null) {
      b.clientCertificate(clientCert, clientKey);
    }
    return b;
  }

  /**
   * @return a new client (the caller closes it)
   */
  SheafClient client() {
    return builder().build();
  }

  private static byte[] read(String path, String option) {
    if (path == null) {
      return null;
    }
    Path p = Paths.get(path);
    try {
      return Files.readAllBytes(p);
    } catch (IOException e) {
      throw new SheafException(
          "sheaf: option " + option + ": cannot read " + p + " on the driver: " + e);
    }
  }

  @Override
  public String toString() {
    return "SheafConnection["
        + server
        + (token == null ? "" : ", token")
        + (rootCerts == null ? "" : ", tlsRootCerts")
        + (clientCert == null ? "" : ", client certificate")
        + "]";
  }
}
