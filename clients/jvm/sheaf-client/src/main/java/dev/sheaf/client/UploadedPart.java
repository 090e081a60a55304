package dev.sheaf.client;

import java.io.Serializable;
import sheaf.v1.Sheaf;

/**
 * A part staged in a write session: what the server answered a part upload ({@code
 * sheaf.v1.PutResponse} of a DoPut in a session). Nothing is visible until the session's commit
 * lists {@link #partId()} (or commits every part).
 *
 * @param session the session
 * @param partId the part's id, to list in {@link SheafClient#commit(WriteSession, java.util.List)}
 * @param path the table the part belongs to (a file, or a folder of part files)
 * @param rows rows received
 * @param bytes bytes of the Parquet file the server wrote
 */
public record UploadedPart(String session, String partId, String path, long rows, long bytes)
    implements Serializable {
  /**
   * @param p the server's answer
   * @return the part
   */
  public static UploadedPart of(Sheaf.PutResponse p) {
    return new UploadedPart(p.getSession(), p.getPartId(), p.getPath(), p.getRows(), p.getBytes());
  }
}
