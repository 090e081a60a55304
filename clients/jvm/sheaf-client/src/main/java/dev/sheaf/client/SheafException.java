package dev.sheaf.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.protobuf.StatusProto;
import java.util.Map;
import org.apache.arrow.flight.ErrorFlightMetadata;
import org.apache.arrow.flight.FlightRuntimeException;
import sheaf.v1.Sheaf.ErrorReason;

/**
 * A failed Sheaf operation. The message names the operation and what it was about (server, dataset,
 * endpoint) followed by the server's own message.
 *
 * <p>Errors from the server carry its reason ({@link #reason()}, a name of {@code enum ErrorReason}
 * in {@code proto/sheaf.proto}) and what it is about ({@link #packageName()}, {@link #topHash()},
 * {@link #path()}, {@link #column()}), read from the {@code google.rpc.ErrorInfo} in the status
 * details; {@link #code()} is the reason's broad class.
 */
public class SheafException extends RuntimeException {
  private static final long serialVersionUID = 2L;

  /** The trailer holding the {@code google.rpc.Status} of an error. */
  static final String STATUS_DETAILS = "grpc-status-details-bin";

  /** The domain of Sheaf's {@code ErrorInfo}. */
  static final String DOMAIN = "sheaf.v1";

  private final ErrorCode code;
  private final ErrorReason reason;
  private final Map<String, String> about;

  /**
   * An error with a code and message.
   *
   * @param code why it failed
   * @param message what failed, and why
   * @param cause the underlying exception, or null
   */
  public SheafException(ErrorCode code, String message, Throwable cause) {
    this(code, null, Map.of(), message, cause);
  }

  private SheafException(
      ErrorCode code,
      ErrorReason reason,
      Map<String, String> about,
      String message,
      Throwable cause) {
    super(message, cause);
    this.code = code;
    this.reason = reason;
    this.about = Map.copyOf(about);
  }

  /**
   * A problem found by the client itself ({@link ErrorCode#CLIENT}).
   *
   * @param message what is wrong
   */
  public SheafException(String message) {
    this(ErrorCode.CLIENT, message, null);
  }

  /**
   * The same error with a message naming more context (the code, reason and details are kept).
   *
   * @param message the new message
   * @return the error
   */
  public SheafException withMessage(String message) {
    return new SheafException(code, reason, about, message, this);
  }

  /**
   * @return why the operation failed, in broad classes
   */
  public ErrorCode code() {
    return code;
  }

  /**
   * @return the reason the server gave, or null when it gave none (or the client failed)
   */
  public ErrorReason reason() {
    return reason;
  }

  /**
   * @return the package the error is about, or null
   */
  public String packageName() {
    return about.get("package");
  }

  /**
   * @return the top hash the error is about, or null
   */
  public String topHash() {
    return about.get("top_hash");
  }

  /**
   * @return the table or entry path the error is about, or null
   */
  public String path() {
    return about.get("path");
  }

  /**
   * @return the column the error is about, or null
   */
  public String column() {
    return about.get("column");
  }

  /**
   * @return everything the server said the error is about (keys of {@code ErrorInfo.metadata})
   */
  public Map<String, String> details() {
    return about;
  }

  /**
   * Wraps a Flight error: the reason and details from the {@code google.rpc.ErrorInfo} of the
   * status details when the server sent one, else the gRPC status code.
   *
   * @param what the operation and its subject, such as {@code "GetFlightInfo sheaf://..."}
   * @param e the Flight error
   * @return the wrapped error
   */
  static SheafException from(String what, FlightRuntimeException e) {
    ErrorInfo info = errorInfo(e);
    ErrorReason reason = info == null ? null : reasonOf(info.getReason());
    ErrorCode code = reason == null ? null : ErrorCode.of(reason);
    // Arrow Java folds some gRPC codes together (DATA_LOSS and ABORTED into INTERNAL, among
    // others); the gRPC status it came from, when there is one, keeps them apart.
    io.grpc.Status grpc = io.grpc.Status.fromThrowable(e);
    if (code == null) {
      code =
          grpc.getCode() == io.grpc.Status.Code.UNKNOWN
              ? ErrorCode.of(e.status().code())
              : ErrorCode.of(grpc.getCode());
    }
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
    String label = reason == null ? code.toString() : code + " (" + reason + ")";
    return new SheafException(
        code,
        reason,
        info == null ? Map.of() : info.getMetadataMap(),
        what + ": " + label + ": " + description,
        e);
  }

  /** A reason by name; UNRECOGNIZED for a name this client does not know (a newer server). */
  private static ErrorReason reasonOf(String name) {
    try {
      return ErrorReason.valueOf(name);
    } catch (IllegalArgumentException e) {
      return ErrorReason.UNRECOGNIZED;
    }
  }

  /**
   * The {@code ErrorInfo} of domain {@code sheaf.v1} in the error's status details: the trailer as
   * Flight keeps it, else as gRPC does; null when there is none.
   */
  private static ErrorInfo errorInfo(FlightRuntimeException e) {
    com.google.rpc.Status status = null;
    ErrorFlightMetadata trailers = e.status().metadata();
    if (trailers != null && trailers.containsKey(STATUS_DETAILS)) {
      try {
        status = com.google.rpc.Status.parseFrom(trailers.getByte(STATUS_DETAILS));
      } catch (InvalidProtocolBufferException ignored) {
        // Not a google.rpc.Status: no details.
      }
    }
    if (status == null) {
      status = StatusProto.fromThrowable(e);
    }
    if (status == null) {
      return null;
    }
    for (Any detail : status.getDetailsList()) {
      if (detail.is(ErrorInfo.class)) {
        try {
          ErrorInfo info = detail.unpack(ErrorInfo.class);
          if (info.getDomain().equals(DOMAIN)) {
            return info;
          }
        } catch (InvalidProtocolBufferException ignored) {
          // A malformed detail: ignored.
        }
      }
    }
    return null;
  }

  /**
   * Why a TLS handshake failed, in words (untrusted server certificate, client certificate required
   * or refused, a server without TLS), followed by the deepest cause's message; null when no TLS
   * failure is among the causes.
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
      why =
          "the server requires a client certificate signed by a CA it trusts (mutual TLS: give one with clientCertificate)";
    } else if (all.contains("unknown_ca")
        || all.contains("bad_certificate")
        || all.contains("certificate_unknown")) {
      why = "the server refused the client certificate";
    } else if (all.contains("pkix path")
        || all.contains("valid certification path")
        || all.contains("certificate_verify_failed")) {
      why =
          "the server's certificate is not signed by a trusted CA (give its CA with tlsRootCerts)";
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
