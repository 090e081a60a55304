package dev.sheaf.spark;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/** The root Arrow allocator of a JVM running Sheaf readers; each reader uses a child of it. */
final class ExecutorAllocator {
  private static final BufferAllocator ROOT = new RootAllocator(Long.MAX_VALUE);

  private ExecutorAllocator() {}

  static BufferAllocator root() {
    return ROOT;
  }
}
