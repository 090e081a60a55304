//! `sheaf demo` (and `sheaf serve --demo`): push the demo package.

use super::Report;
use serde::Serialize;
use sheaf::progress::Progress;
use sheaf::registry::{PushOptions, PushReport};
use sheaf::{Error, PackageName, Registry, Result};
use std::fmt;

/// The push of the demo package, and (for the text) the registry it is in.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Demo {
    report: PushReport,
    #[serde(skip)]
    registry: String,
}

/// Pushes the demo package into `registry`.
pub async fn run(registry: &Registry, progress: &dyn Progress) -> Result<Demo> {
    Ok(Demo { report: push(registry, progress).await?, registry: registry.url().to_string() })
}

/// Pushes the demo package, its files written to a temporary folder first
/// (and removed after, pushed or not).
pub async fn push(registry: &Registry, progress: &dyn Progress) -> Result<PushReport> {
    let dir = std::env::temp_dir().join(format!("sheaf-demo-{}", std::process::id()));
    sheaf::demo::write_demo_files(&dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let package: PackageName = sheaf::demo::DEMO_PACKAGE.parse()?;
    let opts = PushOptions { message: Some("Sheaf demo data".into()), profile: true, ..Default::default() };
    let pushed = registry.push(&package, &dir, &opts, progress).await;
    let _ = std::fs::remove_dir_all(&dir);
    pushed
}

impl fmt::Display for Demo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let package = &self.report.package;
        write!(
            f,
            "{package} is in {} at {}\ntry: sheaf browse {package}   or   sheaf install {package} --dest ./weather",
            self.registry, self.report.top_hash
        )
    }
}

impl Report for Demo {}
