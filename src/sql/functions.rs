//! String functions whose output size an argument chooses (`repeat(s, n)`,
//! `lpad(s, n)`, `rpad(s, n)`), bounded by the query's memory limit.
//!
//! Scalar functions build their results outside DataFusion's memory pool:
//! `SELECT length(lpad('x', 300000000))` held 300 MB under a 16 MiB limit,
//! `repeat(column, 20000)` 1.6 GB per batch. Each of these functions is
//! wrapped: before computing a batch it works out how many bytes the batch's
//! results would take, and past the limit the query fails with
//! RESOURCE_EXHAUSTED naming the function. Everything else about the
//! functions is theirs.

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::compute::kernels::length::length;
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};
use std::sync::Arc;

/// The functions wrapped, and how their results' size is reckoned.
const BOUNDED: [(&str, Size); 3] = [("repeat", Size::Repeat), ("lpad", Size::Pad), ("rpad", Size::Pad)];

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Size {
    /// The string's bytes times the count.
    Repeat,
    /// The target length, in characters (at least a byte each).
    Pad,
}

/// Replaces the bounded functions of `state` with wrappers that refuse a
/// batch whose results would exceed `limit` bytes.
pub(super) fn bound(state: &mut SessionState, limit: usize) -> Result<()> {
    for (name, size) in BOUNDED {
        let Some(inner) = state.scalar_functions().get(name).cloned() else { continue };
        let bounded = Bounded { inner, size, limit };
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(bounded)))?;
    }
    Ok(())
}

/// A function whose batches are checked against a byte limit.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    size: Size,
    limit: usize,
}

impl Bounded {
    /// Bytes the batch's results would take (saturating).
    fn estimate(&self, args: &ScalarFunctionArgs) -> Result<u64> {
        let rows = args.number_rows;
        let (Some(text), Some(count)) = (args.args.first(), args.args.get(1)) else { return Ok(0) };
        let counts = as_i64(&count.to_array(rows)?)?;
        let total = match self.size {
            Size::Repeat => {
                let bytes = as_i64(&length(&text.to_array(rows)?)?)?;
                (0..rows).fold(0u64, |sum, i| sum.saturating_add(value(&bytes, i).saturating_mul(value(&counts, i))))
            }
            Size::Pad => (0..rows).fold(0u64, |sum, i| sum.saturating_add(value(&counts, i))),
        };
        Ok(total)
    }
}

/// An integer array as Int64 (nulls count as 0).
fn as_i64(array: &ArrayRef) -> Result<Int64Array> {
    let cast = arrow::compute::cast(array, &DataType::Int64)?;
    Ok(cast.as_any().downcast_ref::<Int64Array>().cloned().unwrap_or_else(|| Int64Array::from(vec![0; array.len()])))
}

/// Row `i` of `array` as a count (nulls and negatives are 0).
fn value(array: &Int64Array, i: usize) -> u64 {
    if array.is_null(i) { 0 } else { array.value(i).max(0) as u64 }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.estimate(&args)?;
        if bytes > self.limit as u64 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}() would build {bytes} bytes of strings for a batch of {} rows, more than the query's memory \
                 limit of {} bytes (sheaf serve --sql-memory-mib)",
                self.inner.name(),
                args.number_rows,
                self.limit
            )));
        }
        self.inner.invoke_with_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
