package dev.sheaf.spark;

import dev.sheaf.client.LineageInput;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.plans.QueryPlan;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.execution.QueryExecution;
import org.apache.spark.sql.execution.SQLExecution;
import org.apache.spark.sql.execution.SparkPlan;
import org.apache.spark.sql.execution.columnar.InMemoryRelation;
import org.apache.spark.sql.execution.datasources.v2.BatchScanExec;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2Relation;
import org.apache.spark.sql.execution.datasources.v2.DataSourceV2ScanRelation;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The Sheaf datasets a write's query reads, recorded as the new revision's lineage.
 *
 * <p>DataSource V2's write API does not hand the written query to the connector, but Spark runs the
 * write inside a SQL execution whose id is a local property of the driver's thread ({@code
 * spark.sql.execution.id}), and {@code SQLExecution.getQueryExecution(id)} answers that execution's
 * plan. The analyzed plan is walked (children, subqueries, and the plans of cached DataFrames) for
 * Sheaf tables that were read: each gives its package, the top hash it was pinned to, and the
 * pinned URI of its base read (without Spark's pushed filters and columns).
 *
 * <p>Limits: data that reached the DataFrame outside its plan is not seen: a Sheaf read collected
 * to the driver or turned into an RDD ({@code df.rdd}, {@code createDataFrame(rdd)}), a checkpoint
 * or a table written and read back as files; a write with no SQL execution (no Spark action running
 * it) records no inputs. Other sources (Parquet, JDBC) are not recorded: lineage names Sheaf
 * revisions only.
 */
final class SheafLineage {
  private static final Logger LOG = LoggerFactory.getLogger(SheafLineage.class);

  private SheafLineage() {}

  /**
   * The inputs of the write running now on this thread.
   *
   * @param target the table written (left out)
   * @return the Sheaf datasets read, each once, in plan order
   */
  static List<LineageInput> inputs(SheafTable target) {
    try {
      SparkSession spark = SparkSession.active();
      String id = spark.sparkContext().getLocalProperty(SQLExecution.EXECUTION_ID_KEY());
      if (id == null) {
        LOG.info("sheaf: the write runs outside a SQL execution: no lineage inputs recorded");
        return List.of();
      }
      QueryExecution qe = SQLExecution.getQueryExecution(Long.parseLong(id));
      if (qe == null) {
        LOG.info("sheaf: SQL execution {} is not known: no lineage inputs recorded", id);
        return List.of();
      }
      Set<LineageInput> out = new LinkedHashSet<>();
      walk(qe.analyzed(), target, out);
      return new ArrayList<>(out);
    } catch (RuntimeException e) {
      // Lineage is a record, not the write: a plan this code does not know must not fail the job.
      LOG.warn("sheaf: could not read the written query's plan: no lineage inputs recorded", e);
      return List.of();
    }
  }

  private static void walk(LogicalPlan plan, SheafTable target, Set<LineageInput> out) {
    if (plan instanceof DataSourceV2Relation) {
      add(((DataSourceV2Relation) plan).table(), target, out);
    } else if (plan instanceof DataSourceV2ScanRelation) {
      add(((DataSourceV2ScanRelation) plan).relation().table(), target, out);
    } else if (plan instanceof InMemoryRelation) {
      walk(((InMemoryRelation) plan).cacheBuilder().cachedPlan(), target, out);
    }
    for (LogicalPlan child : CollectionConverters.asJava(plan.children())) {
      walk(child, target, out);
    }
    for (Object sub : CollectionConverters.asJava(((QueryPlan<?>) plan).subqueries())) {
      if (sub instanceof LogicalPlan) {
        walk((LogicalPlan) sub, target, out);
      }
    }
  }

  private static void walk(SparkPlan plan, SheafTable target, Set<LineageInput> out) {
    if (plan instanceof BatchScanExec && ((BatchScanExec) plan).scan() instanceof SheafScan) {
      add(((SheafScan) ((BatchScanExec) plan).scan()).table(), target, out);
    }
    for (SparkPlan child : CollectionConverters.asJava(plan.children())) {
      walk(child, target, out);
    }
    for (SparkPlan sub : CollectionConverters.asJava(plan.subqueries())) {
      walk(sub, target, out);
    }
  }

  private static void add(Object table, SheafTable target, Set<LineageInput> out) {
    if (table instanceof SheafTable && table != target) {
      LineageInput in = ((SheafTable) table).lineageInput();
      if (in != null) {
        out.add(in);
      }
    }
  }
}
