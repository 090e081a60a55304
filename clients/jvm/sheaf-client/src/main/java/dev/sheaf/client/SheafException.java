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
    // Arrow Java folds some gRPC codes together (PERMISSION_DENIED and DATA_LOSS among them);
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
    return new SheafException(code, what + ": " + code + ": " + description, e);
  }
}
