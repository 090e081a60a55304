//! A statement as the client wrote it, checked before it is planned: one
//! statement, a query only (reads), no deeper than DataFusion's recursion
//! can take, nothing the planner would silently ignore or answer with its
//! internals, and `?` placeholders numbered `$1`, `$2`, ...

use crate::query::Error;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, LimitClause, Query as SqlQuery, SetExpr, Statement as SqlStatement, TableFactor, Value, Visit,
    VisitMut, Visitor, VisitorMut, visit_relations,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use std::ops::ControlFlow;

/// Longest statement accepted.
const MAX_SQL_BYTES: usize = 1 << 20;
/// Deepest nesting of expressions and subqueries accepted: DataFusion
/// walks (and copies) expression trees by recursion, and a chain such as
/// `1+1+...+1` of ten thousand terms would overflow a thread's stack.
const MAX_SQL_NESTING: usize = 256;
/// Most expressions a statement may hold (an `IN` list of ten thousand
/// values is fine): planning time grows faster than the statement.
const MAX_SQL_EXPRESSIONS: usize = 50_000;
/// Most items one `SELECT` may list: DataFusion plans a projection in time
/// that grows with the square of its width (50,000 items took 85 s).
const MAX_SELECT_ITEMS: usize = 4_096;
/// Most table references a statement may stand for once its common table
/// expressions are expanded (each use of a CTE is planned anew, so
/// `c2 AS (SELECT * FROM c1 UNION ALL SELECT * FROM c1)`, repeated, doubles
/// the plan at every level).
const MAX_EXPANDED_TABLES: u64 = 1_000;

/// Parses one statement and refuses anything but a query.
pub(super) fn parse(sql: &str) -> Result<DfStatement, Error> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(Error::invalid(format!(
            "the statement is {} bytes; at most {MAX_SQL_BYTES} are accepted",
            sql.len()
        )));
    }
    let mut statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
        .map_err(|e| Error::invalid(format!("SQL syntax: {}", e.strip_backtrace())))?;
    if statements.is_empty() {
        return Err(Error::invalid("the statement is empty"));
    }
    if statements.len() != 1 {
        return Err(Error::invalid(format!(
            "one statement per request, got {} (separate them into several requests)",
            statements.len()
        )));
    }
    let mut statement = statements.pop_front().expect("one statement");
    if let Err(e) = check_walk(&statement) {
        // Dropping a deep tree recurses as deep.
        crate::query::limits::on_planning_stack(move || drop(statement));
        return Err(e);
    }
    if let DfStatement::Statement(s) = &statement
        && matches!(
            s.as_ref(),
            SqlStatement::ShowTables { .. }
                | SqlStatement::ShowColumns { .. }
                | SqlStatement::ExplainTable { .. }
                | SqlStatement::ShowVariable { .. }
        )
    {
        return Err(Error::invalid(
            "SHOW and DESCRIBE are not supported: list schemas, tables and their columns with Flight SQL's \
             GetDbSchemas and GetTables (ADBC adbc_get_objects, JDBC DatabaseMetaData), or read a table's \
             schema with SELECT * FROM ... LIMIT 0",
        ));
    }
    if !is_query(&statement) {
        return Err(Error::ReadOnly(
            "Sheaf SQL is read-only: only queries (SELECT, WITH, VALUES, EXPLAIN) run; \
             publish data with a write (DoPut, bulk ingest, or a client's write)"
                .into(),
        ));
    }
    if let DfStatement::Statement(s) = &mut statement {
        number_placeholders(s)?;
    }
    Ok(statement)
}

