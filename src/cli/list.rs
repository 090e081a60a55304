//! `sheaf list`: the registry's packages.

use super::Report;
use super::text::{short, write_lines};
use serde::Serialize;
use sheaf::registry::PackageSummary;
use sheaf::{Registry, Result};
use std::fmt;

/// Every package with its latest revision; one line each.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Packages(pub Vec<PackageSummary>);

/// Lists the packages of `registry`.
pub async fn run(registry: &Registry) -> Result<Packages> {
    Ok(Packages(registry.list_packages().await?))
}

impl fmt::Display for Packages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |p: &PackageSummary| format!("{:<40} {}", p.name, p.latest.as_deref().map(short).unwrap_or("-"));
        write_lines(f, self.0.iter().map(line))
    }
}

impl Report for Packages {}
