package dev.sheaf.client;

import java.io.Serializable;
import java.util.Arrays;
import java.util.List;
import java.util.OptionalLong;

/**
 * One endpoint of a {@link Dataset}: a self-contained, reusable ticket and the servers that can
 * redeem it. Plain bytes and strings, so it can be sent to another process (a Spark executor) and
 * read there with {@link SheafClient#stream(Endpoint)}.
 */
public final class Endpoint implements Serializable {
  private static final long serialVersionUID = 2L;

  private final int index;
  private final byte[] ticket;
  private final List<String> locations;
  private final long firstRow;
  private final long tableRows;

  /**
   * An endpoint.
   *
   * @param index its position among the dataset's endpoints
   * @param ticket the Flight ticket bytes
   * @param locations URIs of the servers holding it, tried in order; empty means "the server that
   *     planned it"
   */
  public Endpoint(int index, byte[] ticket, List<String> locations) {
    this(index, ticket, locations, -1, -1);
  }

  /**
   * An endpoint with the table rows it covers (its {@code EndpointMetadata}).
   *
   * @param index its position among the dataset's endpoints
   * @param ticket the Flight ticket bytes
   * @param locations URIs of the servers holding it, tried in order; empty means "the server that
   *     planned it"
   * @param firstRow position in the whole table of its first row, or -1 when unknown
   * @param tableRows rows of the table it covers (before filters and sampling), or -1
   */
  public Endpoint(int index, byte[] ticket, List<String> locations, long firstRow, long tableRows) {
    this.index = index;
    this.ticket = ticket.clone();
    this.locations = List.copyOf(locations);
    this.firstRow = firstRow;
    this.tableRows = tableRows;
  }

  /**
   * @return the position among the dataset's endpoints (the server's canonical order)
   */
  public int index() {
    return index;
  }

  /**
   * @return a copy of the ticket bytes
   */
  public byte[] ticket() {
    return ticket.clone();
  }

  /**
   * @return location URIs; empty means the server that planned the dataset
   */
  public List<String> locations() {
    return locations;
  }

  /**
   * @return position in the whole table of the first row this endpoint covers; empty for tables
   *     read whole
   */
  public OptionalLong firstRow() {
    return firstRow < 0 ? OptionalLong.empty() : OptionalLong.of(firstRow);
  }

  /**
   * @return rows of the table this endpoint covers, before filters and sampling; empty for tables
   *     read whole
   */
  public OptionalLong tableRows() {
    return tableRows < 0 ? OptionalLong.empty() : OptionalLong.of(tableRows);
  }

  @Override
  public boolean equals(Object o) {
    if (!(o instanceof Endpoint)) {
      return false;
    }
    Endpoint e = (Endpoint) o;
    return e.index == index
        && Arrays.equals(e.ticket, ticket)
        && e.locations.equals(locations)
        && e.firstRow == firstRow
        && e.tableRows == tableRows;
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
