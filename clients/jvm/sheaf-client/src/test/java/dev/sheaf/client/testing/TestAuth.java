package dev.sheaf.client.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * An auth file for {@code sheaf serve --auth}, with credentials made by {@code sheaf auth}:
 *
 * <ul>
 *   <li>user {@code alice} (group {@code ml}) with a random password;
 *   <li>API token {@code job} (group {@code ml});
 *   <li>API token {@code outsider} (no group, no grant);
 *   <li>grants: group {@code ml} and the client certificate {@code cert:ci-job} (mutual TLS) read
 *       {@code test/*} (so {@code demo/weather} is not granted); group {@code ml} writes {@code
 *       written/*}.
 * </ul>
 */
public final class TestAuth {
  /** The user's name. */
  public static final String USER = "alice";

  /** The auth file. */
  public final Path file;

  /** alice's password. */
  public final String password;

  /** The API token of {@code job}. */
  public final String token;

  /** The API token of {@code outsider} (no grant). */
  public final String outsiderToken;

  private TestAuth(Path file, String password, String token, String outsiderToken) {
    this.file = file;
    this.password = password;
    this.token = token;
    this.outsiderToken = outsiderToken;
  }

  /**
   * Writes the auth file.
   *
   * @param dir where to write it
   * @return the credentials
   * @throws Exception if {@code sheaf auth} fails
   */
  public static TestAuth create(Path dir) throws Exception {
    String password = "pw-" + random(12);
    String phc = sheafAuth(List.of("hash-password"), password + "\n").path("password").asText();
    JsonNode job = sheafAuth(List.of("new-token", "job"), null);
    JsonNode outsider = sheafAuth(List.of("new-token", "outsider"), null);
    Path file = dir.resolve("auth.toml");
    Files.writeString(
        file,
        "[server]\n"
            + "key = "
            + quote(random(24))
            + "\n\n"
            + "[[user]]\nname = "
            + quote(USER)
            + "\npassword = "
            + quote(phc)
            + "\ngroups = [\"ml\"]\n\n"
            + "[[token]]\nname = \"job\"\nsha256 = "
            + quote(job.path("sha256").asText())
            + "\ngroups = [\"ml\"]\n\n"
            + "[[token]]\nname = \"outsider\"\nsha256 = "
            + quote(outsider.path("sha256").asText())
            + "\ngroups = []\n\n"
            + "[[grant]]\nto = \"group:ml\"\npackages = \"test/*\"\naccess = \"read\"\n\n"
            + "[[grant]]\nto = \"cert:ci-job\"\npackages = \"test/*\"\naccess = \"read\"\n\n"
            + "[[grant]]\nto = \"group:ml\"\npackages = \"written/*\"\naccess = \"write\"\n");
    return new TestAuth(
        file, password, job.path("token").asText(), outsider.path("token").asText());
  }

  /**
   * The arguments of {@code sheaf serve} for this auth file over TLS.
   *
   * @param pki the certificates
   * @param mutual whether to require client certificates ({@code --tls-client-ca})
   * @return the arguments
   */
  public List<String> serveArgs(TestPki pki, boolean mutual) {
    List<String> args =
        new ArrayList<>(
            List.of(
                "--auth",
                file.toString(),
                "--tls-cert",
                pki.serverCert.toString(),
                "--tls-key",
                pki.serverKey.toString()));
    if (mutual) {
      args.addAll(List.of("--tls-client-ca", pki.clientCa.toString()));
    }
    return args;
  }

  private static JsonNode sheafAuth(List<String> args, String input) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(TestServer.binary().toString(), "--json", "auth"));
    cmd.addAll(args);
    return new ObjectMapper().readTree(TestServer.run(cmd, input));
  }

  private static String random(int bytes) {
    byte[] b = new byte[bytes];
    new SecureRandom().nextBytes(b);
    return HexFormat.of().formatHex(b);
  }

  /** A TOML basic string (the values here have no quotes, backslashes or control characters). */
  private static String quote(String s) {
    if (s.isEmpty() || s.chars().anyMatch(c -> c == '"' || c == '\\' || c < 0x20)) {
      throw new IllegalArgumentException("cannot quote this value for TOML");
    }
    return "\"" + s + "\"";
  }
}
