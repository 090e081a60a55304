package dev.sheaf.jdbc.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import java.util.Locale;
import org.apache.arrow.driver.jdbc.shaded.org.apache.arrow.flight.FlightRuntimeException;
import org.junit.jupiter.api.function.Executable;

/**
 * What the server answered under a driver's {@link SQLException}: the Flight status (gRPC code and
 * description) the driver wraps as the exception's cause. Tests assert on the description, not on
 * the SQLException's message, because the driver's message repeats the SQL, which names the very
 * things the server is expected to name.
 */
public final class FlightErrors {
  private FlightErrors() {}

  /**
   * The Flight error under a driver exception.
   *
   * @param e what the driver threw
   * @return the first {@link FlightRuntimeException} in its causes
   */
  public static FlightRuntimeException flightError(SQLException e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof FlightRuntimeException f) {
        return f;
      }
    }
    throw new AssertionError("no Flight status under the driver's exception", e);
  }

  /**
   * Runs {@code call}, which must fail with a SQLException carrying a Flight status of {@code code}
   * whose description names every one of {@code named} (case-insensitive).
   *
   * @param code the expected gRPC code, as Flight names it ({@code NOT_FOUND}, {@code
   *     INVALID_ARGUMENT}, ...)
   * @param call the JDBC call
   * @param named what the server's message must name
   * @return the server's message
   */
  public static String assertFlightError(String code, Executable call, String... named) {
    SQLException e = assertThrows(SQLException.class, call);
    FlightRuntimeException f = flightError(e);
    String description = f.status().description();
    assertNotNull(description, "the server sent no message");
    assertEquals(
        code,
        f.status().code().name(),
        "gRPC code; message: " + description + "; " + e.getMessage());
    for (String n : named) {
      assertTrue(
          description.toLowerCase(Locale.ROOT).contains(n.toLowerCase(Locale.ROOT)),
          "the server's message should name " + n + ": " + description);
    }
    return description;
  }
}