/// Refuses a statement nesting expressions and subqueries deeper than
/// [`MAX_SQL_NESTING`] (the walk stops at that depth), one sampling a
/// table with `TABLESAMPLE`, which the planner would silently ignore, and
/// one accessing list elements or struct fields, which Sheaf's engine does
/// not plan (its nested functions, which can build lists of any size
/// outside the memory pool, are left out).
fn check_walk(statement: &DfStatement) -> Result<(), Error> {
    #[derive(Default)]
    struct Walk {
        depth: usize,
        too_deep: bool,
        sampled: bool,
        element_access: bool,
        limit_parameter: bool,
        expressions: usize,
        widest_select: usize,
    }
    impl Walk {
        fn enter(&mut self) -> ControlFlow<()> {
            self.depth += 1;
            self.too_deep = self.depth > MAX_SQL_NESTING;
            if self.too_deep { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        }
        fn leave(&mut self) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
    }
    impl Visitor for Walk {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
            self.element_access = matches!(expr, SqlExpr::CompoundFieldAccess { .. });
            if self.element_access {
                return ControlFlow::Break(());
            }
            self.expressions += 1;
            if self.expressions > MAX_SQL_EXPRESSIONS {
                return ControlFlow::Break(());
            }
            self.enter()
        }
        fn post_visit_expr(&mut self, _: &SqlExpr) -> ControlFlow<()> {
            self.leave()
        }
        fn pre_visit_query(&mut self, query: &SqlQuery) -> ControlFlow<()> {
            let placeholder = |e: &SqlExpr| matches!(e, SqlExpr::Value(v) if matches!(v.value, Value::Placeholder(_)));
            self.limit_parameter = match &query.limit_clause {
                Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                    limit.as_ref().is_some_and(placeholder) || offset.as_ref().is_some_and(|o| placeholder(&o.value))
                }
                Some(LimitClause::OffsetCommaLimit { offset, limit }) => placeholder(offset) || placeholder(limit),
                None => false,
            };
            if self.limit_parameter {
                return ControlFlow::Break(());
            }
            if let SetExpr::Select(select) = query.body.as_ref() {
                self.widest_select = self.widest_select.max(select.projection.len());
                if self.widest_select > MAX_SELECT_ITEMS {
                    return ControlFlow::Break(());
                }
            }
            self.enter()
        }
        fn post_visit_query(&mut self, _: &SqlQuery) -> ControlFlow<()> {
            self.leave()
        }
        fn pre_visit_table_factor(&mut self, table: &TableFactor) -> ControlFlow<()> {
            self.sampled = matches!(
                table,
                TableFactor::Table { sample: Some(_), .. } | TableFactor::Derived { sample: Some(_), .. }
            );
            if self.sampled { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        }
    }
    let mut walk = Walk::default();
    match statement {
        DfStatement::Statement(s) => {
            let _ = s.visit(&mut walk);
        }
        DfStatement::Explain(explain) => return check_walk(&explain.statement),
        _ => {}
    }
    if walk.too_deep {
        return Err(Error::invalid(format!(
            "the statement nests expressions or subqueries more than {MAX_SQL_NESTING} levels deep (a chain \
             of operators counts a level each); write long lists of alternatives as `column IN (...)`"
        )));
    }
    if walk.expressions > MAX_SQL_EXPRESSIONS {
        return Err(Error::invalid(format!(
            "the statement holds more than {MAX_SQL_EXPRESSIONS} expressions; write long lists of values as \
             `column IN (...)` or join a table of them"
        )));
    }
    if walk.widest_select > MAX_SELECT_ITEMS {
        return Err(Error::invalid(format!(
            "a SELECT lists {} items; at most {MAX_SELECT_ITEMS} are accepted (SELECT * reads every column)",
            walk.widest_select
        )));
    }
    if let DfStatement::Statement(s) = statement {
        expanded_tables(s)?;
    }
    if walk.limit_parameter {
        return Err(Error::invalid(
            "LIMIT and OFFSET take numbers, not parameters (? or $n): write the number into the statement",
        ));
    }
    if walk.element_access {
        return Err(Error::invalid(
            "element and field access (`list_column[1]`, `struct_column['name']`) is not supported: select \
             the whole column",
        ));
    }
    if walk.sampled {
        return Err(Error::invalid(
            "TABLESAMPLE is not supported; sample with the table function, which draws reproducible rows: \
             SELECT * FROM sheaf('sheaf://owner/name/path?sample=0.1&seed=7')",
        ));
    }
    Ok(())
}

