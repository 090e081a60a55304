//! `sheaf browse`: a revision's entries, or those under a folder.

use super::Report;
use super::args::BrowseArgs;
use super::text::write_lines;
use serde::Serialize;
use serde_json::Value;
use sheaf::manifest::{Entry, hash::EntryHash};
use sheaf::{PackageName, Registry, Result};
use std::fmt;

/// A revision's header and the entries shown.
#[derive(Serialize)]
pub struct Listing {
    /// Named in the text only: JSON readers asked for it.
    #[serde(skip)]
    package: PackageName,
    top_hash: String,
    message: Option<String>,
    user_meta: Option<Value>,
    entries: Vec<Listed>,
}

/// One entry as `browse` shows it (the manifest's fields it does not
/// interpret are left out).
#[derive(Serialize)]
struct Listed {
    logical_key: String,
    size: u64,
    hash: EntryHash,
    meta: Value,
    physical_keys: Vec<String>,
}

impl From<Entry> for Listed {
    fn from(e: Entry) -> Self {
        Listed { logical_key: e.logical_key, size: e.size, hash: e.hash, meta: e.meta, physical_keys: e.physical_keys }
    }
}

/// Reads the entries `args` selects. Streamed: only the entries under the
/// prefix are kept, so browsing a folder of a huge package stays small.
pub async fn run(registry: &Registry, args: &BrowseArgs) -> Result<Listing> {
    let (r, prefix) = args.target()?;
    let selection = registry.load_under(&r, &prefix).await?;
    Ok(Listing {
        message: selection.message().map(str::to_owned),
        user_meta: selection.user_meta().cloned(),
        package: r.package,
        top_hash: selection.top_hash,
        entries: selection.entries.into_iter().map(Listed::from).collect(),
    })
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.package, self.top_hash)?;
        if let Some(m) = &self.message {
            write!(f, "\nmessage: {m}")?;
        }
        if let Some(m) = &self.user_meta {
            write!(f, "\nmeta: {m}")?;
        }
        let line = |e: &Listed| {
            let meta = match &e.meta {
                Value::Object(m) if m.is_empty() => String::new(),
                Value::Null => String::new(),
                m => format!("  {m}"),
            };
            format!("{:>12}  {}  {}{}", e.size, e.hash, e.logical_key, meta)
        };
        if !self.entries.is_empty() {
            f.write_str("\n")?;
        }
        write_lines(f, self.entries.iter().map(line))
    }
}

impl Report for Listing {}
