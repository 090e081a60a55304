package dev.sheaf.client;

import java.net.URI;
import java.net.URISyntaxException;
import org.apache.arrow.flight.Location;

/**
 * Server URLs: {@code grpc://HOST:PORT}, {@code grpc+tcp://}, {@code grpc+tls://}, or {@code
 * HOST:PORT}.
 */
final class ServerAddress {
  /** The location scheme meaning "the server you asked" (Flight's reuse-connection URI). */
  static final String REUSE_CONNECTION = "arrow-flight-reuse-connection";

  private ServerAddress() {}

  /** The Flight location of a server URL, with a clear error for a malformed one. */
  static Location parse(String url) {
    String text = url.trim();
    if (!text.contains("://")) {
      text = "grpc://" + text;
    }
    URI uri;
    try {
      uri = new URI(text);
    } catch (URISyntaxException e) {
      throw new SheafException("invalid server URL \"" + url + "\": " + e.getMessage());
    }
    String scheme = uri.getScheme();
    if (uri.getHost() == null || uri.getPort() < 0) {
      throw new SheafException("invalid server URL \"" + url + "\": expected grpc://HOST:PORT");
    }
    switch (scheme) {
      case "grpc":
      case "grpc+tcp":
        return Location.forGrpcInsecure(uri.getHost(), uri.getPort());
      case "grpc+tls":
        return Location.forGrpcTls(uri.getHost(), uri.getPort());
      default:
        throw new SheafException(
            "invalid server URL \"" + url + "\": the scheme must be grpc, grpc+tcp or grpc+tls");
    }
  }

  /** Whether a location connects with TLS. */
  static boolean isTls(Location location) {
    return "grpc+tls".equals(location.getUri().getScheme());
  }

  /** Whether an endpoint location means "the server that planned the dataset". */
  static boolean meansSameServer(String location) {
    return location.startsWith(REUSE_CONNECTION + ":");
  }
}
