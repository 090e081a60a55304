package dev.sheaf.client;

import java.util.List;

/**
 * One revision of a package.
 *
 * @param topHash the revision's top hash
 * @param timestamp when it was pushed, in Unix seconds
 * @param message its commit message, or null
 * @param tags tags naming it ({@code latest} included when it is the latest)
 */
public record RevisionInfo(String topHash, long timestamp, String message, List<String> tags) {}
