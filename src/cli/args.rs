//! Command-line flags, parsed in one place into plain values.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Sheaf: versioned data packages as pinned dependencies.
#[derive(Debug, Parser)]
#[command(name = "sheaf", version, about, long_about = None)]
pub struct Cli {
    /// Registry location: a path, file://, memory://, s3://bucket[/prefix],
    /// gs://bucket[/prefix] or az://container[/prefix]. Defaults to a local
    /// folder ($XDG_DATA_HOME/sheaf/registry or ~/.local/share/sheaf/registry).
    #[arg(long, global = true, env = "SHEAF_REGISTRY")]
    pub registry: Option<String>,

    /// Print machine-readable JSON on stdout (errors as JSON on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hash a folder and push it as a new revision; prints the top hash.
    Push {
        /// OWNER/NAME
        package: String,
        /// Folder to push.
        dir: PathBuf,
        /// Commit message.
        #[arg(long, short)]
        message: Option<String>,
        /// Package metadata, a JSON object.
        #[arg(long)]
        meta: Option<String>,
    },
    /// List packages and their latest revision.
    List,
    /// List a package's revisions, newest first.
    Log {
        /// OWNER/NAME
        package: String,
    },
    /// List a revision's entries: key, size, hash, metadata.
    Browse {
        /// OWNER/NAME[@HASH_PREFIX|:TAG]
        reference: String,
        /// Only entries under this folder.
        prefix: Option<String>,
    },
    /// Download a revision (or a part of it), verifying every hash.
    Install {
        /// OWNER/NAME[/SUBPATH][@HASH_PREFIX|:TAG]
        reference: String,
        /// Folder to install into.
        #[arg(long)]
        dest: PathBuf,
    },
    /// Check that a folder holds exactly a revision's files.
    Verify {
        /// OWNER/NAME[/SUBPATH][@HASH_PREFIX|:TAG]
        reference: String,
        /// Folder to check.
        #[arg(long)]
        dir: PathBuf,
        /// Do not fail on files that are not in the revision.
        #[arg(long)]
        extra_files_ok: bool,
    },
    /// Show what changed between two revisions.
    Diff {
        /// OWNER/NAME[@HASH_PREFIX|:TAG]
        from: String,
        /// OWNER/NAME[@HASH_PREFIX|:TAG]
        to: String,
    },
    /// Name a revision: OWNER/NAME@HASH TAG.
    Tag {
        /// OWNER/NAME[@HASH_PREFIX|:TAG]
        reference: String,
        /// The tag to set.
        tag: String,
        /// Move the tag if it already points elsewhere.
        #[arg(long)]
        force: bool,
    },
    /// Remove a package's pointers (or one revision's); data stays.
    Delete {
        /// OWNER/NAME[@HASH_PREFIX]
        reference: String,
    },
    /// Push the demo package (demo/weather) into the registry and show it.
    Demo,
    /// Print the sha2-256-chunked hash of files, as quilt3 computes it.
    Hash {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
