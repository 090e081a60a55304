//! Limits on what one request may ask of the engine.
//!
//! A shared server plans whatever its clients send, so every request is held
//! to limits it cannot talk its way past: the size of a dataset URI, of a
//! filter and of a column list; an expression budget (nodes and nesting
//! depth), checked on a stack large enough that no accepted or refused
//! expression can overflow it; and an allow-list of the functions a filter
//! may call: deterministic ones (a pinned URI always returns the same rows,
//! and the union of its partitions equals one read) whose output is bounded
//! by their input (no `lpad(s, 2000000)`).
//!
//! Error messages quote what the client sent only as a short [`excerpt`].

use super::Error;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Expr;

/// Longest dataset URI (text form) accepted.
pub const MAX_URI_BYTES: usize = 64 * 1024;
/// Largest descriptor accepted: a typed request may list up to
/// [`super::rows::MAX_ROW_RANGES`] row ranges (at most 24 bytes each);
/// text URIs inside are still held to [`MAX_URI_BYTES`].
pub const MAX_DESCRIPTOR_BYTES: usize = 3 * 1024 * 1024;
/// Longest filter expression accepted.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// Most columns a request may name, and most columns an uploaded table may have.
pub const MAX_COLUMNS: usize = 4096;
/// Most nodes in a filter expression (each literal, column, operator and
/// function call is one; an `IN` list of 1000 values is about 1000).
pub const MAX_EXPR_NODES: usize = 4096;
/// Deepest nesting of a filter expression. A chain `a OR b OR c ...` nests
/// one level per operator: long lists of alternatives belong in `IN (...)`.
pub const MAX_EXPR_DEPTH: usize = 128;
/// Most strings a filter may concatenate (`concat` arguments and `||`
/// operators, in all): a value it builds is at most this many times its
/// inputs, so evaluating a batch cannot take more than a bounded multiple of
/// the batch's memory.
pub const MAX_CONCATENATED: usize = 64;
/// Longest excerpt of client input quoted in an error message.
pub const EXCERPT_CHARS: usize = 80;

/// Stack given to parsing and checking expressions. Parsers and tree walks
/// recurse once per nesting level; this is ample for anything under the
/// text limit, and costs address space only where it is used.
const PLANNING_STACK: usize = 64 * 1024 * 1024;

/// Functions a filter may call: deterministic, and producing output no larger
/// than a fixed multiple of their input. Anything else is refused by name.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // Conditionals and types.
    "arrow_cast",
    "arrow_typeof",
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    "greatest",
    "least",
    "get_field",
    // Strings (output at most the input, or a character).
    "ascii",
    "bit_length",
    "btrim",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "contains",
    "ends_with",
    "find_in_set",
    "initcap",
    "instr",
    "left",
    "length",
    "lower",
    "ltrim",
    "octet_length",
    "position",
    "reverse",
    "right",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "substr_index",
    "substring_index",
    "to_hex",
    "translate",
    "trim",
    "upper",
    // Regular expressions (the pattern is a literal bounded by the filter size).
    "regexp_like",
    "regexp_match",
    "regexp_count",
    "regexp_instr",
    // Dates and times (no clock reads).
    "date_part",
    "datepart",
    "date_trunc",
    "datetrunc",
    "date_bin",
    "to_timestamp",
    "to_timestamp_seconds",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_timestamp_nanos",
    "to_date",
    "to_unixtime",
    "make_date",
    "from_unixtime",
    "to_char",
    "date_format",
    "to_local_time",
];

/// Why a well-known function is refused, for a clearer message.
fn refusal_reason(name: &str) -> &'static str {
    match name {
        "random" | "uuid" | "now" | "current_date" | "current_time" | "current_timestamp" | "today" => {
            "it is not deterministic, so a pinned URI would not always return the same rows"
        }
        "lpad" | "rpad" | "repeat" | "replace" | "regexp_replace" | "concat_ws" | "overlay" => {
            "its output can be far larger than its input"
        }
        _ => "it is not on the allow-list of filter functions",
    }
}

