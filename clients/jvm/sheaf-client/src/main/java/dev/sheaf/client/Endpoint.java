package dev.sheaf.client;

import java.io.Serializable;
import java.util.Arrays;
import java.util.List;

/**
 * One endpoint of a {@link Dataset}: a self-contained, reusable ticket and the servers that can
 * redeem it. Plain bytes and strings, so it can be sent to another process (a Spark executor)
 * and read there with {@link SheafClient#stream(Endpoint)}.
 */
public final class Endpoint implements Serializable {
  private static final long serialVersionUID = 1L;

  private final int index;
  private final byte[] ticket;
  private final List<String> locations;

  /**
   * An endpoint.
   *
   * @param index its position among the dataset's endpoints
   * @param ticket the Flight ticket bytes
   * @param locations URIs of the servers holding it; empty means "the server that planned it"
   */
  public Endpoint(int index, byte[] ticket, List<String> locations) {
    this.index = index;
    this.ticket = ticket.clone();
    this.locations = List.copyOf(locations);
  }

  /** @return the position among the dataset's endpoints (the server's canonical order) */
  public int index() {
    return index;
  }

  /** @return a copy of the ticket bytes */
  public byte[] ticket() {
    return ticket.clone();
  }

  /** @return location URIs; empty means the server that planned the dataset */
  public List<String> locations() {
    return locations;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Endpoint && ((Endpoint) o).index == index && Arrays.equals(((Endpoint) o).ticket, ticket)
        && ((Endpoint) o).locations.equals(locations);
  }

  @Override
  public int hashCode() {
    return Arrays.hashCode(ticket) * 31 + index;
  }

  @Override
  public String toString() {
    return "endpoint " + index + (locations.isEmpty() ? "" : " at " + String.join(", ", locations));
  }
}
