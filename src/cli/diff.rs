//! `sheaf diff`: what changed between two revisions; with `--profile`, how
//! their tables' data moved (see `sheaf::profile::drift`).

use super::Report;
use super::args::DiffArgs;
use super::text::{short, shown, write_lines};
use serde::Serialize;
use sheaf::profile::{RevisionDrift, SchemaChange, TableComparison, html};
use sheaf::registry::Diff;
use sheaf::{Error, Registry, Result};
use std::fmt;

/// The library's diff; as text, one line per change, marked `+`, `-`, `M`;
/// with `--profile`, one block per table compared.
#[derive(Serialize)]
pub struct Changes {
    /// Entries added, removed, modified.
    #[serde(flatten)]
    pub diff: Diff,
    /// The profile comparison (with `--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<RevisionDrift>,
    /// The HTML report written (with `--html`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// Compares the two revisions of `args`.
pub async fn run(registry: &Registry, args: &DiffArgs) -> Result<Changes> {
    let (from, to) = args.references()?;
    let diff = registry.diff(&from, &to).await?;
    if !args.profile && args.html.is_none() {
        return Ok(Changes { diff, profile: None, html: None });
    }
    let ((_, a), (_, b)) = futures::try_join!(registry.load(&from), registry.load(&to))?;
    let drift = RevisionDrift::between(&a, &b);
    let html = match &args.html {
        None => None,
        Some(path) => {
            let title = format!("{}@{} \u{2192} {}@{}", from.package, short(&diff.from), to.package, short(&diff.to));
            let tables: Vec<html::ReportTable<'_>> = drift
                .tables
                .iter()
                .map(|t| html::ReportTable { path: &t.path, drift: &t.drift, from: &t.profiles[0], to: &t.profiles[1] })
                .collect();
            let page = html::report(&title, &tables);
            std::fs::write(path, page).map_err(|e| Error::io(path.display().to_string(), e))?;
            Some(path.display().to_string())
        }
    };
    Ok(Changes { diff, profile: Some(drift), html })
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.diff;
        let head = std::iter::once(format!("{} -> {}", short(&d.from), short(&d.to)));
        let header = d.header_changed.then(|| "~ header (message or metadata)".to_owned());
        let profile = self.profile.iter().flat_map(profile_lines);
        let html = self.html.iter().map(|p| format!("report written to {p}"));
        let lines = head
            .chain(header)
            .chain(d.added.iter().map(|k| format!("+ {}", shown(k))))
            .chain(d.removed.iter().map(|k| format!("- {}", shown(k))))
            .chain(d.modified.iter().map(|k| format!("M {}", shown(k))))
            .chain(profile)
            .chain(html);
        write_lines(f, lines)
    }
}

/// The profile comparison as text: per table a heading, its schema changes
/// (`+`, `-`, `~`) and one line per column, drifted columns marked `!`.
fn profile_lines(drift: &RevisionDrift) -> Vec<String> {
    let mut lines = Vec::new();
    if drift.tables.is_empty() && drift.unchanged.is_empty() {
        lines.push("profile: no profiled table is in both revisions".to_owned());
    }
    for t in &drift.tables {
        lines.extend(table_lines(t));
    }
    if !drift.unchanged.is_empty() {
        lines.push(format!("profile unchanged: {}", drift.unchanged.join(", ")));
    }
    lines.extend(drift.unprofiled.iter().map(|p| format!("profile {p}: no stored profile, not compared")));
    lines
}

fn table_lines(t: &TableComparison) -> Vec<String> {
    let d = &t.drift;
    let verdict = match d.drifted.len() {
        0 => "no column drifted".to_owned(),
        n => format!("{n} drifted: {}", d.drifted.join(", ")),
    };
    let mut lines = vec![format!("profile {}: rows {} -> {}, {verdict}", t.path, d.rows[0], d.rows[1])];
    for change in &d.schema {
        lines.push(match change {
            SchemaChange::Added { column, data_type } => format!("  + {column} ({data_type})"),
            SchemaChange::Removed { column, data_type } => format!("  - {column} ({data_type})"),
            SchemaChange::Type { column, from, to } => format!("  ~ {column}: {from} -> {to}"),
        });
    }
    let width = d.columns.iter().map(|c| c.column.chars().count()).max().unwrap_or(0);
    for c in &d.columns {
        let mut line = format!("  {} {:<width$}  psi {:.3}", if c.drifted { "!" } else { " " }, c.column, c.psi);
        if let Some(ks) = c.ks {
            line.push_str(&format!("  ks {ks:.3}"));
        }
        if let Some([Some(a), Some(b)]) = c.mean {
            line.push_str(&format!("  mean {} -> {}", number(a), number(b)));
        }
        let [na, nb] = c.null_fraction;
        if na > 0.0 || nb > 0.0 {
            line.push_str(&format!("  nulls {:.1}% -> {:.1}%", na * 100.0, nb * 100.0));
        }
        lines.push(line);
    }
    lines
}

/// A number with four decimals (scientific notation when very large or small).
fn number(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) { format!("{x:.3e}") } else { format!("{x:.4}") }
}

impl Report for Changes {}
