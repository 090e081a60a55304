//! `sheaf diff`: what changed between two revisions.

use super::Report;
use super::args::DiffArgs;
use super::text::{short, write_lines};
use serde::Serialize;
use sheaf::registry::Diff;
use sheaf::{Registry, Result};
use std::fmt;

/// The library's diff; as text, one line per change, marked `+`, `-`, `M`.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Changes(pub Diff);

/// Compares the two revisions of `args`.
pub async fn run(registry: &Registry, args: &DiffArgs) -> Result<Changes> {
    let (from, to) = args.references()?;
    Ok(Changes(registry.diff(&from, &to).await?))
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        let head = std::iter::once(format!("{} -> {}", short(&d.from), short(&d.to)));
        let header = d.header_changed.then(|| "~ header (message or metadata)".to_owned());
        let lines = head
            .chain(header)
            .chain(d.added.iter().map(|k| format!("+ {k}")))
            .chain(d.removed.iter().map(|k| format!("- {k}")))
            .chain(d.modified.iter().map(|k| format!("M {k}")));
        write_lines(f, lines)
    }
}

impl Report for Changes {}
