package dev.sheaf.spark;

import org.apache.spark.sql.connector.metric.CustomMetric;
import org.apache.spark.sql.connector.metric.CustomSumMetric;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;

/**
 * Metrics of a Sheaf scan and of a Sheaf write, shown in the SQL tab and readable from the executed
 * plan.
 */
public final class SheafMetrics {
  /** Name of the metric counting rows received from the server. */
  public static final String ROWS = "sheafRowsReceived";

  /** Name of the metric counting Arrow batches received from the server. */
  public static final String BATCHES = "sheafBatchesReceived";

  /**
   * Name of the metric counting endpoint reads moved to another location after a transport failure
   * (a replica killed or unreachable).
   */
  public static final String FAILOVERS = "sheafFailovers";

  /** Name of the metric counting rows sent to the server by a write. */
  public static final String ROWS_SENT = "sheafRowsSent";

  /** Name of the metric counting Arrow batches sent to the server by a write. */
  public static final String BATCHES_SENT = "sheafBatchesSent";

  private SheafMetrics() {}

  /** Rows sent to the server by a write's tasks (every attempt). */
  public static final class RowsSent extends CustomSumMetric {
    /** Created by Spark by reflection. */
    public RowsSent() {}

    @Override
    public String name() {
      return ROWS_SENT;
    }

    @Override
    public String description() {
      return "rows sent to Sheaf";
    }
  }

  /** Arrow record batches sent to the server by a write's tasks (every attempt). */
  public static final class BatchesSent extends CustomSumMetric {
    /** Created by Spark by reflection. */
    public BatchesSent() {}

    @Override
    public String name() {
      return BATCHES_SENT;
    }

    @Override
    public String description() {
      return "Arrow batches sent to Sheaf";
    }
  }

  /** Rows received from the server (after its filters, sampling and limit). */
  public static final class Rows extends CustomSumMetric {
    /** Created by Spark by reflection. */
    public Rows() {}

    @Override
    public String name() {
      return ROWS;
    }

    @Override
    public String description() {
      return "rows received from Sheaf";
    }
  }

  /** Arrow record batches received from the server. */
  public static final class Batches extends CustomSumMetric {
    /** Created by Spark by reflection. */
    public Batches() {}

    @Override
    public String name() {
      return BATCHES;
    }

    @Override
    public String description() {
      return "Arrow batches received from Sheaf";
    }
  }

  /** Locations left for the next one of their endpoint by the scan's tasks (each attempt). */
  public static final class Failovers extends CustomSumMetric {
    /** Created by Spark by reflection. */
    public Failovers() {}

    @Override
    public String name() {
      return FAILOVERS;
    }

    @Override
    public String description() {
      return "Sheaf locations failed over";
    }
  }

  static CustomMetric[] supported() {
    return new CustomMetric[] {new Rows(), new Batches(), new Failovers()};
  }

  static CustomMetric[] supportedByWrites() {
    return new CustomMetric[] {new RowsSent(), new BatchesSent()};
  }

  static CustomTaskMetric value(String name, long value) {
    return new CustomTaskMetric() {
      @Override
      public String name() {
        return name;
      }

      @Override
      public long value() {
        return value;
      }
    };
  }
}
