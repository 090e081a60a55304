package dev.sheaf.spark;

import dev.sheaf.client.Endpoint;
import org.apache.spark.sql.connector.read.InputPartition;

/**
 * One Spark partition per Flight endpoint: the ticket bytes and location strings travel to the
 * executor, which connects to the endpoint's location (or the planning server when it has none).
 */
final class SheafInputPartition implements InputPartition {
  private static final long serialVersionUID = 1L;

  final Endpoint endpoint;

  SheafInputPartition(Endpoint endpoint) {
    this.endpoint = endpoint;
  }

  @Override
  public String toString() {
    return "sheaf " + endpoint;
  }
}
