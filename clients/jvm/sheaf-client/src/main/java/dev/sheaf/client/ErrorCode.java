package dev.sheaf.client;

import org.apache.arrow.flight.FlightStatusCode;
import sheaf.v1.Sheaf.ErrorReason;

/**
 * Why a call failed, in broad classes: from the reason the server gives ({@link
 * SheafException#reason()}), else its gRPC status, or a problem found by the client itself.
 */
public enum ErrorCode {
  /**
   * Unknown package, hash, tag, path, or missing data; also a package the caller may not read (the
   * server answers as if it did not exist); a write session that does not exist, has expired or was
   * aborted (reason {@code SESSION_NOT_FOUND}).
   */
  NOT_FOUND,
  /** Bad URI, parameter, column or filter; ambiguous hash prefix. */
  INVALID_ARGUMENT,
  /**
   * The caller may read the package but not write to it, or a physical key is outside the locations
   * the server may read.
   */
  PERMISSION_DENIED,
  /** Data that does not match its hash. */
  DATA_LOSS,
  /**
   * Server unreachable (including a refused TLS handshake: untrusted server certificate, missing
   * client certificate), storage failure, or server at its concurrency limit.
   */
  UNAVAILABLE,
  /** An operation the server does not implement. */
  UNIMPLEMENTED,
  /** The call was cancelled. */
  CANCELLED,
  /** The call's deadline passed. */
  TIMED_OUT,
  /**
   * Missing, wrong, expired or revoked credentials: no token, an unknown token, a refused login
   * (wrong user name or password, too many failures), an expired session token.
   */
  UNAUTHENTICATED,
  /** A server-side failure. */
  INTERNAL,
  /** The server or a resource is exhausted. */
  RESOURCE_EXHAUSTED,
  /**
   * A write conflicting with existing data: a tag pointing elsewhere, a base that is no longer
   * latest ({@code LATEST_MOVED}), a table that exists under mode ERROR_IF_EXISTS ({@code
   * ALREADY_EXISTS}), appended data whose schema differs from the table's ({@code SCHEMA_MISMATCH},
   * the column is named).
   */
  CONFLICT,
  /** A problem found by the client (bad argument, unexpected response, unsupported type). */
  CLIENT,
  /** Any other status. */
  UNKNOWN;

  /**
   * The class of a reason the server gave.
   *
   * @param reason the reason
   * @return its code, or null for a reason this client does not know
   */
  static ErrorCode of(ErrorReason reason) {
    switch (reason) {
      case INVALID_REQUEST:
      case UNKNOWN_COLUMN:
      case EVALUATION_FAILED:
      case AMBIGUOUS_HASH:
        return INVALID_ARGUMENT;
      case INVALID_MANIFEST:
      case INTEGRITY:
        return DATA_LOSS;
      case NOT_FOUND:
      case SESSION_NOT_FOUND:
        return NOT_FOUND;
      case UNAUTHENTICATED:
        return UNAUTHENTICATED;
      case PERMISSION_DENIED:
      case FORBIDDEN_LOCATION:
        return PERMISSION_DENIED;
      case CONFLICT:
      case LATEST_MOVED:
      case ALREADY_EXISTS:
      case SCHEMA_MISMATCH:
        return CONFLICT;
      case RESOURCE_EXHAUSTED:
        return RESOURCE_EXHAUSTED;
      case UNAVAILABLE:
        return UNAVAILABLE;
      case UNIMPLEMENTED:
        return UNIMPLEMENTED;
      case CANCELLED:
        return CANCELLED;
      case INTERNAL:
        return INTERNAL;
      case DEADLINE_EXCEEDED:
        return TIMED_OUT;
      default:
        return null;
    }
  }

  /** The code for a Flight status code. */
  static ErrorCode of(FlightStatusCode code) {
    switch (code) {
      case NOT_FOUND:
        return NOT_FOUND;
      case INVALID_ARGUMENT:
        return INVALID_ARGUMENT;
      case UNAUTHORIZED:
        return PERMISSION_DENIED; // Flight's name for gRPC's PERMISSION_DENIED
      case UNAUTHENTICATED:
        return UNAUTHENTICATED;
      case UNAVAILABLE:
        return UNAVAILABLE;
      case UNIMPLEMENTED:
        return UNIMPLEMENTED;
      case CANCELLED:
        return CANCELLED;
      case TIMED_OUT:
        return TIMED_OUT;
      case INTERNAL:
        return INTERNAL;
      case RESOURCE_EXHAUSTED:
        return RESOURCE_EXHAUSTED;
      default:
        return UNKNOWN;
    }
  }

  /** The code for a gRPC status code (which keeps DATA_LOSS apart from INTERNAL). */
  static ErrorCode of(io.grpc.Status.Code code) {
    switch (code) {
      case NOT_FOUND:
        return NOT_FOUND;
      case INVALID_ARGUMENT:
        return INVALID_ARGUMENT;
      case PERMISSION_DENIED:
        return PERMISSION_DENIED;
      case DATA_LOSS:
        return DATA_LOSS;
      case UNAVAILABLE:
        return UNAVAILABLE;
      case UNIMPLEMENTED:
        return UNIMPLEMENTED;
      case CANCELLED:
        return CANCELLED;
      case DEADLINE_EXCEEDED:
        return TIMED_OUT;
      case UNAUTHENTICATED:
        return UNAUTHENTICATED;
      case INTERNAL:
        return INTERNAL;
      case RESOURCE_EXHAUSTED:
        return RESOURCE_EXHAUSTED;
      default:
        return UNKNOWN;
    }
  }
}
