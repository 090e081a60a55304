//! Profiles of local files, read once as a stream (for `sheaf push`).

use super::{Profile, Profiler};
use crate::registry::{Error, Result};
use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// Records read to infer a CSV file's schema, as the server does when it
/// serves the file (so the profile's types are the served types).
const INFER_RECORDS: usize = 1000;
/// Rows per batch while profiling.
const BATCH_ROWS: usize = 65_536;

/// Whether [`profile_file`] profiles `path` (by its extension).
pub fn is_profiled(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("parquet" | "pq" | "csv" | "tsv" | "tab"))
}

/// Profiles a local Parquet (`.parquet`, `.pq`), CSV (`.csv`) or TSV
/// (`.tsv`, `.tab`) file by streaming it; `None` for other files. An
/// unreadable file is an error naming it.
pub fn profile_file(path: &Path) -> Result<Option<Profile>> {
    if !is_profiled(path) {
        return Ok(None);
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let shown = path.display().to_string();
    let bad = |e: ArrowError| Error::Invalid(format!("cannot profile {shown}: {e}"));
    let mut file = File::open(path).map_err(|e| Error::io(shown.clone(), e))?;
    let profile = match ext.as_deref() {
        Some("parquet" | "pq") => {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|e| bad(e.into()))?;
            let schema = arrow::array::RecordBatchReader::schema(&reader);
            profile_batches(&schema, reader).map_err(bad)?
        }
        Some(ext @ ("csv" | "tsv" | "tab")) => {
            let delimiter = if ext == "csv" { b',' } else { b'\t' };
            let format = arrow::csv::reader::Format::default().with_header(true).with_delimiter(delimiter);
            let (schema, _) = format.infer_schema(&mut file, Some(INFER_RECORDS)).map_err(bad)?;
            file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(shown.clone(), e))?;
            let schema = std::sync::Arc::new(schema);
            let reader = arrow::csv::ReaderBuilder::new(schema.clone())
                .with_format(format)
                .with_batch_size(BATCH_ROWS)
                .build(file)
                .map_err(bad)?;
            profile_batches(&schema, reader).map_err(bad)?
        }
        _ => return Ok(None),
    };
    Ok(Some(profile))
}

fn profile_batches(
    schema: &arrow::datatypes::Schema,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
) -> Result<Profile, ArrowError> {
    let mut profiler = Profiler::new(schema);
    for batch in batches {
        profiler.update(&batch?);
    }
    Ok(profiler.finish())
}
