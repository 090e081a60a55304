package dev.sheaf.client;

import java.io.Serializable;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.OptionalLong;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * One endpoint of a {@link Dataset}: a self-contained, reusable ticket and the servers that can
 * redeem it. Plain bytes and strings, so it can be sent to another process (a Spark executor) and
 * read there with {@link SheafClient#stream(Endpoint)}.
 *
 * <p>An endpoint of a {@link Dataset} also carries what its stream must hold, which every read of
 * it checks: the dataset's planned schema ({@link #schema()}), its exact rows when the server
 * states them ({@link #rows()}), and the dataset's pinned URI for messages ({@link #dataset()}).
 */
public final class Endpoint implements Serializable {
  private static final long serialVersionUID = 3L;

  private final int index;
  private final byte[] ticket;
  private final List<String> locations;
  private final long firstRow;
  private final long tableRows;
  private final long rows;
  private final byte[] schema;
  private final String dataset;
  private transient Schema parsedSchema;

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
    this(index, ticket, locations, firstRow, tableRows, -1, null, null);
  }

  private Endpoint(
      int index,
      byte[] ticket,
      List<String> locations,
      long firstRow,
      long tableRows,
      long rows,
      byte[] schema,
      String dataset) {
    this.index = index;
    this.ticket = ticket.clone();
    this.locations = List.copyOf(locations);
    this.firstRow = firstRow;
    this.tableRows = tableRows;
    this.rows = rows;
    this.schema = schema;
    this.dataset = dataset;
  }

  /**
   * The same endpoint with what its dataset's plan says its stream holds.
   *
   * @param exactRows the rows its stream returns, or -1 when the server does not say
   * @param plannedSchema the dataset's schema, or null
   * @param pinnedUri the dataset's pinned URI (for messages), or null
   * @return the endpoint
   */
  Endpoint withPlan(long exactRows, Schema plannedSchema, String pinnedUri) {
    return new Endpoint(
        index,
        ticket,
        locations,
        firstRow,
        tableRows,
        exactRows,
        plannedSchema == null ? null : plannedSchema.serializeAsMessage(),
        pinnedUri);
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

  /**
   * The exact rows this endpoint's stream returns, when the server states them ({@code
   * EndpointMetadata.rows}: the server's plan knows them for a read without filter or fractional
   * sample, and with a limit or {@code sampleRows} only for a read of one endpoint). A stream that
   * ends with fewer rows, or holds more, fails with a {@link SheafException} of code {@link
   * ErrorCode#DATA_LOSS}. When absent nothing about the count is checked.
   *
   * @return the rows, or empty when they are known only by reading
   */
  public OptionalLong rows() {
    return rows < 0 ? OptionalLong.empty() : OptionalLong.of(rows);
  }

  /**
   * The schema this endpoint's stream must have: its dataset's (the columns asked for). A stream
   * with other column names or types fails with a {@link SheafException} of code {@link
   * ErrorCode#DATA_LOSS} naming the difference.
   *
   * @return the planned schema, or null for an endpoint built without its dataset
   */
  public Schema schema() {
    if (schema == null) {
      return null;
    }
    Schema s = parsedSchema;
    if (s == null) {
      s = Schema.deserializeMessage(ByteBuffer.wrap(schema));
      parsedSchema = s;
    }
    return s;
  }

  /**
   * @return the pinned URI of the dataset this endpoint belongs to (named by error messages), or
   *     null for an endpoint built without its dataset
   */
  public String dataset() {
    return dataset;
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
        && e.tableRows == tableRows
        && e.rows == rows
        && Arrays.equals(e.schema, schema)
        && Objects.equals(e.dataset, dataset);
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
