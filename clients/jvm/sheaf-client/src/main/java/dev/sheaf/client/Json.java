package dev.sheaf.client;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.util.Map;

/** JSON bodies of actions and app_metadata. */
final class Json {
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private Json() {}

  static byte[] body(Map<String, String> fields) {
    ObjectNode o = MAPPER.createObjectNode();
    fields.forEach(o::put);
    try {
      return MAPPER.writeValueAsBytes(o);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  static JsonNode parse(byte[] bytes, String what) {
    try {
      return MAPPER.readTree(bytes);
    } catch (IOException e) {
      throw new SheafException(ErrorCode.CLIENT, what + ": the answer is not JSON: " + e.getMessage(), e);
    }
  }

  static String text(JsonNode node, String field, String what) {
    JsonNode v = node.get(field);
    if (v == null || !v.isTextual()) {
      throw new SheafException(ErrorCode.CLIENT, what + ": the answer has no \"" + field + "\": " + node, null);
    }
    return v.asText();
  }
}
