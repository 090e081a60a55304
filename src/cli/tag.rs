//! `sheaf tag`: name a revision.

use super::Report;
use super::args::TagArgs;
use serde::Serialize;
use sheaf::{Registry, Result};
use std::fmt;

/// The tag set and the revision it names.
#[derive(Serialize)]
pub struct Tagged {
    package: String,
    tag: String,
    top_hash: String,
}

/// Points the tag of `args` at its revision (resolved first, so a tag can
/// name what another tag or a hash prefix names).
pub async fn run(registry: &Registry, args: &TagArgs) -> Result<Tagged> {
    let r = args.reference()?;
    let top_hash = registry.resolve(&r.package, &r.revision).await?;
    registry.tag(&r.package, &top_hash, &args.tag, args.force).await?;
    Ok(Tagged { package: r.package.to_string(), tag: args.tag.clone(), top_hash })
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} -> {}", self.package, self.tag, self.top_hash)
    }
}

impl Report for Tagged {}
