package dev.sheaf.jdbc.testing;

import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * Injects the {@link SqlServer} shared by every test class of the run: started on first use (TLS
 * handshakes and server starts are slow on small machines, so once), stopped when the run ends.
 */
public final class SqlServerExtension implements ParameterResolver {
  private static final ExtensionContext.Namespace NS =
      ExtensionContext.Namespace.create(SqlServerExtension.class);

  /** Holds the server in JUnit's root store, which closes it at the end of the run. */
  private static final class Holder implements ExtensionContext.Store.CloseableResource {
    final SqlServer server;

    Holder(SqlServer server) {
      this.server = server;
    }

    @Override
    public void close() throws Throwable {
      server.close();
    }
  }

  @Override
  public boolean supportsParameter(ParameterContext p, ExtensionContext c) {
    return p.getParameter().getType() == SqlServer.class;
  }

  @Override
  public Object resolveParameter(ParameterContext p, ExtensionContext c) {
    return c.getRoot()
        .getStore(NS)
        .getOrComputeIfAbsent(
            "server",
            k -> {
              try {
                return new Holder(SqlServer.start());
              } catch (Exception e) {
                throw new IllegalStateException(
                    "starting the sheaf server for the JDBC tests: " + e.getMessage(), e);
              }
            },
            Holder.class)
        .server;
  }
}
