//! Lineage: where a revision's data came from. A revision written through
//! Sheaf records, in its user metadata (plain JSON that quilt3 reads too),
//!
//! ```json
//! {"sheaf": {"lineage": {
//!   "inputs": [{"package": "team/raw", "top_hash": "<64 hex>", "uri": "sheaf://team/raw@<hash>/events"}],
//!   "writer": {"principal": "alice", "tool": "spark 4.0.1 sheaf-spark 0.1.0", "server": "sheaf 0.1.0"},
//!   "session": "<write session id>"}}}
//! ```
//!
//! [`Registry::lineage`] follows the inputs transitively.

use super::{PackageName, PackageRef, Registry, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};

/// Most revisions one lineage walk visits.
const MAX_NODES: usize = 10_000;

/// A dataset a revision was derived from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageInput {
    /// `owner/name`.
    pub package: String,
    /// The full top hash read.
    pub top_hash: String,
    /// The dataset URI it was read with (empty when unknown).
    #[serde(default)]
    pub uri: String,
}

/// One revision of a lineage walk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageNode {
    /// `owner/name`.
    pub package: String,
    /// The revision.
    pub top_hash: String,
    /// Levels from the revision asked about.
    pub depth: u32,
    /// Its commit message.
    pub message: Option<String>,
    /// Who wrote it (empty when not recorded).
    pub principal: String,
    /// With what (empty when not recorded).
    pub tool: String,
    /// What it was derived from.
    pub inputs: Vec<LineageInput>,
    /// Why its inputs are unknown (not readable by the caller, or its
    /// manifest is gone); empty when they were read.
    pub missing: String,
}

/// The lineage inputs recorded in a header's `user_meta`.
pub(crate) fn inputs_of(user_meta: Option<&Value>) -> impl Iterator<Item = LineageInput> + '_ {
    user_meta
        .and_then(|m| m.pointer("/sheaf/lineage/inputs"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| serde_json::from_value::<LineageInput>(v.clone()).ok())
}

/// Whether `text` is a full top hash.
pub fn is_top_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Registry {
    /// Why a lineage node is not opened, if it is not: not a top hash, a
    /// package the caller may not read (`name` is `None`), or, for an input,
    /// a hash that is not a revision of the package it names (so a recorded
    /// input cannot show another package's revision).
    async fn unopened(&self, name: Option<&PackageName>, top_hash: &str, input: bool) -> Option<String> {
        if !is_top_hash(top_hash) {
            return Some("not a top hash (64 lowercase hex digits)".into());
        }
        let Some(name) = name else { return Some("not readable by the caller".into()) };
        if !input {
            return None;
        }
        match self.pointed_hashes(name).await {
            Ok(hashes) if hashes.iter().any(|h| h == top_hash) => None,
            Ok(_) => Some(format!("not a revision of {name} (deleted, or never one)")),
            Err(e) => Some(e.to_string()),
        }
    }

    /// The revision `root` names and, breadth first, every revision it was
    /// derived from, down to `depth` levels, each once. Revisions of packages
    /// `may_read` refuses are listed (they were named as inputs) but not
    /// opened.
    pub async fn lineage(
        &self,
        root: &PackageRef,
        depth: u32,
        may_read: impl Fn(&str) -> bool,
    ) -> Result<Vec<LineageNode>> {
        let top_hash = self.resolve(&root.package, &root.revision).await?;
        let mut queue = VecDeque::from([(root.package.to_string(), top_hash, 0u32)]);
        let mut seen: HashSet<(String, String)> = queue.iter().map(|(p, h, _)| (p.clone(), h.clone())).collect();
        let mut nodes = Vec::new();
        while let Some((package, top_hash, level)) = queue.pop_front() {
            let mut node = LineageNode {
                package: package.clone(),
                top_hash: top_hash.clone(),
                depth: level,
                message: None,
                principal: String::new(),
                tool: String::new(),
                inputs: Vec::new(),
                missing: String::new(),
            };
            let name = package.parse::<PackageName>().ok().filter(|_| may_read(&package));
            node.missing = self.unopened(name.as_ref(), &top_hash, level > 0).await.unwrap_or_default();
            if node.missing.is_empty() {
                match self.read_header(&top_hash).await {
                    Err(e) => node.missing = e.to_string(),
                    Ok(header) => {
                        node.message = header.get("message").and_then(Value::as_str).map(str::to_owned);
                        let meta = header.get("user_meta");
                        let writer = meta.and_then(|m| m.pointer("/sheaf/lineage/writer"));
                        let field = |k: &str| writer.and_then(|w| w.get(k)).and_then(Value::as_str).unwrap_or("");
                        node.principal = field("principal").to_owned();
                        node.tool = field("tool").to_owned();
                        node.inputs = inputs_of(meta).collect();
                    }
                }
            }
            if level < depth {
                for input in &node.inputs {
                    let key = (input.package.clone(), input.top_hash.clone());
                    if seen.len() < MAX_NODES && seen.insert(key) {
                        queue.push_back((input.package.clone(), input.top_hash.clone(), level + 1));
                    }
                }
            }
            nodes.push(node);
        }
        Ok(nodes)
    }
}
