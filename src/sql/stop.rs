//! Stopping a query that computes without yielding.
//!
//! Aborting a tokio task takes effect only when the task next yields, and
//! DataFusion yields only where an input is pending: its scans give way
//! after a budget of batches, but operators above them can compute for
//! minutes inside one poll. A join emits batch after batch from inputs it
//! already holds (a parent that discards them keeps asking), and a
//! nested-loop or hash join whose filter rejects the pairs it tries loops
//! over the whole build side without emitting anything.
//!
//! [`stoppable`] threads a [`Stop`] flag through a physical plan where those
//! loops turn: the output of every join (and unnest), and every join's
//! filter, which is evaluated once per build row or per chunk of candidate
//! pairs. Once the flag is raised the next check fails the query, the
//! operators return the error and the producing task ends, giving back its
//! thread and its turn among the running queries.

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::{FieldRef, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, NestedLoopJoinExecBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::unnest::UnnestExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag raised to stop one query's computation; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Raises the flag: every check from now on fails.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Fails once the flag is raised.
    fn check(&self) -> Result<()> {
        match self.0.load(Ordering::Relaxed) {
            false => Ok(()),
            true => Err(DataFusionError::Execution(
                "the query was stopped: it timed out, was cancelled or its client went away".into(),
            )),
        }
    }
}

impl PartialEq for Stop {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Stop {}

impl Hash for Stop {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state)
    }
}

/// `plan` with `stop` checked at the output of every join and unnest and in
/// every nested-loop and hash join's filter. The plan's results are
/// unchanged while the flag is down.
pub fn stoppable(plan: Arc<dyn ExecutionPlan>, stop: &Stop) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let node = match checked_filter(&node, stop)? {
            Some(rebuilt) => rebuilt,
            None => node,
        };
        let fans_out = node.children().len() > 1 || node.downcast_ref::<UnnestExec>().is_some();
        Ok(match fans_out {
            true => Transformed::yes(Arc::new(StopExec::new(node, stop.clone())) as Arc<dyn ExecutionPlan>),
            false => Transformed::no(node),
        })
    })
    .map(|t| t.data)
}

/// The join rebuilt with its filter checking `stop`, if it has a filter.
fn checked_filter(node: &Arc<dyn ExecutionPlan>, stop: &Stop) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let check = |filter: &JoinFilter| {
        JoinFilter::new(
            Arc::new(StopExpr { inner: Arc::clone(filter.expression()), stop: stop.clone() }),
            filter.column_indices().to_vec(),
            Arc::clone(filter.schema()),
        )
    };
    if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
        && let Some(filter) = join.filter()
    {
        let rebuilt = NestedLoopJoinExecBuilder::from(join).with_filter(Some(check(filter))).build()?;
        return Ok(Some(Arc::new(rebuilt)));
    }
    if let Some(join) = node.downcast_ref::<HashJoinExec>()
        && let Some(filter) = join.filter()
    {
        return Ok(Some(join.builder().with_filter(Some(check(filter))).build_exec()?));
    }
    Ok(None)
}

/// Passes its input's batches through, failing once the flag is raised.
#[derive(Debug)]
struct StopExec {
    input: Arc<dyn ExecutionPlan>,
    stop: Stop,
}

impl StopExec {
    fn new(input: Arc<dyn ExecutionPlan>, stop: Stop) -> Self {
        StopExec { input, stop }
    }
}

impl DisplayAs for StopExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("StopExec")
    }
}

impl ExecutionPlan for StopExec {
    fn name(&self) -> &str {
        "StopExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match children.len() {
            1 => Ok(Arc::new(StopExec::new(children.swap_remove(0), self.stop.clone()))),
            n => Err(DataFusionError::Internal(format!("StopExec takes one child, got {n}"))),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let stop = self.stop.clone();
        let checked = input.map(move |batch| {
            stop.check()?;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, checked)))
    }
}

/// A join filter that fails once the flag is raised, else its inner one.
#[derive(Debug, Eq)]
struct StopExpr {
    inner: Arc<dyn PhysicalExpr>,
    stop: Stop,
}

impl PartialEq for StopExpr {
    fn eq(&self, other: &Self) -> bool {
        self.stop == other.stop && self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Hash for StopExpr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.as_ref().hash(state);
        self.stop.hash(state);
    }
}

impl fmt::Display for StopExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl PhysicalExpr for StopExpr {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        self.stop.check()?;
        self.inner.evaluate(batch)
    }

    fn evaluate_selection(&self, batch: &RecordBatch, selection: &BooleanArray) -> Result<ColumnarValue> {
        self.stop.check()?;
        self.inner.evaluate_selection(batch, selection)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn PhysicalExpr>>) -> Result<Arc<dyn PhysicalExpr>> {
        match children.len() {
            1 => Ok(Arc::new(StopExpr { inner: children.swap_remove(0), stop: self.stop.clone() })),
            n => Err(DataFusionError::Internal(format!("a join filter's check takes one expression, got {n}"))),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}
