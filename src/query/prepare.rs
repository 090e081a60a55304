//! Column plans: which file columns a request reads, its filter parsed and
//! checked, and the output columns.

use super::shape::Projector;
use super::{Error, limits};
use crate::proto::Query;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use std::sync::Arc;

/// A column plan: which file columns to read, the filter, the output.
pub(super) struct Prepared {
    /// Indices of the file columns read (output and filter columns).
    pub(super) needed: Vec<usize>,
    /// Schema of the batches holding just those columns.
    pub(super) needed_schema: SchemaRef,
    /// The filter, coerced and simplified (columns by name).
    pub(super) filter: Option<Expr>,
    /// The columns a read's plan outputs: the requested ones, each once,
    /// in order.
    pub(super) columns: Vec<String>,
    /// Indices of [`Self::columns`] in the table.
    pub(super) column_indices: Vec<usize>,
    /// From the plan's output to the requested columns (a column may be
    /// asked for twice) in the types they travel as.
    pub(super) projector: Projector,
}

/// The column plan of `query` on a table of `schema`: checked against the
/// request limits, parsed and bound.
pub(super) fn prepare(schema: &SchemaRef, query: &Query, table: &str) -> Result<Prepared, Error> {
    limits::check_request(&query.filter, &query.columns, table)?;
    // Parsing and checking recurse once per nesting level: both run on a
    // large stack, and so does dropping a refused expression.
    limits::on_planning_stack(|| prepare_checked(schema, query, table))
}

/// The context filters are parsed and bound in: only its function registry
/// and configuration are used, so one serves every request.
fn parser() -> &'static datafusion::prelude::SessionContext {
    static PARSER: std::sync::LazyLock<datafusion::prelude::SessionContext> =
        std::sync::LazyLock::new(datafusion::prelude::SessionContext::new);
    &PARSER
}

fn prepare_checked(schema: &SchemaRef, query: &Query, table: &str) -> Result<Prepared, Error> {
    // The engine plans by column name: a name twice cannot be told apart.
    let mut names = std::collections::HashSet::new();
    if let Some(twice) = schema.fields().iter().map(|f| f.name()).find(|n| !names.insert(n.as_str())) {
        return Err(Error::invalid(format!(
            "{table} has more than one column named {}; a table whose column names repeat cannot be read \
             (rename them in the file)",
            limits::excerpt(twice)
        )));
    }
    let ctx = parser();
    let parse = |schema: &SchemaRef| -> Result<Option<Expr>, Error> {
        if query.filter.trim().is_empty() {
            return Ok(None);
        }
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| Error::engine("schema", e))?;
        let invalid = |e: datafusion::error::DataFusionError| {
            Error::invalid(format!(
                "invalid filter {} on {table}: {}",
                limits::excerpt(&query.filter),
                e.strip_backtrace()
            ))
        };
        let expr = ctx.parse_sql_expr(&query.filter, &df_schema).map_err(invalid)?;
        limits::check_expr(&expr, &query.filter, table)?;
        // Coerce and simplify, as a query planner would: constant folding
        // turns functions such as arrow_cast of a literal into literals
        // (they cannot be evaluated row by row).
        let df_schema_ref = Arc::new(df_schema.clone());
        let simplifier = ExprSimplifier::new(SimplifyContext::builder().with_schema(df_schema_ref).build());
        let expr = simplifier.coerce(expr, &df_schema).and_then(|e| simplifier.simplify(e)).map_err(invalid)?;
        let physical = ctx.create_physical_expr(expr.clone(), &df_schema).map_err(invalid)?;
        if physical.data_type(schema).ok() != Some(DataType::Boolean) {
            return Err(Error::invalid(format!(
                "filter {} on {table} is not a boolean expression",
                limits::excerpt(&query.filter)
            )));
        }
        Ok(Some(expr))
    };
    let full = parse(schema)?;
    // Check output columns against the full schema for a clear error.
    Projector::new(schema, &query.columns, table)?;
    let mut needed: Vec<usize> = if query.columns.is_empty() {
        (0..schema.fields().len()).collect()
    } else {
        query.columns.iter().map(|c| schema.index_of(c).expect("checked")).collect()
    };
    if let Some(expr) = &full {
        for col in expr.column_refs() {
            let i = schema.index_of(&col.name).map_err(|_| Error::UnknownColumn {
                column: col.name.clone(),
                message: format!("unknown column {} in {table}", limits::excerpt(&col.name)),
            })?;
            needed.push(i);
        }
    }
    needed.sort_unstable();
    needed.dedup();
    let needed_schema = Arc::new(schema.project(&needed).map_err(|e| Error::engine("projecting", e))?);
    let mut column_indices: Vec<usize> = Vec::new();
    for c in &query.columns {
        let i = schema.index_of(c).expect("checked");
        if !column_indices.contains(&i) {
            column_indices.push(i);
        }
    }
    if query.columns.is_empty() {
        column_indices = (0..schema.fields().len()).collect();
    }
    let output = schema.project(&column_indices).map_err(|e| Error::engine("projecting", e))?;
    let columns = output.fields().iter().map(|f| f.name().clone()).collect();
    let projector = Projector::new(&output, &query.columns, table)?;
    Ok(Prepared { needed, needed_schema, filter: full, columns, column_indices, projector })
}
