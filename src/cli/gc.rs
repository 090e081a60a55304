//! `sheaf gc`: report (and with `--delete` remove) what interrupted writes
//! left in the registry's `.sheaf/` area; see [`sheaf::registry::GcOptions`].

use super::{codes, emit, human_bytes};
use sheaf::Error;
use sheaf::registry::{GcAction, GcOptions, GcReport, Registry};
use std::time::Duration;

/// Runs `sheaf gc`. Exit code 1 when a removal failed (each failure is named
/// on stderr and in the JSON report); the rest are still removed.
pub async fn run(registry: &Registry, opts: GcOptions, json: bool) -> Result<u8, Error> {
    let report = registry.gc(&opts).await?;
    if !json {
        for l in report.leftovers.iter().filter(|l| l.action == GcAction::Failed) {
            eprintln!("sheaf: error: {}", l.detail.as_deref().unwrap_or(&l.path));
        }
    }
    emit(json, &report, || human(&report));
    Ok(if report.ok() { codes::OK } else { codes::FAILURE })
}

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

fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
