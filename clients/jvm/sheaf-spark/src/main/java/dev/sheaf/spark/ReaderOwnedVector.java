package dev.sheaf.spark;

import org.apache.arrow.vector.ValueVector;
import org.apache.spark.sql.vectorized.ArrowColumnVector;

/**
 * Spark's {@link ArrowColumnVector} over a vector the reader owns. Spark closes each columnar batch
 * once it has used it ({@code closeIfFreeable}); closing an Arrow struct, list or map vector also
 * drops its children, which would break the stream that loads the next batch into the same vectors.
 * So closing here does nothing: the reader frees the buffers when it loads the next batch or is
 * closed.
 */
final class ReaderOwnedVector extends ArrowColumnVector {
  ReaderOwnedVector(ValueVector vector) {
    super(vector);
  }

  @Override
  public void close() {
    // The reader owns the vector.
  }
}
