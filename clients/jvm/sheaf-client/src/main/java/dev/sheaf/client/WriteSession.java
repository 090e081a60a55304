package dev.sheaf.client;

import java.io.Serializable;
import java.util.Objects;
import sheaf.v1.Sheaf;

/**
 * An open write session ({@link SheafClient#beginWrite}): parts uploaded in it ({@link
 * SheafClient#openPart}, {@link SheafClient#putPart}) stay invisible until {@link
 * SheafClient#commit} makes one revision of them, or {@link SheafClient#abort} drops them.
 * Serializable: hand it to the processes that upload parts (Spark executors).
 *
 * @param id the session id the server answered
 * @param packageName {@code OWNER/NAME}
 * @param base the full top hash the commit must build on, or null for whatever is latest then
 * @param expiresAt Unix seconds when the server drops the session if it is not committed
 */
public record WriteSession(String id, String packageName, String base, long expiresAt)
    implements Serializable {
  /** Checks the required fields. */
  public WriteSession {
    Objects.requireNonNull(id, "session id");
    Objects.requireNonNull(packageName, "package");
  }

  /**
   * @param p the server's answer to {@code begin_write}
   * @return the session
   */
  public static WriteSession of(Sheaf.BeginWriteResponse p) {
    return new WriteSession(
        p.getSession(), p.getPackage(), p.hasBase() ? p.getBase() : null, p.getExpiresAt());
  }
}
