package dev.sheaf.client;

/**
 * A package and its latest revision.
 *
 * @param name {@code OWNER/NAME}
 * @param latestTopHash the top hash of its latest revision, or null if it has none
 */
public record PackageInfo(String name, String latestTopHash) {}
