package dev.sheaf.jdbc.testing;

import dev.sheaf.client.testing.SharedServerExtension;

/** Injects the {@link SqlServer} shared by every test class of the JDBC tests' run. */
public final class SqlServerExtension extends SharedServerExtension<SqlServer> {
  public SqlServerExtension() {
    super(SqlServer.class, SqlServer::start);
  }
}