/// At most [`EXCERPT_CHARS`] characters of `text`, with its full size when
/// cut, for quoting client input in errors and logs.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
    }
}

/// `text` cut to at most `chars` characters (marked with `...` when cut),
/// for log fields that carry client input.
pub fn clip(text: &str, chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(chars) {
        None => text.into(),
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()).into(),
    }
}

/// Refuses a dataset URI longer than [`MAX_URI_BYTES`].
pub fn check_uri(text: &str) -> Result<(), Error> {
    if text.len() > MAX_URI_BYTES {
        return Err(Error::invalid(format!(
            "the dataset URI {} is {} bytes; at most {MAX_URI_BYTES} are accepted",
            excerpt(text),
            text.len()
        )));
    }
    Ok(())
}

/// Refuses a filter text or column list over the limits, before parsing.
pub fn check_request(filter: &str, columns: &[String], table: &str) -> Result<(), Error> {
    if filter.len() > MAX_FILTER_BYTES {
        return Err(Error::invalid(format!(
            "the filter on {table} is {} bytes; at most {MAX_FILTER_BYTES} are accepted",
            filter.len()
        )));
    }
    if columns.len() > MAX_COLUMNS {
        return Err(Error::invalid(format!(
            "{} columns asked of {table}; at most {MAX_COLUMNS} may be named",
            columns.len()
        )));
    }
    Ok(())
}

/// Runs `f` (parsing or walking an expression) on a stack large enough for
/// any expression under the text limit.
pub fn on_planning_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(PLANNING_STACK / 2, PLANNING_STACK, f)
}

/// Checks a parsed filter: its size, depth and the functions it calls.
pub fn check_expr(expr: &Expr, filter: &str, table: &str) -> Result<(), Error> {
    let (nodes, depth) = measure(expr);
    if nodes > MAX_EXPR_NODES {
        return Err(Error::invalid(format!(
            "the filter {} on {table} has {nodes} expression nodes; at most {MAX_EXPR_NODES} are accepted",
            excerpt(filter)
        )));
    }
    if depth > MAX_EXPR_DEPTH {
        return Err(Error::invalid(format!(
            "the filter {} on {table} nests {depth} levels deep; at most {MAX_EXPR_DEPTH} are accepted \
             (write long lists of alternatives as `column IN (...)`)",
            excerpt(filter)
        )));
    }
    let mut refused: Option<Error> = None;
    let mut concatenated = 0usize;
    let _ = expr.apply(|e| {
        match e {
            Expr::ScalarFunction(f) if f.name().eq_ignore_ascii_case("concat") => concatenated += f.args.len(),
            Expr::BinaryExpr(b) if b.op == datafusion::logical_expr::Operator::StringConcat => concatenated += 1,
            _ => {}
        }
        let problem = node_problem(e);
        match problem {
            Some(p) => {
                refused = Some(Error::invalid(format!("invalid filter {} on {table}: {p}", excerpt(filter))));
                Ok(TreeNodeRecursion::Stop)
            }
            None => Ok(TreeNodeRecursion::Continue),
        }
    });
    if refused.is_none() && concatenated > MAX_CONCATENATED {
        refused = Some(Error::invalid(format!(
            "invalid filter {} on {table}: it concatenates {concatenated} strings; at most {MAX_CONCATENATED} are accepted",
            excerpt(filter)
        )));
    }
    refused.map_or(Ok(()), Err)
}