/// Refuses a statement whose common table expressions expand to more than
/// [`MAX_EXPANDED_TABLES`] table references. A CTE stands for one table
/// reference plus every CTE it uses, expanded (names compared without
/// case; a CTE using itself, a recursive one, counts once).
fn expanded_tables(statement: &SqlStatement) -> Result<(), Error> {
    use std::collections::HashMap;
    struct Ctes(Vec<(String, SqlQuery)>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &SqlQuery) -> ControlFlow<()> {
            for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
                self.0.push((cte.alias.name.value.to_lowercase(), (*cte.query).clone()));
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(Vec::new());
    let _ = statement.visit(&mut ctes);
    if ctes.0.is_empty() {
        return Ok(());
    }
    let uses = |query: &SqlQuery| {
        let mut names = Vec::new();
        let _ = visit_relations(query, |name| {
            if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                names.push(last.value.to_lowercase());
            }
            ControlFlow::<()>::Continue(())
        });
        names
    };
    let bodies: HashMap<&str, Vec<String>> = ctes.0.iter().map(|(name, query)| (name.as_str(), uses(query))).collect();
    // Sizes in the order CTEs are defined (a CTE uses earlier ones), capped
    // so the sums cannot overflow.
    let mut sizes: HashMap<&str, u64> = HashMap::new();
    for (name, _) in &ctes.0 {
        let size = bodies[name.as_str()]
            .iter()
            .filter(|used| used.as_str() != name)
            .map(|used| sizes.get(used.as_str()).copied().unwrap_or(0))
            .fold(1u64, |total, size| total.saturating_add(size).min(MAX_EXPANDED_TABLES + 1));
        if size > MAX_EXPANDED_TABLES {
            return Err(Error::invalid(format!(
                "the common table expression {name} expands to more than {MAX_EXPANDED_TABLES} table \
                 references (each use of a CTE is planned anew); use fewer levels of CTEs that use others \
                 several times"
            )));
        }
        sizes.insert(name, size);
    }
    // The whole statement (its CTEs' bodies counted once more: a bound).
    let mut total = 0u64;
    let _ = visit_relations(statement, |name| {
        let used = name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_lowercase());
        total = total.saturating_add(used.and_then(|u| sizes.get(u.as_str()).copied()).unwrap_or(1));
        ControlFlow::<()>::Continue(())
    });
    if total > MAX_EXPANDED_TABLES {
        return Err(Error::invalid(format!(
            "the statement expands to more than {MAX_EXPANDED_TABLES} table references once its common table \
             expressions are expanded (each use of a CTE is planned anew); use them fewer times"
        )));
    }
    Ok(())
}

/// Whether a statement only reads: a query, or EXPLAIN of one (EXPLAIN
/// ANALYZE runs what it explains, so a COPY under it would write files).
/// A query holding a write (`WITH ... INSERT`, `SELECT ... INTO t`) is no
/// read.
fn is_query(statement: &DfStatement) -> bool {
    struct Writes(bool);
    impl Visitor for Writes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &SqlQuery) -> ControlFlow<()> {
            self.0 |= matches!(
                query.body.as_ref(),
                SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_)
            ) || matches!(query.body.as_ref(), SetExpr::Select(select) if select.into.is_some());
            if self.0 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        }
    }
    match statement {
        DfStatement::Statement(s) => {
            let mut writes = Writes(false);
            let _ = s.visit(&mut writes);
            matches!(s.as_ref(), SqlStatement::Query(_)) && !writes.0
        }
        DfStatement::Explain(explain) => is_query(&explain.statement),
        _ => false,
    }
}

