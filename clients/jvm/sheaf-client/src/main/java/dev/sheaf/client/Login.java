package dev.sheaf.client;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.flight.CallHeaders;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightClientMiddleware;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.auth2.Auth2Constants;
import org.apache.arrow.flight.auth2.AuthUtilities;
import org.apache.arrow.flight.auth2.BasicAuthCredentialWriter;
import org.apache.arrow.flight.auth2.ClientBearerHeaderHandler;
import org.apache.arrow.flight.auth2.ClientIncomingAuthHeaderMiddleware;
import org.apache.arrow.flight.grpc.CredentialCallOption;

/**
 * A password login: the Flight handshake with {@code authorization: Basic base64(user:password)}
 * (Arrow's {@link BasicAuthCredentialWriter}), whose response carries {@code authorization: Bearer
 * <session token>}, caught by Arrow's {@link ClientIncomingAuthHeaderMiddleware} with a {@link
 * ClientBearerHeaderHandler}. This is what {@code FlightClient.authenticateBasicToken} does, with a
 * deadline and with the token kept as text so it can be handed to other processes (Spark
 * executors).
 */
final class Login {
  /** Arrow's bearer handler, remembering the token of the first response that has one. */
  private static final class Capture extends ClientBearerHeaderHandler {
    private volatile String token;

    @Override
    public CredentialCallOption getCredentialCallOptionFromIncomingHeaders(CallHeaders incoming) {
      String value = AuthUtilities.getValueFromAuthHeader(incoming, Auth2Constants.BEARER_PREFIX);
      if (token == null && value != null && !value.trim().isEmpty()) {
        token = value.trim();
      }
      return super.getCredentialCallOptionFromIncomingHeaders(incoming);
    }
  }

  private final Capture capture = new Capture();

  /**
   * @return the middleware to install on the client that logs in
   */
  FlightClientMiddleware.Factory middleware() {
    return new ClientIncomingAuthHeaderMiddleware.Factory(capture);
  }

  /**
   * Logs in.
   *
   * @return the session token the server answered
   * @throws SheafException UNAUTHENTICATED for a refused login (wrong name or password, too many
   *     failures); CLIENT when the server answered without a token (no {@code --auth})
   */
  String run(FlightClient flight, String url, String user, String password, Duration timeout) {
    String what = "logging in as \"" + user + "\" to " + url;
    try {
      flight.handshake(
          new CredentialCallOption(new BasicAuthCredentialWriter(user, password)),
          CallOptions.timeout(timeout.toMillis(), TimeUnit.MILLISECONDS));
    } catch (FlightRuntimeException e) {
      throw SheafException.from(what, e);
    }
    String token = capture.token;
    if (token == null) {
      throw new SheafException(
          ErrorCode.CLIENT,
          what
              + ": the server accepted the handshake but answered no session "
              + "token (authorization: Bearer ...); is it running with --auth?",
          null);
    }
    return token;
  }
}