/// Why one node of a filter is refused, if it is: a function outside the
/// allowed list, a regular expression too costly, an aggregate, a subquery.
fn node_problem(e: &Expr) -> Option<String> {
    match e {
        Expr::ScalarFunction(f) => {
            let name = f.name().to_ascii_lowercase();
            if !ALLOWED_FUNCTIONS.contains(&name.as_str()) {
                Some(format!("function {name} is not allowed in filters: {}", refusal_reason(&name)))
            } else if name.starts_with("regexp_") {
                // regexp_*(value, pattern [, start] [, flags]): flags are last.
                let flags = f.args.iter().skip(2).filter_map(text_literal).next_back().unwrap_or("");
                f.args.get(1).and_then(text_literal).and_then(|p| pattern_problem(p, flags.contains('i')))
            } else {
                None
            }
        }
        Expr::BinaryExpr(b) => {
            use datafusion::logical_expr::Operator as Op;
            match b.op {
                Op::RegexMatch | Op::RegexNotMatch | Op::RegexIMatch | Op::RegexNotIMatch => {
                    let insensitive = matches!(b.op, Op::RegexIMatch | Op::RegexNotIMatch);
                    text_literal(&b.right).and_then(|p| pattern_problem(p, insensitive))
                }
                _ => None,
            }
        }
        Expr::Alias(_)
        | Expr::Column(_)
        | Expr::Literal(..)
        | Expr::Like(_)
        | Expr::SimilarTo(_)
        | Expr::Not(_)
        | Expr::IsNotNull(_)
        | Expr::IsNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Negative(_)
        | Expr::Between(_)
        | Expr::Case(_)
        | Expr::Cast(_)
        | Expr::TryCast(_)
        | Expr::InList(_) => None,
        Expr::AggregateFunction(_) | Expr::WindowFunction(_) => {
            Some("aggregate and window functions are not allowed in filters".to_owned())
        }
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_) => {
            Some("subqueries are not allowed in filters".to_owned())
        }
        other => Some(format!("{} is not allowed in filters", excerpt(&other.to_string()))),
    }
}

/// The text of a string literal.
fn text_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(value, _) => value.try_as_str().flatten(),
        _ => None,
    }
}

/// Why a regular expression the filter gives as a literal cannot be used
/// (it does not compile, or compiles too big), checked before any data is
/// read, with the same limits as the engine's.
fn pattern_problem(pattern: &str, case_insensitive: bool) -> Option<String> {
    regex::RegexBuilder::new(pattern).case_insensitive(case_insensitive).build().err().map(|e| {
        let why = match e {
            regex::Error::CompiledTooBig(limit) => format!("it compiles to more than the {limit} bytes allowed"),
            other => other.to_string(),
        };
        format!("the regular expression {} cannot be used: {why}", excerpt(pattern))
    })
}

/// Nodes and depth of an expression, walked without recursion.
fn measure(expr: &Expr) -> (usize, usize) {
    let (mut nodes, mut deepest) = (0, 0);
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        nodes += 1;
        deepest = deepest.max(depth);
        if nodes > MAX_EXPR_NODES {
            break;
        }
        let _ = e.apply_children(|c| {
            stack.push((c, depth + 1));
            Ok(TreeNodeRecursion::Continue)
        });
    }
    (nodes, deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("abc"), "\"abc\"");
        let long = "x".repeat(1_000_000);
        let e = excerpt(&long);
        assert!(e.len() < 120, "{e}");
        assert!(e.ends_with("(1000000 bytes)"));
        // Cuts on a character boundary.
        let emoji = "😀".repeat(200);
        assert!(excerpt(&emoji).contains("800 bytes"));
    }

    #[test]
    fn measures_flat_chains_without_recursion() {
        use datafusion::prelude::{col, lit};
        let mut e = col("id");
        for _ in 0..100_000 {
            e = e + col("id");
        }
        let (nodes, depth) = on_planning_stack(|| measure(&e));
        assert!(nodes > MAX_EXPR_NODES);
        assert!(depth > 1000);
        let small = col("a").eq(lit(1)).and(col("b").gt(lit(2)));
        assert_eq!(measure(&small), (7, 3));
        // Dropping a deep tree recurses too.
        on_planning_stack(move || drop(e));
    }
}
