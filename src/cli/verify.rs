//! `sheaf verify`: does a folder hold exactly a revision's files?

use super::args::VerifyArgs;
use super::text::{short, shown, write_lines};
use super::{Report, codes};
use serde::Serialize;
use sheaf::progress::Progress;
use sheaf::registry::VerifyReport;
use sheaf::{PackageName, Registry, Result};
use std::fmt;
use std::path::PathBuf;

/// The library's report, and (for the text only) what was checked against
/// what. A failed check is an answer, not an error: the report is printed
/// and the exit code says FAILED.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Verified {
    report: VerifyReport,
    #[serde(skip)]
    package: PackageName,
    #[serde(skip)]
    dir: PathBuf,
}

/// Checks the folder of `args` against its revision.
pub async fn run(registry: &Registry, args: &VerifyArgs, progress: &dyn Progress) -> Result<Verified> {
    let r = args.reference()?;
    let report = registry.verify(&r, &args.dir, args.extra_files_ok, progress).await?;
    Ok(Verified { report, package: r.package, dir: args.dir.clone() })
}

impl fmt::Display for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let findings = (r.missing.iter().map(|k| format!("missing   {}", shown(k))))
            .chain(r.modified.iter().map(|k| format!("modified  {}", shown(k))))
            .chain(r.extra.iter().map(|k| format!("extra     {}", shown(k))))
            .chain(r.unverifiable.iter().map(|k| format!("unverifiable hash type (size checked) {}", shown(k))));
        let verdict = format!(
            "{}: {} against {}@{} ({} files checked)",
            self.dir.display(),
            if r.ok { "OK" } else { "FAILED" },
            self.package,
            short(&r.top_hash),
            r.checked
        );
        write_lines(f, findings.chain(std::iter::once(verdict)))
    }
}

impl Report for Verified {
    fn exit_code(&self) -> u8 {
        if self.report.ok { codes::OK } else { codes::INTEGRITY }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_listed_and_fail() {
        let report = VerifyReport {
            top_hash: "cd".repeat(32),
            checked: 2,
            missing: vec!["a.txt".into()],
            modified: vec!["b.txt".into()],
            extra: vec![],
            unverifiable: vec![],
            ok: false,
        };
        let v = Verified { report, package: "t/one".parse().unwrap(), dir: "d".into() };
        assert_eq!(
            v.to_string(),
            "missing   a.txt\nmodified  b.txt\nd: FAILED against t/one@cdcdcdcdcdcd (2 files checked)"
        );
        assert_eq!(v.exit_code(), codes::INTEGRITY);
        assert!(serde_json::to_string(&v).unwrap().starts_with(r#"{"top_hash":"#));
    }
}
