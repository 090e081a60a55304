package dev.sheaf.client;

import java.util.List;
import sheaf.v1.Sheaf;

/**
 * The revision a commit made ({@code sheaf.v1.CommitWriteResponse}).
 *
 * @param packageName {@code OWNER/NAME}
 * @param topHash the new revision's top hash
 * @param previous the revision {@code latest} pointed at before, or null
 * @param uris the tables written, as dataset URIs pinned to {@code topHash}
 * @param keys the logical keys added
 * @param rows rows committed
 * @param bytes bytes committed
 */
public record CommitResult(
    String packageName,
    String topHash,
    String previous,
    List<String> uris,
    List<String> keys,
    long rows,
    long bytes) {
  /**
   * @param p the server's answer
   * @return the result
   */
  public static CommitResult of(Sheaf.CommitWriteResponse p) {
    return new CommitResult(
        p.getPackage(),
        p.getTopHash(),
        p.hasPrevious() ? p.getPrevious() : null,
        List.copyOf(p.getUrisList()),
        List.copyOf(p.getKeysList()),
        p.getRows(),
        p.getBytes());
  }
}
