package dev.sheaf.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.Message;
import com.google.protobuf.util.JsonFormat;
import java.nio.charset.StandardCharsets;

/**
 * The two forms of {@code proto/sheaf.proto}'s messages on the wire: binary (packed in a {@code
 * google.protobuf.Any} or not) when the request was typed, JSON when it was text.
 */
final class Wire {
  /** Type URLs of Sheaf's messages start with this. */
  static final String TYPE_URL_PREFIX = "type.googleapis.com/sheaf.v1.";

  private static final JsonFormat.Parser JSON = JsonFormat.parser().ignoringUnknownFields();

  private Wire() {}

  /**
   * Reads a message sent packed in an {@code Any}.
   *
   * @param bytes the encoded {@code Any}
   * @param type the message class expected
   * @param what the call, for messages
   * @return the message
   * @throws SheafException CLIENT when the bytes are not such an {@code Any}
   */
  static <T extends Message> T unpack(byte[] bytes, Class<T> type, String what) {
    try {
      return Any.parseFrom(bytes).unpack(type);
    } catch (InvalidProtocolBufferException e) {
      throw new SheafException(
          ErrorCode.CLIENT,
          what + ": the answer is not a packed " + type.getSimpleName() + ": " + e.getMessage(),
          e);
    }
  }

  /**
   * Reads app_metadata: binary (packed in an {@code Any} or bare) for a typed request, the JSON
   * form for a text one.
   *
   * @param bytes the metadata
   * @param typed whether the request was typed
   * @param empty the message's default instance
   * @param what the call, for messages
   * @return the message
   * @throws SheafException CLIENT when the bytes are neither
   */
  @SuppressWarnings("unchecked")
  static <T extends Message> T metadata(byte[] bytes, boolean typed, T empty, String what) {
    Message.Builder b = empty.newBuilderForType();
    try {
      if (!typed) {
        JSON.merge(new String(bytes, StandardCharsets.UTF_8), b);
        return (T) b.build();
      }
      Any any = parseAny(bytes);
      if (any != null && any.getTypeUrl().startsWith(TYPE_URL_PREFIX)) {
        return (T) any.unpack(empty.getClass());
      }
      return (T) b.mergeFrom(bytes).build();
    } catch (InvalidProtocolBufferException e) {
      throw new SheafException(
          ErrorCode.CLIENT,
          what
              + ": app_metadata is not a "
              + empty.getDescriptorForType().getName()
              + (typed ? "" : " in JSON")
              + ": "
              + e.getMessage(),
          e);
    }
  }

  private static Any parseAny(byte[] bytes) {
    try {
      return Any.parseFrom(bytes);
    } catch (InvalidProtocolBufferException e) {
      return null;
    }
  }
}
