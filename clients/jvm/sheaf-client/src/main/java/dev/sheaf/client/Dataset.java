package dev.sheaf.client;

import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;
import org.apache.arrow.flight.FlightEndpoint;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.Location;
import org.apache.arrow.vector.types.pojo.Schema;
import sheaf.v1.Sheaf.EndpointMetadata;
import sheaf.v1.Sheaf.FlightInfoMetadata;

/**
 * A planned read: what GetFlightInfo answered for a {@link DatasetRequest} or a text dataset URI.
 * It pins the revision: {@link #topHash()} and {@link #pinnedUri()} name exactly the data its
 * endpoints return, so record them to reproduce a read.
 *
 * <p>Its endpoints carry what their streams must hold (the schema, and the exact rows when the
 * server states them: {@link Endpoint#rows()}, from {@code EndpointMetadata.rows}), which every
 * read checks.
 */
public final class Dataset {
  private final String requested;
  private final DatasetRequest request;
  private final Schema schema;
  private final List<Endpoint> endpoints;
  private final long totalRecords;
  private final long totalBytes;
  private final FlightInfoMetadata metadata;
  private final String server;

  private Dataset(
      String requested,
      DatasetRequest request,
      Schema schema,
      List<Endpoint> endpoints,
      long totalRecords,
      long totalBytes,
      FlightInfoMetadata metadata,
      String server) {
    this.requested = requested;
    this.request = request;
    this.schema = schema;
    this.endpoints = endpoints;
    this.totalRecords = totalRecords;
    this.totalBytes = totalBytes;
    this.metadata = metadata;
    this.server = server;
  }

  /**
   * Reads a FlightInfo and its app_metadata ({@code FlightInfoMetadata}, and {@code
   * EndpointMetadata} per endpoint): binary for a typed request, JSON for a text URI.
   *
   * @param requested the request as text (for messages)
   * @param request the typed request, or null when a text URI was sent
   * @param info the answer
   * @param server the server asked
   */
  static Dataset from(String requested, DatasetRequest request, FlightInfo info, String server) {
    String what = "GetFlightInfo " + requested + " on " + server;
    boolean typed = request != null;
    byte[] meta = info.getAppMetadata();
    if (meta == null || meta.length == 0) {
      throw new SheafException(
          ErrorCode.CLIENT, what + ": the answer has no app_metadata (not a Sheaf server?)", null);
    }
    FlightInfoMetadata m =
        Wire.metadata(meta, typed, FlightInfoMetadata.getDefaultInstance(), what);
    if (m.getTopHash().isEmpty()) {
      throw new SheafException(
          ErrorCode.CLIENT, what + ": the answer's app_metadata has no top_hash: " + m, null);
    }
    List<Endpoint> endpoints = new ArrayList<>();
    for (FlightEndpoint e : info.getEndpoints()) {
      List<String> locations = new ArrayList<>();
      for (Location l : e.getLocations()) {
        locations.add(l.getUri().toString());
      }
      byte[] em = e.getAppMetadata();
      long firstRow = -1;
      long tableRows = -1;
      long rows = -1; // the server's exact rows: absent when only reading tells
      if (em != null && em.length > 0) {
        EndpointMetadata r = Wire.metadata(em, typed, EndpointMetadata.getDefaultInstance(), what);
        firstRow = r.getFirstRow();
        tableRows = r.getTableRows();
        rows = r.hasRows() ? checkedRows(r.getRows(), what) : -1;
      }
      endpoints.add(
          new Endpoint(endpoints.size(), e.getTicket().getBytes(), locations, firstRow, tableRows)
              .withPlan(rows, info.getSchema(), m.getPinnedUri()));
    }
    return new Dataset(
        requested,
        request,
        info.getSchema(),
        List.copyOf(endpoints),
        info.getRecords(),
        info.getBytes(),
        m,
        server);
  }

  /** An endpoint's {@code rows} (a uint64), refused when it does not fit a long. */
  private static long checkedRows(long rows, String what) {
    if (rows < 0) {
      throw new SheafException(
          ErrorCode.CLIENT,
          what + ": an endpoint's rows " + Long.toUnsignedString(rows) + " do not fit a long",
          null);
    }
    return rows;
  }

  /**
   * @return the request as it was sent: a text URI, or {@link DatasetRequest#toString()}
   */
  public String requested() {
    return requested;
  }

  /**
   * @return the typed request this dataset was planned from, or null for a text URI
   */
  public DatasetRequest request() {
    return request;
  }

  /**
   * @return the schema of every endpoint's batches (only the requested columns)
   */
  public Schema schema() {
    return schema;
  }

  /**
   * @return the endpoints, in the server's canonical order
   */
  public List<Endpoint> endpoints() {
    return endpoints;
  }

  /**
   * Rows of the result, when the server knows them: exact for plain reads and exact-count samples,
   * an estimate for fractional samples, unknown under a filter or for whole-file tables.
   *
   * @return the row count, or empty when unknown
   */
  public OptionalLong totalRows() {
    return totalRecords < 0 ? OptionalLong.empty() : OptionalLong.of(totalRecords);
  }

  /**
   * @return uncompressed bytes of the table read (before filters), or empty when unknown
   */
  public OptionalLong totalBytes() {
    return totalBytes < 0 ? OptionalLong.empty() : OptionalLong.of(totalBytes);
  }

  /**
   * @return the package, {@code OWNER/NAME}
   */
  public String packageName() {
    return metadata.getPackage();
  }

  /**
   * @return the resolved revision's full top hash
   */
  public String topHash() {
    return metadata.getTopHash();
  }

  /**
   * @return the table path inside the package (empty for the manifest table)
   */
  public String path() {
    return metadata.getPath();
  }

  /**
   * @return the request as a text dataset URI pinned to {@link #topHash()}, as the server wrote it:
   *     reading it again returns the same rows
   */
  public String pinnedUri() {
    return metadata.getPinnedUri();
  }

  /**
   * @return the FlightInfo's app_metadata, as the server sent it
   */
  public FlightInfoMetadata metadata() {
    return metadata;
  }

  /**
   * @return the server that planned it (where endpoints without a location are read)
   */
  public String server() {
    return server;
  }

  @Override
  public String toString() {
    return pinnedUri()
        + " ("
        + endpoints.size()
        + " endpoint"
        + (endpoints.size() == 1 ? "" : "s")
        + ")";
  }
}
