//! `sheaf gc`: report (and with `--delete` remove) what interrupted writes
//! left in the registry's `.sheaf/` area; see [`sheaf::registry::GcOptions`].

use super::args::GcArgs;
use super::text::{human_bytes, plural};
use super::{Report, codes};
use serde::Serialize;
use sheaf::Result;
use sheaf::registry::{GcAction, GcReport, Registry};
use std::fmt;
use std::time::Duration;

/// The library's report. Exit code 1 when a removal failed (each failure is
/// named on stderr and in the JSON report); the rest are still removed.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Collected(pub GcReport);

/// Runs `sheaf gc` with the options of `args`.
pub async fn run(registry: &Registry, args: &GcArgs) -> Result<Collected> {
    Ok(Collected(registry.gc(&args.options()).await?))
}

impl Report for Collected {
    fn exit_code(&self) -> u8 {
        if self.0.ok() { codes::OK } else { codes::FAILURE }
    }

    // Failures also go to stderr, where a script's error handling looks.
    fn notes(&self) -> Vec<String> {
        let failed = self.0.leftovers.iter().filter(|l| l.action == GcAction::Failed);
        failed.map(|l| format!("sheaf: error: {}", l.detail.as_deref().unwrap_or(&l.path))).collect()
    }
}

impl fmt::Display for Collected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(&self.0))
    }
}

/// The text: a line per file found (what was or would be done, and why),
/// then a summary that says plainly whether anything was removed.
fn human(report: &GcReport) -> String {
    let age = |secs: u64| humantime::format_duration(Duration::from_secs(secs)).to_string();
    let mut lines: Vec<String> = report
        .leftovers
        .iter()
        .map(|l| {
            let (verb, why) = match l.action {
                GcAction::WouldRemove => ("would remove", l.why.to_owned()),
                GcAction::Removed => ("removed", l.why.to_owned()),
                GcAction::Failed => ("FAILED", l.detail.clone().unwrap_or_default()),
                GcAction::Kept => ("kept", l.detail.clone().unwrap_or_default()),
            };
            format!("{verb:<12}  {}  {}, {} old: {why}", l.path, human_bytes(l.size), age(l.age_secs))
        })
        .collect();
    let what = if report.unreferenced { "leftovers or unreferenced blobs" } else { "leftovers" };
    let checked = plural(report.manifests, "manifest") + " checked";
    lines.push(if report.dry_run {
        if report.garbage_files == 0 {
            format!("no {what} older than {} in {} ({checked})", age(report.older_than_secs), report.registry)
        } else {
            format!(
                "dry run: {} ({}) would be removed from {} ({checked}); nothing was removed. \
                 Run with --delete to remove them.",
                plural(report.garbage_files, "file"),
                human_bytes(report.garbage_bytes),
                report.registry
            )
        }
    } else {
        let failed = match report.failed_files {
            0 => String::new(),
            n => format!("; {} could not be removed", plural(n, "file")),
        };
        format!(
            "removed {} ({}) from {} ({checked}){failed}",
            plural(report.removed_files, "file"),
            human_bytes(report.removed_bytes),
            report.registry
        )
    });
    if report.kept_files > 0 {
        lines.push(format!("kept {} (see above why)", plural(report.kept_files, "file")));
    }
    lines.join("\n")
}
