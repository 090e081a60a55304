//! `sheaf install`: a revision (or part of it) into a folder.

use super::Report;
use super::args::InstallArgs;
use super::text::{human_bytes, short};
use serde::Serialize;
use sheaf::progress::Progress;
use sheaf::registry::InstallReport;
use sheaf::{PackageName, Registry, Result};
use std::fmt;
use std::path::PathBuf;

/// The library's report, and (for the text only) what was installed where.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Installed {
    report: InstallReport,
    #[serde(skip)]
    package: PackageName,
    #[serde(skip)]
    dest: PathBuf,
}

/// Installs the revision of `args` into its `--dest`.
pub async fn run(registry: &Registry, args: &InstallArgs, progress: &dyn Progress) -> Result<Installed> {
    let r = args.reference()?;
    let report = registry.install(&r, &args.dest, progress).await?;
    Ok(Installed { report, package: r.package, dest: args.dest.clone() })
}

impl fmt::Display for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        write!(
            f,
            "installed {}@{} into {}: {} files ({}), downloaded {} ({}), {} already present",
            self.package,
            short(&r.top_hash),
            self.dest.display(),
            r.files,
            human_bytes(r.bytes),
            r.downloaded_files,
            human_bytes(r.downloaded_bytes),
            r.skipped_files
        )
    }
}

impl Report for Installed {}
