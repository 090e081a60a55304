package dev.sheaf.client;

import java.util.ArrayList;
import java.util.List;
import sheaf.v1.Sheaf;

/**
 * One revision in a lineage graph ({@link SheafClient#lineage(String)}, {@code
 * sheaf.v1.LineageNode}): who wrote it with which tool, and the datasets it was derived from.
 *
 * @param packageName {@code OWNER/NAME}
 * @param topHash its top hash
 * @param depth levels from the revision asked about (0 for itself)
 * @param message its commit message, or null
 * @param principal who wrote it (empty when the revision records no writer)
 * @param tool the program that wrote it, such as {@code spark 4.3.0 sheaf-spark 0.1.0}
 * @param inputs the datasets it was derived from
 * @param missing why its own inputs could not be read, or null when they were
 */
public record LineageNode(
    String packageName,
    String topHash,
    int depth,
    String message,
    String principal,
    String tool,
    List<LineageInput> inputs,
    String missing) {
  /**
   * @param p the message
   * @return the node it describes
   */
  public static LineageNode of(Sheaf.LineageNode p) {
    List<LineageInput> inputs = new ArrayList<>();
    for (Sheaf.LineageInput i : p.getInputsList()) {
      inputs.add(LineageInput.of(i));
    }
    return new LineageNode(
        p.getPackage(),
        p.getTopHash(),
        p.getDepth(),
        p.hasMessage() ? p.getMessage() : null,
        p.getPrincipal(),
        p.getTool(),
        List.copyOf(inputs),
        p.getMissing().isEmpty() ? null : p.getMissing());
  }
}
