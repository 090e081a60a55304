package dev.sheaf.spark;

import dev.sheaf.client.DatasetRequest;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.apache.spark.sql.connector.expressions.filter.Predicate;
import org.apache.spark.sql.connector.read.Scan;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.connector.read.SupportsPushDownLimit;
import org.apache.spark.sql.connector.read.SupportsPushDownRequiredColumns;
import org.apache.spark.sql.connector.read.SupportsPushDownTableSample;
import org.apache.spark.sql.connector.read.SupportsPushDownV2Filters;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;

/**
 * Collects what Spark pushes down (in Spark's order: sample, filters, limit, columns) and builds
 * the dataset request the scan asks for.
 *
 * <ul>
 *   <li>Sample: {@code TABLESAMPLE (F PERCENT) [REPEATABLE (S)]} and {@code df.sample(F, S)} become
 *       the server's seeded sampling, unless a sample is already set by option, or the sample is
 *       with replacement or of a range other than [0, F).
 *   <li>Filters: each translatable predicate (see {@link FilterTranslator}) is pushed; Spark keeps
 *       the others, and the whole of a conjunction only partly pushed.
 *   <li>Limit: pushed (the server then plans one endpoint); Spark keeps its own limit too.
 *   <li>Columns: the required top-level columns, in Spark's order (nested fields are not pruned).
 *   <li>Partitions: without the {@code partitions} option (and without a limit), at least Spark's
 *       default parallelism when the server's default plans fewer endpoints; the server caps it at
 *       one endpoint per row group.
 * </ul>
 */
final class SheafScanBuilder
    implements ScanBuilder,
        SupportsPushDownRequiredColumns,
        SupportsPushDownV2Filters,
        SupportsPushDownLimit,
        SupportsPushDownTableSample {
  private final SheafTable table;
  private final FilterTranslator translator;
  private DatasetRequest request;
  private final List<String> filters = new ArrayList<>();
  private Predicate[] pushed = new Predicate[0];
  private StructType required;
  private Integer limit;
  private String sampleNote = "";

  SheafScanBuilder(SheafTable table) {
    this.table = table;
    this.translator = new FilterTranslator(table.tableColumns().filterable());
    this.request = table.pinned();
  }

  @Override
  public boolean pushTableSample(
      double lowerBound, double upperBound, boolean withReplacement, long seed) {
    if (withReplacement
        || lowerBound != 0.0
        || request.sample() != null
        || request.sampleRows() != null
        || !(upperBound >= 0.0 && upperBound <= 1.0)) {
      return false;
    }
    request = request.withSample(upperBound).withSeed(seed);
    sampleNote = " sample=" + upperBound + " seed=" + Long.toUnsignedString(seed);
    return true;
  }

  @Override
  public Predicate[] pushPredicates(Predicate[] predicates) {
    List<Predicate> done = new ArrayList<>();
    List<Predicate> remaining = new ArrayList<>();
    for (Predicate p : predicates) {
      Optional<String> sql = translator.translate(p);
      if (sql.isPresent()) {
        filters.add(sql.get());
        done.add(p);
      } else {
        filters.addAll(translator.translatableConjuncts(p));
        remaining.add(p);
      }
    }
    pushed = done.toArray(new Predicate[0]);
    return remaining.toArray(new Predicate[0]);
  }

  @Override
  public Predicate[] pushedPredicates() {
    return pushed.clone();
  }

  @Override
  public boolean pushLimit(int n) {
    limit = n;
    return true;
  }

  @Override
  public void pruneColumns(StructType requiredSchema) {
    this.required = requiredSchema;
  }

  /** Spark's default parallelism (cores of the application), or 1 without an active session. */
  private static int defaultParallelism() {
    try {
      return org.apache.spark.sql.SparkSession.active().sparkContext().defaultParallelism();
    } catch (RuntimeException e) {
      return 1;
    }
  }

  @Override
  public Scan build() {
    TableColumns columns = table.tableColumns();
    List<String> output = new ArrayList<>();
    for (StructField f : (required == null ? columns.spark() : required).fields()) {
      output.add(f.name());
    }
    // Only row counts needed: ask for the cheapest column and send Spark none.
    List<String> ask = output.isEmpty() ? List.of(columns.cheapest()) : output;
    DatasetRequest u = request.withColumns(ask);
    List<String> all = new ArrayList<>();
    if (request.filter() != null) {
      all.add("(" + request.filter() + ")");
    }
    all.addAll(filters);
    if (!all.isEmpty()) {
      u = u.withFilter(String.join(" AND ", all));
    }
    String parallelNote = "";
    if (limit != null) {
      u = u.withLimit((long) limit);
    } else if (u.partitions() == null) {
      // No partitions option: at least Spark's default parallelism, so small and medium tables
      // use every core too (the server plans at most one endpoint per row group).
      int parallelism = defaultParallelism();
      if (parallelism > table.defaultEndpoints()) {
        u = u.withPartitions(parallelism);
        parallelNote = " partitions=" + parallelism + " (Spark's default parallelism)";
      }
    }
    String note =
        "columns="
            + ask
            + (all.isEmpty() ? "" : " filter=" + String.join(" AND ", all))
            + (limit == null ? "" : " limit=" + limit)
            + sampleNote
            + parallelNote;
    return new SheafScan(table, u, output, note);
  }
}
