//! `sheaf push`: a folder as a new revision.

use super::Report;
use super::args::PushArgs;
use super::text::human_bytes;
use serde::Serialize;
use sheaf::progress::Progress;
use sheaf::registry::PushReport;
use sheaf::{Registry, Result};
use std::fmt;

/// What a push did: the library's report, shown as the top hash alone so
/// that `HASH=$(sheaf push ...)` works.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Pushed(pub PushReport);

/// Pushes the folder of `args` to its package.
pub async fn run(registry: &Registry, args: &PushArgs, progress: &dyn Progress) -> Result<Pushed> {
    let package = args.package()?;
    let options = args.options()?;
    Ok(Pushed(registry.push(&package, &args.dir, &options, progress).await?))
}

impl fmt::Display for Pushed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        if r.unchanged {
            write!(f, "{}: unchanged, {} is already latest; nothing uploaded", r.package, r.top_hash)
        } else {
            f.write_str(&r.top_hash)
        }
    }
}

impl Report for Pushed {
    // The counts go to stderr: stdout holds only the hash.
    fn notes(&self) -> Vec<String> {
        let r = &self.0;
        if r.unchanged {
            return Vec::new();
        }
        let cloned = match r.cloned_files {
            0 => String::new(),
            n => format!(", {n} of them as copy-on-write clones"),
        };
        vec![format!(
            "pushed {} files ({}); uploaded {} new blobs ({}){cloned}",
            r.files,
            human_bytes(r.bytes),
            r.uploaded_files,
            human_bytes(r.uploaded_bytes)
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(unchanged: bool) -> Pushed {
        Pushed(PushReport {
            package: "t/one".into(),
            top_hash: "ab".repeat(32),
            files: 2,
            bytes: 18,
            uploaded_files: if unchanged { 0 } else { 1 },
            uploaded_bytes: if unchanged { 0 } else { 6 },
            cloned_files: 0,
            unchanged,
            previous: None,
        })
    }

    #[test]
    fn stdout_holds_only_the_hash() {
        let p = pushed(false);
        assert_eq!(p.to_string(), "ab".repeat(32));
        assert_eq!(p.notes(), ["pushed 2 files (18 B); uploaded 1 new blobs (6 B)"]);
        let same = pushed(true);
        assert_eq!(
            same.to_string(),
            format!("t/one: unchanged, {} is already latest; nothing uploaded", "ab".repeat(32))
        );
        assert!(same.notes().is_empty());
        assert!(serde_json::to_string(&same).unwrap().starts_with(r#"{"package":"t/one","top_hash":"#));
    }
}
