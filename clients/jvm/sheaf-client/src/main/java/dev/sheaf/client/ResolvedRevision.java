package dev.sheaf.client;

/**
 * A reference resolved to a revision.
 *
 * @param packageName {@code OWNER/NAME}
 * @param topHash the full top hash
 */
public record ResolvedRevision(String packageName, String topHash) {}
