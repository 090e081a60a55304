//! `sheaf delete`: remove a package's pointers, or one revision's.

use super::Report;
use super::args::DeleteArgs;
use super::text::short;
use serde::Serialize;
use sheaf::registry::DeleteReport;
use sheaf::{PackageName, Registry, Result, Revision};
use std::fmt;

/// The library's report, and (for the text only) what was deleted.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Deleted {
    report: DeleteReport,
    #[serde(skip)]
    package: PackageName,
    #[serde(skip)]
    top_hash: Option<String>,
}

/// Deletes the package of `args`, or the one revision its hash prefix names.
pub async fn run(registry: &Registry, args: &DeleteArgs) -> Result<Deleted> {
    let r = args.target()?;
    let top_hash = match &r.revision {
        Revision::Hash(_) => Some(registry.resolve(&r.package, &r.revision).await?),
        _ => None,
    };
    let report = registry.delete(&r.package, top_hash.as_deref()).await?;
    Ok(Deleted { report, package: r.package, top_hash })
}

impl fmt::Display for Deleted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removed {} pointers of {}{}; latest is now {} (manifests and data are kept)",
            self.report.removed_pointers,
            self.package,
            self.top_hash.as_deref().map(|h| format!("@{}", short(h))).unwrap_or_default(),
            self.report.latest.as_deref().unwrap_or("gone")
        )
    }
}

impl Report for Deleted {}
