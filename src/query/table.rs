//! Which entries of a manifest form a table, and of what format.
//!
//! - every Parquet entry is a table;
//! - a folder holding Parquet files is one table whose parts are those files
//!   (in walk order; other files, such as `_SUCCESS`, are ignored);
//! - CSV, TSV, JSON-lines and Arrow IPC entries are tables read whole;
//! - the manifest itself is a table (path `""`): one row per entry.

use super::Error;
use crate::manifest::{Entry, key};
use crate::registry::ManifestIndex;
use std::sync::Arc;

/// The format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Parquet, possibly several part files.
    Parquet,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// One JSON object per line.
    JsonLines,
    /// Arrow IPC file format (`.arrow`, `.feather`).
    ArrowFile,
    /// Arrow IPC stream format (`.arrows`).
    ArrowStream,
    /// The package's manifest.
    Manifest,
}

impl Format {
    /// The format of a single file, by extension.
    pub fn of_file(key: &str) -> Option<Format> {
        let ext = key.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        Some(match ext.as_str() {
            "parquet" | "pq" => Format::Parquet,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "jsonl" | "ndjson" => Format::JsonLines,
            "arrow" | "feather" | "ipc" => Format::ArrowFile,
            "arrows" => Format::ArrowStream,
            _ => return None,
        })
    }

    /// A short name for listings.
    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::JsonLines => "jsonl",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrows",
            Format::Manifest => "manifest",
        }
    }
}

/// A table of a revision: its path, format and the entries holding its data.
#[derive(Debug, Clone)]
pub struct Table {
    /// Path inside the package (`""` for the manifest table).
    pub path: String,
    /// Format.
    pub format: Format,
    /// Data entries in canonical order (parts for Parquet; one entry for other
    /// files; none for the manifest table, whose entries are read from
    /// storage a run at a time through `index`).
    pub entries: Vec<Entry>,
    /// The manifest table's index of the manifest's entries.
    pub index: Option<Arc<ManifestIndex>>,
}

impl Table {
    /// The manifest table of an indexed manifest.
    pub fn manifest(index: Arc<ManifestIndex>) -> Self {
        Table { path: String::new(), format: Format::Manifest, entries: Vec::new(), index: Some(index) }
    }

    /// Memory the table takes, about.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.path.len() + self.entries.iter().map(Entry::memory_size).sum::<usize>()
    }
}

/// Finds the table at `path` (not the manifest table) among the entries of
/// a revision that may hold it (every entry, or the blocks a
/// [`super::revision::Revision`] says hold it), fed one at a time: it keeps
/// only the table's own entries.
pub struct Finder<'a> {
    path: &'a str,
    file: Option<Entry>,
    parts: Vec<Entry>,
    is_folder: bool,
}

impl<'a> Finder<'a> {
    /// Looks for the table at `path`.
    pub fn new(path: &'a str) -> Self {
        Finder { path, file: None, parts: Vec::new(), is_folder: false }
    }

    /// Looks at the next entry.
    pub fn add(&mut self, e: Entry) {
        if self.file.is_some() {
            return;
        }
        if e.logical_key == self.path {
            self.file = Some(e);
        } else if key::is_under(&e.logical_key, self.path) {
            self.is_folder = true;
            if Format::of_file(&e.logical_key) == Some(Format::Parquet) {
                self.parts.push(e);
            }
        }
    }

    /// The table, or what the path is instead, naming `package`.
    pub fn finish(self, package: &str) -> Result<Table, Error> {
        let path = self.path;
        if let Some(e) = self.file {
            let format = Format::of_file(path).ok_or_else(|| {
                Error::invalid(format!(
                    "{path} in {package} is not a table: supported extensions are .parquet, .csv, .tsv, .jsonl, .ndjson, .arrow, .feather, .arrows"
                ))
            })?;
            return Ok(Table { path: path.to_owned(), format, entries: vec![e], index: None });
        }
        if self.parts.is_empty() {
            return Err(if self.is_folder {
                Error::invalid(format!("folder {path} in {package} holds no Parquet files, so it is not a table"))
            } else {
                Error::NotFound(format!("path {path} in {package}"))
            });
        }
        let path = path.trim_end_matches('/').to_owned();
        Ok(Table { path, format: Format::Parquet, entries: self.parts, index: None })
    }
}
