package dev.sheaf.client;

import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * The one thread per JVM that cancels calls which waited for their server past the stall timeout
 * ({@link EndpointStream}), started on first use. A daemon: it never keeps the JVM alive.
 */
final class StallWatchdog {
  private static volatile ScheduledThreadPoolExecutor executor;

  private StallWatchdog() {}

  /** Runs {@code alarm} after {@code nanos} unless the returned future is cancelled first. */
  static ScheduledFuture<?> schedule(Runnable alarm, long nanos) {
    return executor().schedule(alarm, nanos, TimeUnit.NANOSECONDS);
  }

  private static ScheduledThreadPoolExecutor executor() {
    ScheduledThreadPoolExecutor e = executor;
    if (e == null) {
      synchronized (StallWatchdog.class) {
        e = executor;
        if (e == null) {
          e =
              new ScheduledThreadPoolExecutor(
                  1,
                  r -> {
                    Thread t = new Thread(r, "sheaf-stall-watchdog");
                    t.setDaemon(true);
                    return t;
                  });
          e.setRemoveOnCancelPolicy(true);
          executor = e;
        }
      }
    }
    return e;
  }
}
