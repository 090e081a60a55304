package dev.sheaf.client;

import java.io.Serializable;
import java.util.Objects;
import sheaf.v1.Sheaf;

/**
 * A dataset read to produce a revision: recorded as lineage by {@link SheafClient#beginWrite} and
 * returned by {@link SheafClient#lineage(String)} ({@code sheaf.v1.LineageInput}).
 *
 * @param packageName {@code OWNER/NAME}
 * @param topHash the full top hash that was read
 * @param uri the dataset URI it was read with (pinned to {@code topHash}), or null
 */
public record LineageInput(String packageName, String topHash, String uri) implements Serializable {
  /** Checks the required fields. */
  public LineageInput {
    Objects.requireNonNull(packageName, "package");
    Objects.requireNonNull(topHash, "top hash");
  }

  /**
   * @return the message sent to the server
   */
  public Sheaf.LineageInput toProto() {
    Sheaf.LineageInput.Builder b =
        Sheaf.LineageInput.newBuilder().setPackage(packageName).setTopHash(topHash);
    if (uri != null) {
      b.setUri(uri);
    }
    return b.build();
  }

  /**
   * @param p the message
   * @return the input it describes
   */
  public static LineageInput of(Sheaf.LineageInput p) {
    return new LineageInput(
        p.getPackage(), p.getTopHash(), p.getUri().isEmpty() ? null : p.getUri());
  }
}
