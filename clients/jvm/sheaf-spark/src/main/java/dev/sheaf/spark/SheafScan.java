package dev.sheaf.spark;

import dev.sheaf.client.Dataset;
import dev.sheaf.client.DatasetRequest;
import dev.sheaf.client.Endpoint;
import dev.sheaf.client.SheafClient;
import dev.sheaf.client.SheafException;
import java.util.List;
import java.util.OptionalLong;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.spark.sql.connector.metric.CustomMetric;
import org.apache.spark.sql.connector.read.Batch;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.connector.read.Scan;
import org.apache.spark.sql.connector.read.Statistics;
import org.apache.spark.sql.connector.read.SupportsReportStatistics;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A planned Sheaf scan: the dataset request with every pushed-down part (columns, filter, limit,
 * sample), pinned to the table's resolved revision. Its description (shown by {@code explain()})
 * carries the top hash. GetFlightInfo runs once, on first need, and gives one input partition per
 * endpoint.
 */
final class SheafScan implements Scan, Batch, SupportsReportStatistics {
  private static final Logger LOG = LoggerFactory.getLogger(SheafScan.class);

  private final SheafTable table;
  private final DatasetRequest request;
  private final List<String> output;
  private final StructType readSchema;
  private final String pushed;
  private Dataset dataset;

  /**
   * A scan.
   *
   * @param table the table (pinned)
   * @param request what to ask the server for
   * @param output the Spark columns, in order (empty when Spark needs only row counts)
   * @param pushed a readable list of what was pushed (for the description)
   */
  SheafScan(SheafTable table, DatasetRequest request, List<String> output, String pushed) {
    this.table = table;
    this.request = request;
    this.output = output;
    this.pushed = pushed;
    StructField[] fields = new StructField[output.size()];
    for (int i = 0; i < fields.length; i++) {
      fields[i] = table.tableColumns().mapping(output.get(i)).field();
    }
    this.readSchema = new StructType(fields);
  }

  /**
   * @return the table scanned (pinned)
   */
  SheafTable table() {
    return table;
  }

  /**
   * @return the request sent to the server
   */
  DatasetRequest request() {
    return request;
  }

  @Override
  public StructType readSchema() {
    return readSchema;
  }

  @Override
  public String description() {
    return "Sheaf "
        + table.reference()
        + " top_hash="
        + table.topHash()
        + " "
        + pushed
        + " uri="
        + request;
  }

  @Override
  public Batch toBatch() {
    return this;
  }

  @Override
  public ColumnarSupportMode columnarSupportMode() {
    return ColumnarSupportMode.SUPPORTED;
  }

  @Override
  public CustomMetric[] supportedCustomMetrics() {
    return SheafMetrics.supported();
  }

  private synchronized Dataset dataset() {
    if (dataset == null) {
      try (SheafClient client = table.client()) {
        dataset = client.dataset(request);
      }
      if (!dataset.topHash().equals(table.topHash())) {
        throw new SheafException(
            "sheaf: the server read "
                + dataset.pinnedUri()
                + ", not the pinned revision "
                + table.topHash());
      }
      LOG.info(
          "sheaf: reading {} (top_hash {}) in {} endpoint(s)",
          dataset.pinnedUri(),
          dataset.topHash(),
          dataset.endpoints().size());
    }
    return dataset;
  }

  @Override
  public InputPartition[] planInputPartitions() {
    List<Endpoint> endpoints = dataset().endpoints();
    InputPartition[] out = new InputPartition[endpoints.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = new SheafInputPartition(endpoints.get(i));
    }
    return out;
  }

  @Override
  public PartitionReaderFactory createReaderFactory() {
    List<Field> stream = dataset().schema().getFields();
    int[] index = new int[output.size()];
    SparkTypes.Conversion[] conversions = new SparkTypes.Conversion[output.size()];
    for (int i = 0; i < index.length; i++) {
      String name = output.get(i);
      index[i] = -1;
      for (int j = 0; j < stream.size(); j++) {
        if (stream.get(j).getName().equals(name)) {
          index[i] = j;
          break;
        }
      }
      if (index[i] < 0) {
        throw new SheafException(
            "sheaf: GetFlightInfo "
                + request
                + " has no column \""
                + name
                + "\" (it has "
                + stream
                + ")");
      }
      SparkTypes.Mapping m = SparkTypes.map(stream.get(index[i]));
      if (!m.supported() || !m.field().dataType().equals(readSchema.fields()[i].dataType())) {
        throw new SheafException(
            "sheaf: column \""
                + name
                + "\" of "
                + request
                + " changed type between planning and reading: "
                + stream.get(index[i]));
      }
      conversions[i] = m.conversion();
    }
    return new SheafReaderFactory(
        table.connection(), new ReadPlan(index, conversions, readSchema, dataset().pinnedUri()));
  }

  @Override
  public Statistics estimateStatistics() {
    Dataset d = dataset();
    return new Statistics() {
      @Override
      public OptionalLong sizeInBytes() {
        return d.totalBytes();
      }

      @Override
      public OptionalLong numRows() {
        return d.totalRows();
      }
    };
  }
}
