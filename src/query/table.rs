//! Which entries of a manifest form a table, and of what format.
//!
//! - every Parquet entry is a table;
//! - a folder holding Parquet files is one table whose parts are those files
//!   (in walk order; other files, such as `_SUCCESS`, are ignored);
//! - CSV, TSV, JSON-lines and Arrow IPC entries are tables read whole;
//! - the manifest itself is a table (path `""`): one row per entry.

use super::Error;
use crate::manifest::{Entry, Manifest, key};
use std::collections::BTreeSet;

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
    /// files; every entry for the manifest table).
    pub entries: Vec<Entry>,
}

/// Finds the table at `path` in a manifest.
pub fn find(manifest: &Manifest, path: &str, package: &str) -> Result<Table, Error> {
    if path.is_empty() {
        return Ok(Table {
            path: String::new(),
            format: Format::Manifest,
            entries: manifest.entries().cloned().collect(),
        });
    }
    if let Some(entry) = manifest.entries().find(|e| e.logical_key == path) {
        let format = Format::of_file(path).ok_or_else(|| {
            Error::invalid(format!(
                "{path} in {package} is not a table: supported extensions are .parquet, .csv, .tsv, .jsonl, .ndjson, .arrow, .feather, .arrows"
            ))
        })?;
        return Ok(Table { path: path.to_owned(), format, entries: vec![entry.clone()] });
    }
    let parts: Vec<Entry> = manifest
        .entries()
        .filter(|e| key::is_under(&e.logical_key, path) && Format::of_file(&e.logical_key) == Some(Format::Parquet))
        .cloned()
        .collect();
    if parts.is_empty() {
        let is_folder = manifest.entries().any(|e| key::is_under(&e.logical_key, path));
        return Err(if is_folder {
            Error::invalid(format!("folder {path} in {package} holds no Parquet files, so it is not a table"))
        } else {
            Error::NotFound(format!("path {path} in {package}"))
        });
    }
    Ok(Table { path: path.trim_end_matches('/').to_owned(), format: Format::Parquet, entries: parts })
}

/// Every table of a manifest: `(path, format)`, the manifest table first,
/// then files and Parquet folders in walk order.
pub fn list(manifest: &Manifest) -> Vec<(String, Format)> {
    let mut out = vec![(String::new(), Format::Manifest)];
    let mut folders = BTreeSet::new();
    for e in manifest.entries() {
        if let Some(format) = Format::of_file(&e.logical_key) {
            out.push((e.logical_key.clone(), format));
            if format == Format::Parquet
                && let Some((folder, _)) = e.logical_key.rsplit_once('/')
            {
                folders.insert(folder.to_owned());
            }
        }
    }
    out.extend(folders.into_iter().map(|f| (f, Format::Parquet)));
    out
}
