//! `sheaf lineage`: where a revision's data came from, as a tree.

use super::Report;
use super::args::LineageArgs;
use super::text::{short, write_lines};
use serde::Serialize;
use sheaf::registry::LineageNode;
use sheaf::{Registry, Result};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// The revisions reached, breadth first (the first is the one asked about).
#[derive(Serialize)]
#[serde(transparent)]
pub struct Lineage(pub Vec<LineageNode>);

/// Walks the lineage of the revision in `args`.
pub async fn run(registry: &Registry, args: &LineageArgs) -> Result<Lineage> {
    Ok(Lineage(registry.lineage(&args.reference()?, args.depth, |_| true).await?))
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_key: HashMap<(&str, &str), &LineageNode> =
            self.0.iter().map(|n| ((n.package.as_str(), n.top_hash.as_str()), n)).collect();
        let mut lines = Vec::new();
        let mut shown = HashSet::new();
        if let Some(root) = self.0.first() {
            render(root, "", "", &by_key, &mut shown, &mut lines);
        }
        write_lines(f, lines)
    }
}

/// One node and, below it, its inputs (a node already shown is not repeated).
fn render<'a>(
    node: &'a LineageNode,
    lead: &str,
    indent: &str,
    by_key: &HashMap<(&str, &str), &'a LineageNode>,
    shown: &mut HashSet<(&'a str, &'a str)>,
    lines: &mut Vec<String>,
) {
    let mut line = format!("{lead}{}@{}", node.package, short(&node.top_hash));
    if let Some(m) = node.message.as_deref().filter(|m| !m.is_empty()) {
        line.push_str(&format!("  {m:?}"));
    }
    let who: Vec<&str> = [node.principal.as_str(), node.tool.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
    if !who.is_empty() {
        line.push_str(&format!("  ({})", who.join(", ")));
    }
    if !node.missing.is_empty() {
        line.push_str(&format!("  [inputs unknown: {}]", node.missing));
    }
    let first = shown.insert((node.package.as_str(), node.top_hash.as_str()));
    if !first && !node.inputs.is_empty() {
        line.push_str("  (inputs shown above)");
    }
    lines.push(line);
    if !first {
        return;
    }
    for (i, input) in node.inputs.iter().enumerate() {
        let last = i + 1 == node.inputs.len();
        let (branch, next) = if last { ("└─ ", "   ") } else { ("├─ ", "│  ") };
        let lead = format!("{indent}{branch}");
        let indent = format!("{indent}{next}");
        let at = lines.len();
        match by_key.get(&(input.package.as_str(), input.top_hash.as_str())) {
            Some(child) => render(child, &lead, &indent, by_key, shown, lines),
            None => lines.push(format!("{lead}{}@{}  (beyond --depth)", input.package, short(&input.top_hash))),
        }
        if !input.uri.is_empty() {
            lines[at].push_str(&format!("  via {}", input.uri));
        }
    }
}

impl Report for Lineage {}
