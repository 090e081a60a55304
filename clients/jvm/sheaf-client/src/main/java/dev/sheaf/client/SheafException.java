package dev.sheaf.client;

import org.apache.arrow.flight.FlightRuntimeException;

/**
 * A failed Sheaf operation. The message names the operation and what it was about (server,
 * dataset URI, endpoint) followed by the server's own message, which names the package, path
 * or column at fault.
 */
public class SheafException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final ErrorCode code;

  /**
   * An error with a code and message.
   *
   * @param code why it failed
   * @param message what failed, and why
   * @param cause the underlying exception, or null
   */
  public SheafException(ErrorCode code, String message, Throwable cause) {
    super(message, cause);
    this.code = code;
  }

  /**
   * A problem found by the client itself ({@link ErrorCode#CLIENT}).
   *
   * @param message what is wrong
   */
  public SheafException(String message) {
    this(ErrorCode.CLIENT, message, null);
  }

  /** @return why the operation failed */
  public ErrorCode code() {
    return code;
  }

  /**
   * Wraps a Flight error, keeping the server's status and message.
   *
   * @param what the operation and its subject, such as {@code "GetFlightInfo sheaf://..."}
   * @param e the Flight error
   * @return the wrapped error
   */
  static SheafException from(String what, FlightRuntimeException e) {
    // Arrow Java folds some gRPC codes together (DATA_LOSS and ABORTED into INTERNAL, among others);
    // the gRPC status it came from, when there is one, keeps them apart.
    io.grpc.Status grpc = io.grpc.Status.fromThrowable(e);
    ErrorCode code = grpc.getCode() == io.grpc.Status.Code.UNKNOWN ? ErrorCode.of(e.status().code()) : ErrorCode.of(grpc.getCode());
    String description = e.status().description();
    if (description == null || description.isEmpty()) {
      description = grpc.getDescription();
    }
    if ((description == null || description.isEmpty()) && grpc.getCause() != null) {
      description = grpc.getCause().toString();
    }
    if (description == null || description.isEmpty()) {
      description = String.valueOf(e.getMessage());
    }
    // gRPC appends Netty's pipeline to I/O errors: noise for the reader.
    int pipeline = description.indexOf("\nChannel Pipeline:");
    if (pipeline >= 0) {
      description = description.substring(0, pipeline);
    }
    String tls = tlsFailure(e);
    if (tls != null) {
      description += " (TLS: " + tls + ")";
    }
    return new SheafException(code, what + ": " + code + ": " + description, e);
  }

  /**
   * Why a TLS handshake failed, in words (untrusted server certificate, client certificate
   * required or refused, a server without TLS), followed by the deepest cause's message; null
   * when no TLS failure is among the causes.
   */
  private static String tlsFailure(Throwable e) {
    boolean tls = false;
    StringBuilder chain = new StringBuilder();
    String deepest = null;
    for (Throwable c = e; c != null; c = c.getCause() == c ? null : c.getCause()) {
      tls |= c instanceof javax.net.ssl.SSLException || c.getClass().getName().contains(".ssl.");
      chain.append(c.getMessage()).append('\n');
      if (c.getMessage() != null) {
        deepest = c.getMessage();
      }
    }
    if (!tls) {
      return null;
    }
    String all = chain.toString().toLowerCase(java.util.Locale.ROOT);
    String why;
    if (all.contains("certificate_required")) {
      why = "the server requires a client certificate signed by a CA it trusts (mutual TLS: give one with clientCertificate)";
    } else if (all.contains("unknown_ca") || all.contains("bad_certificate") || all.contains("certificate_unknown")) {
      why = "the server refused the client certificate";
    } else if (all.contains("pkix path") || all.contains("valid certification path") || all.contains("certificate_verify_failed")) {
      why = "the server's certificate is not signed by a trusted CA (give its CA with tlsRootCerts)";
    } else if (all.contains("no subject alternative") || all.contains("no name matching")) {
      why = "the server's certificate does not name the host of the URL";
    } else if (all.contains("not an ssl/tls record")) {
      why = "the server does not speak TLS";
    } else {
      why = "handshake failed";
    }
    return deepest == null ? why : why + ": " + deepest;
  }
}
