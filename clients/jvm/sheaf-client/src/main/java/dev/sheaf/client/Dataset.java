package dev.sheaf.client;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.OptionalLong;
import java.util.Set;
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
 * <p>Its endpoints carry what their streams must hold (the schema, and the exact rows when the plan
 * gives them: {@link Endpoint#rows()}), which every read checks.
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
      if (em != null && em.length > 0) {
        EndpointMetadata r = Wire.metadata(em, typed, EndpointMetadata.getDefaultInstance(), what);
        firstRow = r.getFirstRow();
        tableRows = r.getTableRows();
      }
      endpoints.add(
          new Endpoint(endpoints.size(), e.getTicket().getBytes(), locations, firstRow, tableRows));
    }
    long[] exact = exactRows(info.getRecords(), endpoints, parameters(request, requested, m));
    for (int i = 0; i < endpoints.size(); i++) {
      endpoints.set(
          i,
          endpoints
              .get(i)
              .withPlan(exact == null ? -1 : exact[i], info.getSchema(), m.getPinnedUri()));
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

  /**
   * The parameters a request sets that change how many rows it returns ({@code filter}, {@code
   * sample}, {@code sample_rows}, {@code limit}, {@code rows}): the typed request's fields, or the
   * query parameters of the text URI sent and of the pinned URI the server answered.
   */
  private static Set<String> parameters(
      DatasetRequest request, String requested, FlightInfoMetadata m) {
    Set<String> out = new HashSet<>();
    if (request != null) {
      if (request.filter() != null) {
        out.add("filter");
      }
      if (request.sample() != null) {
        out.add("sample");
      }
      if (request.sampleRows() != null) {
        out.add("sample_rows");
      }
      if (request.limit() != null) {
        out.add("limit");
      }
      return out;
    }
    for (String uri : new String[] {requested, m.getPinnedUri()}) {
      int q = uri.indexOf('?');
      if (q < 0) {
        continue;
      }
      for (String pair : uri.substring(q + 1).split("&")) {
        String name = pair.split("=", 2)[0].trim();
        out.add(name.equals("sampleRows") ? "sample_rows" : name);
      }
    }
    return out;
  }

  /**
   * Each endpoint's exact rows, when the plan gives them; else null. Exact: a known total without
   * filter or fractional sample, and either one endpoint (a plain read, a limit or {@code
   * sample_rows}) or endpoints whose table rows follow each other and add up to the total (no
   * limit, {@code sample_rows} or {@code rows} selection cutting them).
   */
  static long[] exactRows(long total, List<Endpoint> endpoints, Set<String> parameters) {
    if (total < 0 || parameters.contains("filter") || parameters.contains("sample")) {
      return null; // unknown, or an estimate
    }
    if (endpoints.size() == 1) {
      return new long[] {total};
    }
    if (parameters.contains("sample_rows")
        || parameters.contains("limit")
        || parameters.contains("rows")) {
      return null;
    }
    long[] out = new long[endpoints.size()];
    long next = 0;
    for (int i = 0; i < out.length; i++) {
      Endpoint e = endpoints.get(i);
      if (e.firstRow().isEmpty() || e.tableRows().isEmpty() || e.firstRow().getAsLong() != next) {
        return null;
      }
      out[i] = e.tableRows().getAsLong();
      next += out[i];
    }
    return next == total ? out : null;
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
