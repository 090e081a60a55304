package dev.sheaf.client;

import java.util.ArrayList;
import java.util.List;
import sheaf.v1.Sheaf;

/**
 * The read-only actions behind {@link SheafClient}'s catalog methods: packages, revisions, tables,
 * references, lineage and user metadata, each an action whose typed answer becomes the client's
 * records. {@link SheafClient} documents each call.
 */
final class Catalog {
  private final FlightConnections connections;

  Catalog(FlightConnections connections) {
    this.connections = connections;
  }

  List<PackageInfo> packages(String glob) {
    Sheaf.ListPackagesRequest.Builder request = Sheaf.ListPackagesRequest.newBuilder();
    if (glob != null) {
      request.setPattern(glob);
    }
    List<PackageInfo> out = new ArrayList<>();
    Sheaf.ListPackagesResponse response =
        connections.action(
            "list_packages",
            request.build(),
            Sheaf.ListPackagesResponse.class,
            "list_packages " + (glob == null ? "*" : glob));
    for (Sheaf.PackageSummary p : response.getPackagesList()) {
      out.add(new PackageInfo(p.getName(), p.hasLatest() ? p.getLatest() : null));
    }
    return out;
  }

  List<RevisionInfo> revisions(String packageName) {
    List<RevisionInfo> out = new ArrayList<>();
    Sheaf.ListRevisionsResponse response =
        connections.action(
            "list_revisions",
            Sheaf.ListRevisionsRequest.newBuilder().setPackage(packageName).build(),
            Sheaf.ListRevisionsResponse.class,
            "list_revisions " + packageName);
    for (Sheaf.RevisionSummary r : response.getRevisionsList()) {
      out.add(
          new RevisionInfo(
              r.getTopHash(),
              r.getTimestamp(),
              r.hasMessage() ? r.getMessage() : null,
              List.copyOf(r.getTagsList())));
    }
    return out;
  }

  ResolvedRevision resolve(String reference) {
    Sheaf.ResolveResponse r =
        connections.action(
            "resolve",
            Sheaf.ResolveRequest.newBuilder().setRef(reference).build(),
            Sheaf.ResolveResponse.class,
            "resolve " + reference);
    return new ResolvedRevision(r.getPackage(), r.getTopHash());
  }

  List<TableInfo> tables(String reference) {
    List<TableInfo> out = new ArrayList<>();
    Sheaf.ListTablesResponse response =
        connections.action(
            "list_tables",
            Sheaf.ListTablesRequest.newBuilder().setRef(reference).build(),
            Sheaf.ListTablesResponse.class,
            "list_tables " + reference);
    for (Sheaf.TableSummary t : response.getTablesList()) {
      out.add(new TableInfo(t.getPath(), t.getFormat(), t.getUri()));
    }
    return out;
  }

  List<LineageNode> lineage(String reference, Integer depth) {
    Sheaf.LineageRequest.Builder b = Sheaf.LineageRequest.newBuilder().setRef(reference);
    if (depth != null) {
      b.setDepth(depth);
    }
    List<LineageNode> out = new ArrayList<>();
    for (Sheaf.LineageNode n : lineage(b.build()).getNodesList()) {
      out.add(LineageNode.of(n));
    }
    return out;
  }

  Sheaf.LineageResponse lineage(Sheaf.LineageRequest request) {
    return connections.action(
        "lineage", request, Sheaf.LineageResponse.class, "lineage " + request.getRef());
  }

  String userMetadata(String reference) {
    Sheaf.BrowseResponse r =
        connections.action(
            "browse",
            Sheaf.BrowseRequest.newBuilder().setRef(reference).build(),
            Sheaf.BrowseResponse.class,
            "browse " + reference);
    return r.hasUserMeta() ? r.getUserMeta() : null;
  }
}
