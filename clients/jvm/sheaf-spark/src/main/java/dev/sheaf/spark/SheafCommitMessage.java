package dev.sheaf.spark;

import org.apache.spark.sql.connector.write.WriterCommitMessage;

/** What a task's committed attempt uploaded: its part (null when the task had no rows). */
final class SheafCommitMessage implements WriterCommitMessage {
  private static final long serialVersionUID = 1L;

  final int partition;
  final long taskId;
  final String partId;
  final long rows;
  final long bytes;

  SheafCommitMessage(int partition, long taskId, String partId, long rows, long bytes) {
    this.partition = partition;
    this.taskId = taskId;
    this.partId = partId;
    this.rows = rows;
    this.bytes = bytes;
  }

  @Override
  public String toString() {
    return "part "
        + partition
        + " (task "
        + taskId
        + "): "
        + (partId == null ? "no rows" : partId + ", " + rows + " rows, " + bytes + " bytes");
  }
}
