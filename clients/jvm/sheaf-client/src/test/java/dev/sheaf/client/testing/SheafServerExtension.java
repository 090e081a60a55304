package dev.sheaf.client.testing;

/** Injects the {@link TestServer} shared by every test class of a test run. */
public final class SheafServerExtension extends SharedServerExtension<TestServer> {
  public SheafServerExtension() {
    super(TestServer.class, TestServer::start);
  }
}
