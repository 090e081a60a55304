package dev.sheaf.client;

/**
 * A table of a revision.
 *
 * @param path its path inside the package (empty for the manifest table)
 * @param format {@code parquet}, {@code csv}, {@code manifest}, ...
 * @param uri its dataset URI, pinned to the revision
 */
public record TableInfo(String path, String format, String uri) {}
