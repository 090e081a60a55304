/**
 * A Java client for Sheaf's Arrow Flight server: list packages and tables, resolve revisions, plan
 * a read of a table slice ({@link dev.sheaf.client.DatasetRequest}) into a {@link
 * dev.sheaf.client.Dataset}, and read its endpoints as Arrow {@link
 * org.apache.arrow.vector.VectorSchemaRoot}s, one endpoint at a time ({@link
 * dev.sheaf.client.EndpointStream}) or several in parallel in endpoint order ({@link
 * dev.sheaf.client.DatasetReader}).
 *
 * <pre>{@code
 * try (BufferAllocator root = new RootAllocator();
 *      SheafClient client = SheafClient.builder("grpc://127.0.0.1:50051").allocator(root).build()) {
 *   Dataset ds = client.dataset(DatasetRequest.of("demo/weather").withPath("tables/readings.parquet")
 *       .withColumns("id", "temp_c").withFilter("temp_c > 30"));
 *   System.out.println("reading " + ds.pinnedUri());          // records the exact revision
 *   try (DatasetReader reader = client.read(ds, 4)) {
 *     while (reader.next()) {
 *       VectorSchemaRoot batch = reader.root();                 // valid until the next call
 *     }
 *   }
 * }
 * }</pre>
 *
 * <p>The wire messages are those of {@code proto/sheaf.proto}, generated into {@code
 * sheaf.v1.Sheaf}: typed requests and answers, and errors whose reason and details {@link
 * dev.sheaf.client.SheafException} exposes.
 *
 * <p>Credentials and TLS: {@code SheafClient.builder("grpc+tls://host:50051").tlsRootCerts(caPem)
 * .username("alice").password(pw)} logs in once and keeps only the session token ({@link
 * dev.sheaf.client.SheafClient#token()}); {@code .token(apiToken)} sends an API token; {@code
 * .clientCertificate(certPem, keyPem)} adds a client certificate for mutual TLS.
 *
 * <p>Every allocation comes from the allocator given to the builder (a child of it, closed with the
 * client), so closing that allocator after the client reports any leak.
 */
package dev.sheaf.client;
