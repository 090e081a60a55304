//! The output files of `sheaf get`: Parquet, Arrow IPC (file or stream) or
//! CSV, by the extension of `--out`.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use std::fs::File;
use std::path::Path;

/// A file being written, in the format its extension names.
pub enum Writer {
    Parquet(parquet::arrow::ArrowWriter<File>),
    IpcFile(arrow::ipc::writer::FileWriter<File>),
    IpcStream(arrow::ipc::writer::StreamWriter<File>),
    Csv(arrow::csv::Writer<File>),
}

impl Writer {
    /// A writer of `schema`'s batches into `file`, by the extension of
    /// `path`; an unknown extension is refused before anything is read.
    pub fn create(path: &Path, file: File, schema: &SchemaRef) -> Result<Writer, String> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let e = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match ext.as_str() {
            "parquet" | "pq" => {
                Writer::Parquet(parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).map_err(|x| e(&x))?)
            }
            "arrow" | "feather" | "ipc" => {
                Writer::IpcFile(arrow::ipc::writer::FileWriter::try_new(file, schema).map_err(|x| e(&x))?)
            }
            "arrows" => Writer::IpcStream(arrow::ipc::writer::StreamWriter::try_new(file, schema).map_err(|x| e(&x))?),
            "csv" => Writer::Csv(arrow::csv::Writer::new(file)),
            other => {
                return Err(format!(
                    "unknown output format {other:?}: use .parquet, .arrow, .feather, .arrows or .csv"
                ));
            }
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        match self {
            Writer::Parquet(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::IpcFile(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::IpcStream(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::Csv(w) => w.write(batch).map_err(|e| e.to_string()),
        }
    }

    /// Writes what the format keeps for the end (footer, metadata).
    pub fn finish(self) -> Result<(), String> {
        match self {
            Writer::Parquet(w) => w.close().map(|_| ()).map_err(|e| e.to_string()),
            Writer::IpcFile(mut w) => w.finish().map_err(|e| e.to_string()),
            Writer::IpcStream(mut w) => w.finish().map_err(|e| e.to_string()),
            Writer::Csv(_) => Ok(()),
        }
    }
}
