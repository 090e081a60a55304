package dev.sheaf.client;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.util.Objects;

/**
 * PEM text for TLS (root certificates, a client certificate, its key) and where it came from,
 * checked before it reaches Netty so a bad file is named in the error. Messages never quote the
 * contents (a key is a secret).
 */
final class Pem {
  /** What it is and where from, such as {@code "tlsRootCerts /etc/ca.pem"}. */
  final String label;

  private final byte[] bytes;

  private Pem(String label, byte[] bytes) {
    this.label = label;
    this.bytes = bytes;
  }

  /** PEM given as bytes (copied). */
  static Pem of(String what, byte[] pem) {
    return new Pem(what + " (given as bytes)", Objects.requireNonNull(pem, what).clone());
  }

  /** PEM read from a file now. */
  static Pem read(String what, Path file) {
    Objects.requireNonNull(file, what);
    try {
      return new Pem(what + " " + file, Files.readAllBytes(file));
    } catch (IOException e) {
      throw new SheafException("cannot read " + what + " " + file + ": " + e);
    }
  }

  /**
   * @return a copy of the PEM text
   */
  byte[] bytes() {
    return bytes.clone();
  }

  /**
   * @return a stream over the PEM text, as Arrow's builder takes it
   */
  ByteArrayInputStream stream() {
    return new ByteArrayInputStream(bytes);
  }

  /** Checks that this holds at least one X.509 certificate. */
  Pem checkCertificates() {
    try {
      if (!text().contains("-----BEGIN CERTIFICATE-----")
          || CertificateFactory.getInstance("X.509").generateCertificates(stream()).isEmpty()) {
        throw new SheafException(label + " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
      }
    } catch (CertificateException e) {
      throw new SheafException(label + " is not a valid PEM certificate: " + e.getMessage());
    }
    return this;
  }

  /**
   * Checks that this holds an unencrypted PKCS#8 private key, the only form Arrow Java's TLS (Netty
   * without BouncyCastle) reads.
   */
  Pem checkPrivateKey() {
    String text = text();
    String convert = "; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pkcs8.pem`";
    if (text.contains("-----BEGIN PRIVATE KEY-----")) {
      return this;
    }
    if (text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
      throw new SheafException(
          label + " is an encrypted private key, which the client cannot read" + convert);
    }
    if (text.contains("-----BEGIN RSA PRIVATE KEY-----")
        || text.contains("-----BEGIN EC PRIVATE KEY-----")) {
      throw new SheafException(
          label
              + " is a private key in PKCS#1 or SEC1 form; the client reads PKCS#8 "
              + "(-----BEGIN PRIVATE KEY-----)"
              + convert);
    }
    throw new SheafException(label + " holds no PEM private key (-----BEGIN PRIVATE KEY-----)");
  }

  private String text() {
    return new String(bytes, StandardCharsets.US_ASCII);
  }
}