/// Numbers `?` placeholders `$1`, `$2`, ... in the order they appear.
fn number_placeholders(statement: &mut SqlStatement) -> Result<(), Error> {
    struct Number(usize, bool);
    impl VisitorMut for Number {
        type Break = ();
        fn pre_visit_value(&mut self, value: &mut datafusion::sql::sqlparser::ast::ValueWithSpan) -> ControlFlow<()> {
            if let Value::Placeholder(p) = &mut value.value {
                match p.as_str() {
                    "?" => {
                        self.0 += 1;
                        *p = format!("${}", self.0);
                    }
                    _ => self.1 = true,
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut number = Number(0, false);
    let _ = statement.visit(&mut number);
    if number.0 > 0 && number.1 {
        return Err(Error::invalid("use either ? or $1, $2, ... placeholders in one statement, not both"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(statement: &DfStatement) -> String {
        statement.to_string()
    }

    #[test]
    fn only_queries_run() {
        for write in [
            "INSERT INTO t VALUES (1)",
            "CREATE TABLE t (a INT)",
            "DELETE FROM t",
            "COPY (SELECT 1) TO '/tmp/x.parquet'",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
            "SET datafusion.execution.batch_size = 1",
            "DROP TABLE t",
            "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv' STORED AS CSV",
            "EXPLAIN INSERT INTO t VALUES (1)",
            "EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1",
            "WITH a AS (SELECT 1 AS x) INSERT INTO t SELECT * FROM a",
            "WITH a AS (SELECT 1 AS x) DELETE FROM t",
            "SELECT 1 AS x INTO t",
        ] {
            let e = parse(write).unwrap_err();
            assert!(matches!(e, Error::ReadOnly(_)), "{write}: {e:?}");
            assert!(e.to_string().contains("read-only"), "{e}");
        }
        assert!(parse("SELECT 1").is_ok());
        assert!(parse("WITH a AS (SELECT 1) SELECT * FROM a").is_ok());
        assert!(parse("EXPLAIN SELECT 1").is_ok());
        assert!(parse("EXPLAIN ANALYZE SELECT 1").is_ok());
        let e = parse("SELECT 1; SELECT 2").unwrap_err();
        assert!(e.to_string().contains("one statement per request"), "{e}");
        let e = parse("SELEC 1").unwrap_err();
        assert!(e.to_string().contains("SQL syntax"), "{e}");
        assert!(parse(";").unwrap_err().to_string().contains("empty"));
        assert!(parse("SHOW TABLES").unwrap_err().to_string().contains("GetTables"));
        assert!(parse("DESCRIBE t").unwrap_err().to_string().contains("GetTables"));
        let e = parse(&"x".repeat(MAX_SQL_BYTES + 1)).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let chain = format!("SELECT {} AS x", vec!["1"; 300_000].join("+"));
        let e = crate::query::limits::on_planning_stack(|| parse(&chain)).unwrap_err();
        assert!(e.to_string().contains("levels deep"), "{e}");
        let ors = (0..1000).map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ");
        assert!(parse(&format!("SELECT * FROM t WHERE {ors}")).is_err());
        let ins = (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert!(parse(&format!("SELECT * FROM t WHERE id IN ({ins})")).is_ok());
        assert!(parse(&format!("EXPLAIN SELECT {}", vec!["1"; 1000].join("+"))).is_err());
        assert!(parse(&format!("SELECT {}", vec!["1"; 200].join("+"))).is_ok());
    }

    #[test]
    fn statements_too_large_to_plan_are_refused() {
        let wide = format!("SELECT {}", (0..5000).map(|i| format!("{i} AS c{i}")).collect::<Vec<_>>().join(", "));
        let e = parse(&wide).unwrap_err();
        assert!(e.to_string().contains("a SELECT lists 5000 items"), "{e}");
        let mut doubling = String::from("WITH c0 AS (SELECT 1 AS x)");
        for i in 1..=15 {
            doubling += &format!(", c{i} AS (SELECT * FROM c{} UNION ALL SELECT * FROM c{})", i - 1, i - 1);
        }
        let e = parse(&format!("{doubling} SELECT count(*) FROM c15")).unwrap_err();
        assert!(e.to_string().contains("common table expression c9 expands"), "{e}");
        let uses = (0..600).map(|_| "SELECT * FROM c2").collect::<Vec<_>>().join(" UNION ALL ");
        let e = parse(&format!("WITH c1 AS (SELECT 1), c2 AS (SELECT * FROM c1, c1) {uses}")).unwrap_err();
        assert!(e.to_string().contains("the statement expands"), "{e}");
        // Ordinary CTEs, a recursive one, and wide-but-reasonable selects pass.
        assert!(
            parse("WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a JOIN a a2 USING (x)) SELECT * FROM b, a").is_ok()
        );
        assert!(
            parse("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 9) SELECT * FROM r")
                .is_ok()
        );
        assert!(
            parse(&format!("SELECT {}", (0..4000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", "))).is_ok()
        );
    }

    #[test]
    fn tablesample_is_refused_with_the_way_to_sample() {
        let e = parse("SELECT * FROM t TABLESAMPLE SYSTEM (10)").unwrap_err();
        assert!(e.to_string().contains("sample="), "{e}");
        assert!(parse("SELECT * FROM (SELECT * FROM t TABLESAMPLE BERNOULLI (5)) s").is_err());
    }

    #[test]
    fn element_access_is_refused_plainly() {
        for sql in ["SELECT l[1] FROM t", "SELECT s['x'] FROM t", "SELECT * FROM t WHERE l[1][2] > 0"] {
            let e = parse(sql).unwrap_err();
            assert!(e.to_string().contains("element and field access"), "{sql}: {e}");
        }
        assert!(parse("SELECT t.l, \"s\".x FROM t").is_ok());
    }

    #[test]
    fn limit_parameters_are_refused_plainly() {
        for sql in [
            "SELECT * FROM t LIMIT ?",
            "SELECT * FROM t LIMIT 5 OFFSET $1",
            "SELECT * FROM (SELECT a FROM t LIMIT ?) s",
        ] {
            let e = parse(sql).unwrap_err();
            assert!(e.to_string().contains("LIMIT and OFFSET take numbers"), "{sql}: {e}");
        }
        assert!(parse("SELECT * FROM t WHERE a = ? LIMIT 5 OFFSET 2").is_ok());
    }

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let s = parse("SELECT * FROM t WHERE a > ? AND b = ? OR c IN (SELECT d FROM u WHERE e = ?)").unwrap();
        let text = sql_of(&s);
        assert!(text.contains("a > $1") && text.contains("b = $2") && text.contains("e = $3"), "{text}");
        let e = parse("SELECT * FROM t WHERE a > ? AND b = $1").unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        assert!(sql_of(&parse("SELECT $1, $2").unwrap()).contains("$2"));
    }
}
