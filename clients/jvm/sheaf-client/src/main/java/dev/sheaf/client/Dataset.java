package dev.sheaf.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;
import org.apache.arrow.flight.FlightEndpoint;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.Location;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * A planned read: what GetFlightInfo answered for a {@link DatasetUri}. It pins the revision:
 * {@link #topHash()} and {@link #pinnedUri()} name exactly the data its endpoints return, so
 * record them to reproduce a read.
 */
public final class Dataset {
  private final DatasetUri requested;
  private final Schema schema;
  private final List<Endpoint> endpoints;
  private final long totalRecords;
  private final long totalBytes;
  private final String packageName;
  private final String topHash;
  private final String path;
  private final String pinnedUri;
  private final String server;

  private Dataset(DatasetUri requested, Schema schema, List<Endpoint> endpoints, long totalRecords, long totalBytes,
      String packageName, String topHash, String path, String pinnedUri, String server) {
    this.requested = requested;
    this.schema = schema;
    this.endpoints = endpoints;
    this.totalRecords = totalRecords;
    this.totalBytes = totalBytes;
    this.packageName = packageName;
    this.topHash = topHash;
    this.path = path;
    this.pinnedUri = pinnedUri;
    this.server = server;
  }

  /** Reads a FlightInfo and its JSON app_metadata. */
  static Dataset from(DatasetUri requested, FlightInfo info, String server) {
    String what = "GetFlightInfo " + requested + " on " + server;
    byte[] meta = info.getAppMetadata();
    if (meta == null || meta.length == 0) {
      throw new SheafException(ErrorCode.CLIENT, what + ": the answer has no app_metadata (not a Sheaf server?)", null);
    }
    JsonNode m = Json.parse(meta, what);
    String topHash = Json.text(m, "top_hash", what);
    List<Endpoint> endpoints = new ArrayList<>();
    for (FlightEndpoint e : info.getEndpoints()) {
      List<String> locations = new ArrayList<>();
      for (Location l : e.getLocations()) {
        locations.add(l.getUri().toString());
      }
      endpoints.add(new Endpoint(endpoints.size(), e.getTicket().getBytes(), locations));
    }
    return new Dataset(requested, info.getSchema(), List.copyOf(endpoints), info.getRecords(), info.getBytes(),
        Json.text(m, "package", what), topHash, m.path("path").asText(""), Json.text(m, "pinned_uri", what), server);
  }

  /** @return the URI this dataset was planned from */
  public DatasetUri requested() {
    return requested;
  }

  /** @return the schema of every endpoint's batches (only the requested columns) */
  public Schema schema() {
    return schema;
  }

  /** @return the endpoints, in the server's canonical order */
  public List<Endpoint> endpoints() {
    return endpoints;
  }

  /**
   * Rows of the result, when the server knows them: exact for plain reads and exact-count
   * samples, an estimate for fractional samples, unknown under a filter or for whole-file tables.
   *
   * @return the row count, or empty when unknown
   */
  public OptionalLong totalRows() {
    return totalRecords < 0 ? OptionalLong.empty() : OptionalLong.of(totalRecords);
  }

  /** @return uncompressed bytes of the table read (before filters), or empty when unknown */
  public OptionalLong totalBytes() {
    return totalBytes < 0 ? OptionalLong.empty() : OptionalLong.of(totalBytes);
  }

  /** @return the package, {@code OWNER/NAME} */
  public String packageName() {
    return packageName;
  }

  /** @return the resolved revision's full top hash */
  public String topHash() {
    return topHash;
  }

  /** @return the table path inside the package (empty for the manifest table) */
  public String path() {
    return path;
  }

  /** @return the requested URI with its revision pinned to {@link #topHash()} */
  public String pinnedUri() {
    return pinnedUri;
  }

  /** @return the server that planned it (where endpoints without a location are read) */
  public String server() {
    return server;
  }

  @Override
  public String toString() {
    return pinnedUri + " (" + endpoints.size() + " endpoint" + (endpoints.size() == 1 ? "" : "s") + ")";
  }
}
