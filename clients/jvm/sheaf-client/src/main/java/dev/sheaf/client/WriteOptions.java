package dev.sheaf.client;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import sheaf.v1.Sheaf;

/**
 * How a write session commits ({@code sheaf.v1.BeginWriteRequest} without the package): the mode,
 * the revision it must build on, the commit message and user metadata, and the lineage recorded in
 * the new revision.
 *
 * <pre>{@code
 * WriteOptions o = WriteOptions.defaults()
 *     .withMode(Sheaf.WriteMode.WRITE_MODE_OVERWRITE)
 *     .withMessage("nightly features")
 *     .withInput(new LineageInput("team/raw", rawTopHash, null))
 *     .withTool("my-job 1.2");
 * }</pre>
 *
 * <p>Immutable; the {@code with...} methods return modified copies. The server checks every field
 * (names, JSON, modes) and its errors name what is wrong.
 */
public final class WriteOptions implements Serializable {
  private static final long serialVersionUID = 1L;

  private final Sheaf.WriteMode mode;
  private final String base;
  private final String message;
  private final String metadataJson;
  private final List<LineageInput> inputs;
  private final String tool;
  private final String idempotencyKey;
  private final Integer ttlSeconds;

  private WriteOptions(
      Sheaf.WriteMode mode,
      String base,
      String message,
      String metadataJson,
      List<LineageInput> inputs,
      String tool,
      String idempotencyKey,
      Integer ttlSeconds) {
    this.mode = mode;
    this.base = base;
    this.message = message;
    this.metadataJson = metadataJson;
    this.inputs = List.copyOf(inputs);
    this.tool = tool;
    this.idempotencyKey = idempotencyKey;
    this.ttlSeconds = ttlSeconds;
  }

  /**
   * @return append, no base, no message, the base revision's metadata, no inputs, tool {@code
   *     sheaf-java}
   */
  public static WriteOptions defaults() {
    return new WriteOptions(
        Sheaf.WriteMode.WRITE_MODE_APPEND, null, null, null, List.of(), "sheaf-java", null, null);
  }

  /**
   * What the commit does to a table that exists: append to a folder (replace a file), overwrite, or
   * fail with {@code ALREADY_EXISTS}.
   *
   * @param m the mode
   * @return the options
   */
  public WriteOptions withMode(Sheaf.WriteMode m) {
    return new WriteOptions(
        Objects.requireNonNull(m, "mode"),
        base,
        message,
        metadataJson,
        inputs,
        tool,
        idempotencyKey,
        ttlSeconds);
  }

  /**
   * The revision the commit must build on: if {@code latest} has moved by the commit, it fails with
   * {@code LATEST_MOVED}.
   *
   * @param reference a top hash, a prefix of at least six hex characters, or a tag; null for
   *     whatever is latest at the commit
   * @return the options
   */
  public WriteOptions withBase(String reference) {
    return new WriteOptions(
        mode, reference, message, metadataJson, inputs, tool, idempotencyKey, ttlSeconds);
  }

  /**
   * @param text the commit message, or null for none
   * @return the options
   */
  public WriteOptions withMessage(String text) {
    return new WriteOptions(
        mode, base, text, metadataJson, inputs, tool, idempotencyKey, ttlSeconds);
  }

  /**
   * The new revision's user metadata (besides the lineage the server adds under {@code sheaf}).
   *
   * @param json a JSON object as text, or null to keep the base revision's
   * @return the options
   */
  public WriteOptions withMetadataJson(String json) {
    return new WriteOptions(mode, base, message, json, inputs, tool, idempotencyKey, ttlSeconds);
  }

  /**
   * @param datasets the datasets the written data was derived from (recorded as lineage)
   * @return the options
   */
  public WriteOptions withInputs(List<LineageInput> datasets) {
    return new WriteOptions(
        mode, base, message, metadataJson, datasets, tool, idempotencyKey, ttlSeconds);
  }

  /**
   * @param dataset one more dataset the written data was derived from
   * @return the options
   */
  public WriteOptions withInput(LineageInput dataset) {
    List<LineageInput> all = new ArrayList<>(inputs);
    all.add(Objects.requireNonNull(dataset, "input"));
    return withInputs(all);
  }

  /**
   * @param name the program writing, such as {@code spark 4.3.0 sheaf-spark 0.1.0}
   * @return the options
   */
  public WriteOptions withTool(String name) {
    return new WriteOptions(
        mode, base, message, metadataJson, inputs, name, idempotencyKey, ttlSeconds);
  }

  /**
   * A key making {@code begin_write} idempotent: a retry with the same key (and package) answers
   * the same session instead of opening another.
   *
   * @param key the key, or null for none
   * @return the options
   */
  public WriteOptions withIdempotencyKey(String key) {
    return new WriteOptions(mode, base, message, metadataJson, inputs, tool, key, ttlSeconds);
  }

  /**
   * @param seconds seconds until an uncommitted session expires, or null for the server's default
   *     (a day)
   * @return the options
   */
  public WriteOptions withTtlSeconds(Integer seconds) {
    return new WriteOptions(
        mode, base, message, metadataJson, inputs, tool, idempotencyKey, seconds);
  }

  /**
   * @return the mode
   */
  public Sheaf.WriteMode mode() {
    return mode;
  }

  /**
   * @return the base reference, or null
   */
  public String base() {
    return base;
  }

  /**
   * @return the commit message, or null
   */
  public String message() {
    return message;
  }

  /**
   * @return the user metadata (a JSON object as text), or null
   */
  public String metadataJson() {
    return metadataJson;
  }

  /**
   * @return the lineage inputs
   */
  public List<LineageInput> inputs() {
    return inputs;
  }

  /**
   * @return the tool, or null
   */
  public String tool() {
    return tool;
  }

  /**
   * @return the idempotency key, or null
   */
  public String idempotencyKey() {
    return idempotencyKey;
  }

  /**
   * @return the session's time to live in seconds, or null
   */
  public Integer ttlSeconds() {
    return ttlSeconds;
  }

  /**
   * The request sent to {@code begin_write}.
   *
   * @param packageName {@code OWNER/NAME}
   * @return the message
   */
  public Sheaf.BeginWriteRequest toProto(String packageName) {
    Sheaf.BeginWriteRequest.Builder b =
        Sheaf.BeginWriteRequest.newBuilder()
            .setPackage(Objects.requireNonNull(packageName, "package"))
            .setMode(mode);
    if (base != null) {
      b.setBase(base);
    }
    if (message != null) {
      b.setMessage(message);
    }
    if (metadataJson != null) {
      b.setMetadata(metadataJson);
    }
    for (LineageInput i : inputs) {
      b.addInputs(i.toProto());
    }
    if (tool != null) {
      b.setTool(tool);
    }
    if (idempotencyKey != null) {
      b.setIdempotencyKey(idempotencyKey);
    }
    if (ttlSeconds != null) {
      b.setTtlSeconds(ttlSeconds);
    }
    return b.build();
  }
}
