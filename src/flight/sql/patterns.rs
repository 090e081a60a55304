//! Name filter patterns of the catalog commands (SQL LIKE).

use arrow::array::{BooleanArray, StringArray};
use tonic::Status;

/// Which of `names` match the LIKE `pattern` (a catalog command's `what`
/// name filter pattern). A pattern that cannot be matched (its regex past
/// the size limit) is refused with INVALID_ARGUMENT naming it.
pub(super) fn like(what: &str, names: &StringArray, pattern: &str) -> Result<BooleanArray, Status> {
    let refused = |e: arrow::error::ArrowError| {
        Status::invalid_argument(format!("the {what} pattern {}: {e}", crate::query::limits::excerpt(pattern)))
    };
    arrow::compute::kernels::comparison::like(names, &StringArray::new_scalar(pattern)).map_err(refused)
}

/// Refuses (INVALID_ARGUMENT, naming it) a catalog command's filter pattern
/// that cannot be matched, whatever it would filter.
pub(super) fn check_patterns(patterns: &[(&str, &Option<String>)]) -> Result<(), Status> {
    let probe = StringArray::from_iter_values([""]);
    for (what, pattern) in patterns {
        if let Some(pattern) = pattern {
            like(what, &probe, pattern)?;
        }
    }
    Ok(())
}
