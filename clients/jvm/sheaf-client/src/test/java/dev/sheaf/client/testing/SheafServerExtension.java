package dev.sheaf.client.testing;

import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * Injects the {@link TestServer} shared by every test class of a test run: started on first use,
 * stopped when the run ends.
 */
public final class SheafServerExtension implements ParameterResolver {
  private static final ExtensionContext.Namespace NS =
      ExtensionContext.Namespace.create(SheafServerExtension.class);

  /** Holds the server in JUnit's root store, which closes it at the end of the run. */
  private static final class Holder implements ExtensionContext.Store.CloseableResource {
    final TestServer server;

    Holder(TestServer server) {
      this.server = server;
    }

    @Override
    public void close() throws Throwable {
      server.close();
    }
  }

  @Override
  public boolean supportsParameter(ParameterContext p, ExtensionContext c) {
    return p.getParameter().getType() == TestServer.class;
  }

  @Override
  public Object resolveParameter(ParameterContext p, ExtensionContext c) {
    return c.getRoot()
        .getStore(NS)
        .getOrComputeIfAbsent(
            "server",
            k -> {
              try {
                return new Holder(TestServer.start());
              } catch (Exception e) {
                throw new IllegalStateException(
                    "starting the sheaf server for the tests: " + e.getMessage(), e);
              }
            },
            Holder.class)
        .server;
  }
}
