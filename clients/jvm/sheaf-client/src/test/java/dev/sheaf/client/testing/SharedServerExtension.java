package dev.sheaf.client.testing;

import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * Injects a server of type {@code S} shared by every test class of a test run: started on first use
 * (server starts and TLS handshakes are slow on small machines, so once), stopped when the run
 * ends. Subclasses name the type and how to start one.
 */
public abstract class SharedServerExtension<S extends AutoCloseable> implements ParameterResolver {
  /** A server that cannot be started. */
  @FunctionalInterface
  protected interface Starter<S> {
    S start() throws Exception;
  }

  private final Class<S> type;
  private final Starter<S> starter;

  protected SharedServerExtension(Class<S> type, Starter<S> starter) {
    this.type = type;
    this.starter = starter;
  }

  /** Holds the server in JUnit's root store, which closes it at the end of the run. */
  private static final class Holder implements ExtensionContext.Store.CloseableResource {
    final AutoCloseable server;

    Holder(AutoCloseable server) {
      this.server = server;
    }

    @Override
    public void close() throws Throwable {
      server.close();
    }
  }

  @Override
  public boolean supportsParameter(ParameterContext p, ExtensionContext c) {
    return p.getParameter().getType() == type;
  }

  @Override
  public Object resolveParameter(ParameterContext p, ExtensionContext c) {
    ExtensionContext.Namespace ns = ExtensionContext.Namespace.create(getClass());
    return c.getRoot()
        .getStore(ns)
        .getOrComputeIfAbsent(
            type.getName(),
            k -> {
              try {
                return new Holder(starter.start());
              } catch (Exception e) {
                throw new IllegalStateException(
                    "starting the " + type.getSimpleName() + " for the tests: " + e.getMessage(),
                    e);
              }
            },
            Holder.class)
        .server;
  }
}
