package dev.sheaf.client;

import java.net.URI;
import java.net.URISyntaxException;
import java.util.LinkedHashSet;
import java.util.List;
import org.apache.arrow.flight.Location;

/**
 * Server URLs: {@code grpc://HOST:PORT}, {@code grpc+tcp://}, {@code grpc+tls://}, or {@code
 * HOST:PORT}. A URL holding credentials ({@code USER:PASSWORD@}, {@code TOKEN@}) is refused: they
 * would not be sent, and the URL is shown in messages. Public for the Spark connector, which checks
 * its {@code server} option the same way.
 */
public final class ServerAddress {
  /** The location scheme meaning "the server you asked" (Flight's reuse-connection URI). */
  static final String REUSE_CONNECTION = "arrow-flight-reuse-connection";

  private ServerAddress() {}

  /** The Flight location of a server URL, with a clear error for a malformed one. */
  static Location parse(String url) {
    String text = url.trim();
    refuseCredentials(text);
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

  /**
   * Refuses a URL whose authority holds credentials ({@code grpc://USER:PASSWORD@HOST:PORT} or
   * {@code TOKEN@}); the error repeats neither.
   *
   * @throws SheafException CLIENT, pointing at the builder's credential options
   */
  static void refuseCredentials(String url) {
    String hidden = withoutCredentials(url);
    if (hidden != null) {
      throw new SheafException(
          "invalid server URL \""
              + hidden
              + "\": it holds credentials (USER:PASSWORD@ or TOKEN@), which are not sent that"
              + " way; give the URL without them, and the credentials with the builder's"
              + " username(...) and password(...) (a login) or token(...)");
    }
  }

  /**
   * A URL with the credentials of its authority replaced by {@code ...}, for messages.
   *
   * @param url a server URL
   * @return the URL shown as {@code SCHEME://...@HOST:PORT}, or null when it holds no credentials
   */
  public static String withoutCredentials(String url) {
    int scheme = url.indexOf("://");
    int start = scheme < 0 ? 0 : scheme + 3;
    int end = url.length();
    for (char c : new char[] {'/', '?', '#'}) {
      int i = url.indexOf(c, start);
      if (i >= 0 && i < end) {
        end = i;
      }
    }
    int at = url.lastIndexOf('@', end - 1);
    if (at < start) {
      return null;
    }
    return url.substring(0, start) + "...@" + url.substring(at + 1);
  }

  /** Whether a location connects with TLS. */
  static boolean isTls(Location location) {
    return "grpc+tls".equals(location.getUri().getScheme());
  }

  /** Whether an endpoint location means "the server that planned the dataset". */
  static boolean meansSameServer(String location) {
    return location.startsWith(REUSE_CONNECTION + ":");
  }

  /**
   * The servers an endpoint is read from, in order, each once (see {@link
   * SheafClient#targets(Endpoint)}).
   *
   * @param own the client's server
   * @param locations the endpoint's locations
   */
  static List<String> targets(String own, List<String> locations) {
    if (locations.isEmpty()) {
      return List.of(own);
    }
    LinkedHashSet<String> out = new LinkedHashSet<>();
    for (String l : locations) {
      out.add(meansSameServer(l) ? own : l);
    }
    return List.copyOf(out);
  }
}
