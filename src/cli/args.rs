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
    /// Remove what interrupted writes left in the registry's .sheaf/ area
    /// (partial uploads, staging files) and, with --unreferenced, blobs no
    /// manifest references. Only lists them unless --delete is given.
    Gc {
        /// Remove what is found (default: a dry run that only lists it).
        #[arg(long)]
        delete: bool,
        /// Grace period: only files last modified longer ago than this are
        /// garbage, so a write that is still running is not hurt (e.g. 1h,
        /// 30m, 2days; 0s for everything).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// Also blobs in .sheaf/blobs that no manifest of the registry
        /// (any revision of any package) references. Only while nothing
        /// writes to the registry: a running push may be about to reference
        /// such a blob.
        #[arg(long)]
        unreferenced: bool,
    },
    /// Push the demo package (demo/weather) into the registry and show it.
    Demo,
    /// Serve the registry's tables over Arrow Flight (gRPC).
    Serve {
        /// Address to listen on; port 0 picks a free port (the bound address
        /// is printed on stdout).
        #[arg(long, default_value = "127.0.0.1:50051", env = "SHEAF_LISTEN")]
        listen: std::net::SocketAddr,
        /// Location (grpc://host:port) written into endpoints; repeat to
        /// spread endpoints across several servers. Default: none, meaning
        /// "the server you asked".
        #[arg(long)]
        advertise: Vec<String>,
        /// A location outside the registry that manifests' physical keys may
        /// point into (path or URL); repeat for several. The registry itself
        /// is always allowed; nothing else is read.
        #[arg(long)]
        allow: Vec<String>,
        /// Push the demo package first, so there is something to read.
        #[arg(long)]
        demo: bool,
        /// Requests handled at once; more are refused with UNAVAILABLE.
        #[arg(long, default_value_t = 256)]
        max_concurrent_requests: usize,
        /// MiB of memory for encoded DoGet streams, so a repeated read of a
        /// ticket is sent from memory (pinned revisions never change); 0 turns
        /// the cache off.
        #[arg(long, default_value_t = 1024, env = "SHEAF_CACHE_MIB")]
        cache_mib: u64,
        /// DoGet streams reading storage at once (more wait their turn);
        /// bounds memory under many clients. Cached reads do not count.
        #[arg(long, default_value_t = 8)]
        max_concurrent_scans: usize,
        /// DoGet streams reading storage that may be open at once (producing
        /// or waiting for their client; more wait for a turn): bounds the
        /// memory of uncached reads. At least --max-concurrent-scans.
        #[arg(long, default_value_t = 32)]
        max_open_scans: usize,
        /// A DoGet whose client takes no data for this long is ended, and
        /// its scan's memory released (e.g. 60s, 5m).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        stall_timeout: std::time::Duration,
        /// Time one DoGet stream may spend producing batches (not counting
        /// time waiting for its client); past it the stream fails with
        /// DEADLINE_EXCEEDED.
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        query_timeout: std::time::Duration,
        /// After SIGTERM or Ctrl-C, how long running requests may take to
        /// finish before the server stops anyway.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        shutdown_grace: std::time::Duration,
        /// Log as JSON lines (default: human-readable). Level from RUST_LOG.
        #[arg(long)]
        log_json: bool,
        /// Who may read and write what: a TOML file of users, API tokens and
        /// grants (README, "Authentication"). Reloaded on SIGHUP.
        #[arg(long, env = "SHEAF_AUTH")]
        auth: Option<PathBuf>,
        /// TLS certificate chain (PEM); with --tls-key, clients connect with
        /// grpc+tls://.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// CA certificates (PEM): clients must present a certificate signed
        /// by one of them (mutual TLS).
        #[arg(long, requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
        /// Serve without --auth on a non-loopback address: anyone who can
        /// reach the port reads and writes every package.
        #[arg(long)]
        insecure_anonymous: bool,
    },
    /// Credentials for `sheaf serve --auth`.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Read a dataset from a Sheaf server into a file (Parquet, Arrow IPC or
    /// CSV, by the extension of --out).
    Get {
        /// sheaf://OWNER/NAME[@HASH|:TAG]/PATH[?columns=..&filter=..&...]
        uri: String,
        /// Server URL.
        #[arg(long, default_value = "grpc://127.0.0.1:50051", env = "SHEAF_SERVER")]
        server: String,
        /// Output file: .parquet, .arrow/.feather/.ipc, .arrows or .csv.
        #[arg(long)]
        out: PathBuf,
        /// Bearer token sent with every call.
        #[arg(long, env = "SHEAF_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// CA certificates (PEM) trusted for grpc+tls:// servers, besides the
        /// system's roots.
        #[arg(long)]
        tls_root_certs: Option<PathBuf>,
        /// Client certificate chain (PEM) for servers that require mutual TLS.
        #[arg(long, requires = "tls_client_key")]
        tls_client_cert: Option<PathBuf>,
        /// Private key (PEM) of --tls-client-cert.
        #[arg(long, requires = "tls_client_cert")]
        tls_client_key: Option<PathBuf>,
        /// Endpoints read at once.
        #[arg(long, default_value_t = 4)]
        parallelism: usize,
    },
    /// Print the sha2-256-chunked hash of files, as quilt3 computes it.
    Hash {
        /// Files to hash.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `sheaf auth` commands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Read a password from standard input and print its argon2id hash (a
    /// PHC string for a `[[user]]` entry's `password`).
    HashPassword,
    /// Print a fresh random API token (once: only its hash is kept) and the
    /// `[[token]]` entry that admits it.
    NewToken {
        /// The token's name in grants and logs.
        name: String,
    },
}
