//! `sheaf log`: a package's revisions, newest first.

use super::Report;
use super::args::LogArgs;
use super::text::{shown, when, write_lines};
use serde::Serialize;
use sheaf::registry::RevisionInfo;
use sheaf::{Registry, Result};
use std::fmt;

/// A package's revisions; one line each: hash, time, tags, message. What is
/// wrong with its pointers goes to stderr as warnings.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Revisions {
    revisions: Vec<RevisionInfo>,
    #[serde(skip)]
    problems: Vec<String>,
}

/// Lists the revisions of the package in `args`.
pub async fn run(registry: &Registry, args: &LogArgs) -> Result<Revisions> {
    let (revisions, problems) = registry.revision_log(&args.package()?).await?;
    Ok(Revisions { revisions, problems })
}

impl fmt::Display for Revisions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |r: &RevisionInfo| {
            let tags = if r.tags.is_empty() { String::new() } else { format!(" ({})", r.tags.join(", ")) };
            // Derived revisions are marked; `sheaf lineage` shows their inputs.
            let derived = if r.derived { " [derived]" } else { "" };
            format!(
                "{}  {}{}{derived}  {}",
                r.top_hash,
                when(r.timestamp),
                tags,
                shown(r.message.as_deref().unwrap_or(""))
            )
        };
        write_lines(f, self.revisions.iter().map(line))
    }
}

impl Report for Revisions {
    fn notes(&self) -> Vec<String> {
        self.problems.iter().map(|p| format!("warning: {p} (left out)")).collect()
    }
}
