package dev.sheaf.client;

import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.grpc.NettyClientBuilder;

/**
 * A client's TLS settings: the certificate authorities it trusts (the JVM's when none are given)
 * and its certificate for mutual TLS. A {@code grpc+tls://} URL always connects with TLS; a client
 * that connected with TLS also refuses endpoint locations in plaintext, so its token never leaves
 * in the clear.
 */
final class Tls {
  private final String url;
  private final boolean enabled;
  private final Pem rootCerts;
  private final Pem clientCert;
  private final Pem clientKey;

  private Tls(String url, boolean enabled, Pem rootCerts, Pem clientCert, Pem clientKey) {
    this.url = url;
    this.enabled = enabled;
    this.rootCerts = rootCerts;
    this.clientCert = clientCert;
    this.clientKey = clientKey;
  }

  /**
   * Checks and keeps the settings of a client of {@code url}.
   *
   * @throws SheafException CLIENT for certificates with a plaintext URL or bad PEM
   */
  static Tls of(String url, boolean tlsUrl, Pem rootCerts, Pem clientCert, Pem clientKey) {
    if (!tlsUrl && (rootCerts != null || clientCert != null)) {
      String given =
          rootCerts != null && clientCert != null
              ? "tlsRootCerts and a client certificate are"
              : rootCerts != null ? "tlsRootCerts is" : "a client certificate is";
      throw new SheafException(given + " given, which needs a grpc+tls:// server URL, not " + url);
    }
    if (rootCerts != null) {
      rootCerts.checkCertificates();
    }
    if (clientCert != null) {
      clientCert.checkCertificates();
      clientKey.checkPrivateKey();
    }
    return new Tls(url, tlsUrl, rootCerts, clientCert, clientKey);
  }

  /** Adds the certificates to the channel builder of a TLS location. */
  void configure(NettyClientBuilder builder, Location where) {
    if (!ServerAddress.isTls(where)) {
      return;
    }
    if (rootCerts != null) {
      builder.trustedCertificates(rootCerts.stream());
    }
    if (clientCert != null) {
      builder.clientCertificate(clientCert.stream(), clientKey.stream());
    }
  }

  /**
   * The location of an endpoint's server, refusing plaintext when this client uses TLS.
   *
   * @param target the endpoint's location URL
   * @return its Flight location
   * @throws SheafException CLIENT for a plaintext location from a TLS server
   */
  Location check(String target) {
    Location where = ServerAddress.parse(target);
    if (enabled && !ServerAddress.isTls(where)) {
      throw new SheafException(
          "the endpoint's location "
              + target
              + " is not TLS, but this client connected to "
              + url
              + " with TLS: refusing to send credentials in plaintext (have the server advertise grpc+tls:// locations)");
    }
    return where;
  }
}
