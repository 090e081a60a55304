//! Command-line flags, parsed in one place into plain values.

use super::get::TlsFiles;
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use sheaf::manifest::json;
use sheaf::registry::{GcOptions, PushOptions};
use sheaf::{Error, PackageName, PackageRef, Result, Revision};
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

/// The subcommands. Each holds its flags as an `*Args` struct, which turns
/// them into the values the library takes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hash a folder and push it as a new revision; prints the top hash.
    Push(PushArgs),
    /// List packages and their latest revision.
    List,
    /// List a package's revisions, newest first.
    Log(LogArgs),
    /// List a revision's entries: key, size, hash, metadata.
    Browse(BrowseArgs),
    /// Download a revision (or a part of it), verifying every hash.
    Install(InstallArgs),
    /// Check that a folder holds exactly a revision's files.
    Verify(VerifyArgs),
    /// Show what changed between two revisions.
    Diff(DiffArgs),
    /// Name a revision: OWNER/NAME@HASH TAG.
    Tag(TagArgs),
    /// Remove a package's pointers (or one revision's); data stays.
    Delete(DeleteArgs),
    /// Remove what interrupted writes left in the registry's .sheaf/ area
    /// (partial uploads, staging files) and, with --unreferenced, blobs no
    /// manifest references. Only lists them unless --delete is given.
    Gc(GcArgs),
    /// Push the demo package (demo/weather) into the registry and show it.
    Demo,
    /// Serve the registry's tables over Arrow Flight (gRPC).
    Serve(Box<ServeArgs>),
    /// Credentials for `sheaf serve --auth`.
    Auth(AuthArgs),
    /// Read a dataset from a Sheaf server into a file (Parquet, Arrow IPC or
    /// CSV, by the extension of --out).
    Get(GetArgs),
    /// Print the sha2-256-chunked hash of files, as quilt3 computes it.
    Hash(HashArgs),
    /// Show, check, prune or clear the local cache of pinned reads that the
    /// Python client fills (SHEAF_CACHE_DIR, default ~/.cache/sheaf-client).
    Cache(CacheArgs),
    /// Publish a local table file (Parquet, Arrow IPC or CSV) through a Sheaf
    /// server as a new revision: FILE sheaf://OWNER/NAME/PATH.
    Put(PutArgs),
    /// Show where a revision's data came from: its lineage inputs, and
    /// theirs, as a tree.
    Lineage(LineageArgs),
}

/// Flags of `sheaf push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// OWNER/NAME
    pub package: String,
    /// Folder to push.
    pub dir: PathBuf,
    /// Commit message.
    #[arg(long, short)]
    pub message: Option<String>,
    /// Package metadata, a JSON object (or `null`).
    #[arg(long)]
    pub meta: Option<String>,
    /// Do not profile Parquet and CSV files into their entries' metadata
    /// (the folder then gets exactly the top hash quilt3 gives it; quilt3's
    /// `set_dir` without metadata writes `user_meta: null`, as `--meta null`
    /// does).
    #[arg(long)]
    pub no_profile: bool,
}

/// Flags of `sheaf log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// OWNER/NAME
    pub package: String,
}

/// Flags of `sheaf browse`.
#[derive(Debug, Args)]
pub struct BrowseArgs {
    /// OWNER/NAME[@HASH_PREFIX|:TAG]
    pub reference: String,
    /// Only entries under this folder.
    pub prefix: Option<String>,
}

/// Flags of `sheaf install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// OWNER/NAME[/SUBPATH][@HASH_PREFIX|:TAG]
    pub reference: String,
    /// Folder to install into.
    #[arg(long)]
    pub dest: PathBuf,
}

/// Flags of `sheaf verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// OWNER/NAME[/SUBPATH][@HASH_PREFIX|:TAG]
    pub reference: String,
    /// Folder to check.
    #[arg(long)]
    pub dir: PathBuf,
    /// Do not fail on files that are not in the revision.
    #[arg(long)]
    pub extra_files_ok: bool,
}

/// Flags of `sheaf diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// OWNER/NAME[@HASH_PREFIX|:TAG]
    pub from: String,
    /// OWNER/NAME[@HASH_PREFIX|:TAG]
    pub to: String,
    /// Also compare the data profiles of the tables in both revisions
    /// (Parquet and CSV files, folder tables): schema changes and, per
    /// column, drift (population stability index; above 0.2 is flagged).
    #[arg(long)]
    pub profile: bool,
    /// Write an HTML report of the profile comparison to FILE, with a pair
    /// of histograms per drifted column (implies --profile).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Flags of `sheaf tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// OWNER/NAME[@HASH_PREFIX|:TAG]
    pub reference: String,
    /// The tag to set.
    pub tag: String,
    /// Move the tag if it already points elsewhere.
    #[arg(long)]
    pub force: bool,
}

/// Flags of `sheaf delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// OWNER/NAME[@HASH_PREFIX]
    pub reference: String,
}

/// Flags of `sheaf cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The cache folder (default: $SHEAF_CACHE_DIR, else
    /// $XDG_CACHE_HOME/sheaf-client, else ~/.cache/sheaf-client).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub action: Option<CacheAction>,
}

/// What `sheaf cache` does (default: info).
#[derive(Debug, Clone, Subcommand)]
pub enum CacheAction {
    /// Entries and bytes in the cache.
    Info,
    /// Every entry, least recently used first.
    List,
    /// Remove least recently used entries until at most --max-bytes remain.
    Prune {
        /// The bound, in bytes (suffixes K, M, G, T: powers of 1024).
        #[arg(long, value_parser = parse_bytes)]
        max_bytes: u64,
    },
    /// Remove every entry.
    Clear,
    /// Check every entry (size, trailer, Arrow IPC, CRC-32); with --delete,
    /// remove the damaged ones (the client re-fetches them).
    Verify {
        #[arg(long)]
        delete: bool,
    },
}

/// `123`, `10K`, `512M`, `2G`, `1T` (powers of 1024; a trailing `B`/`iB` is allowed).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("not a size in bytes: {text:?} (examples: 1048576, 512M, 2G)"))
}

/// Flags of `sheaf gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove what is found (default: a dry run that only lists it).
    #[arg(long)]
    pub delete: bool,
    /// Grace period: only files last modified longer ago than this are
    /// garbage, so a write that is still running is not hurt (e.g. 1h,
    /// 30m, 2days; 0s for everything).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub older_than: std::time::Duration,
    /// Also blobs in .sheaf/blobs that no manifest of the registry
    /// (any revision of any package) references. Only while nothing
    /// writes to the registry: a running push may be about to reference
    /// such a blob.
    #[arg(long)]
    pub unreferenced: bool,
}

/// Flags of `sheaf serve`. Every flag also has a key in the `--config`
/// file (its long name) and an environment variable (`SHEAF_` and its long
/// name in upper snake case); a flag wins over the environment, which wins
/// over the file ([`super::config`]).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of settings: keys are the long names of these flags (and
    /// `registry`), e.g. `cache-mib = 512`, `peer = ["grpc://b:50051"]`.
    /// Flags and environment variables win over it.
    #[arg(long, env = "SHEAF_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port (the bound address
    /// is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:50051", env = "SHEAF_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// This server's address as clients reach it (grpc://host:port or
    /// grpc+tls://host:port), written into endpoints. With --peer or
    /// --peer-dns, every endpoint lists all healthy replicas. Default:
    /// none, meaning "the server you asked".
    #[arg(long, env = "SHEAF_ADVERTISE", value_delimiter = ',')]
    pub advertise: Vec<String>,
    /// Another replica serving the same registry (grpc://host:port);
    /// repeat for several. Replicas that fail the gRPC health check are
    /// left out of endpoints until they pass again.
    #[arg(long, env = "SHEAF_PEER", value_delimiter = ',')]
    pub peer: Vec<String>,
    /// HOST:PORT whose addresses (re-resolved every few seconds) are the
    /// replicas, e.g. a Kubernetes headless service.
    #[arg(long, env = "SHEAF_PEER_DNS")]
    pub peer_dns: Option<String>,
    /// How an endpoint's replicas are ordered: `rendezvous` (by a hash of
    /// its ticket, so each replica caches its own share of the data) or
    /// `round-robin`.
    #[arg(long, env = "SHEAF_PLACEMENT", default_value = "rendezvous", value_parser = ["rendezvous", "round-robin"])]
    pub placement: String,
    /// A location outside the registry that manifests' physical keys may
    /// point into (path or URL); repeat for several. The registry itself
    /// is always allowed; nothing else is read.
    #[arg(long, env = "SHEAF_ALLOW", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Push the demo package first, so there is something to read.
    #[arg(long, env = "SHEAF_DEMO")]
    pub demo: bool,
    /// Serve Prometheus metrics (/metrics), liveness (/healthz) and
    /// readiness (/readyz) over plain HTTP on this address.
    #[arg(long, env = "SHEAF_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Requests handled at once; more are refused with UNAVAILABLE.
    #[arg(long, default_value_t = 256, env = "SHEAF_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: usize,
    /// MiB of memory for encoded DoGet streams, so a repeated read of a
    /// ticket is sent from memory (pinned revisions never change); 0 turns
    /// the cache off.
    #[arg(long, default_value_t = 1024, env = "SHEAF_CACHE_MIB")]
    pub cache_mib: u64,
    /// Keep a ticket's stream from its Nth read on (1: from the first). A
    /// table read once then neither evicts what is read again nor pays for
    /// being kept (a first read that is kept costs about a fifth more).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..), env = "SHEAF_CACHE_MIN_READS")]
    pub cache_min_reads: u32,
    /// DoGet streams reading storage at once (more wait their turn);
    /// bounds memory under many clients. Cached reads do not count.
    #[arg(long, default_value_t = 8, env = "SHEAF_MAX_CONCURRENT_SCANS")]
    pub max_concurrent_scans: usize,
    /// DoGet streams reading storage that may be open at once (producing
    /// or waiting for their client; more wait for a turn): bounds the
    /// memory of uncached reads. At least --max-concurrent-scans. (16: at
    /// 64 simultaneous first reads, benchmark scenario 5 peaks at 1.56 GB
    /// with 16 and 2.2-2.5 GB with 32, at the same throughput.)
    #[arg(long, default_value_t = 16, env = "SHEAF_MAX_OPEN_SCANS")]
    pub max_open_scans: usize,
    /// A DoGet whose client takes no data for this long is ended, and
    /// its scan's memory released (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, env = "SHEAF_STALL_TIMEOUT")]
    pub stall_timeout: std::time::Duration,
    /// Time one DoGet stream may spend producing batches (not counting
    /// time waiting for its client); past it the stream fails with
    /// DEADLINE_EXCEEDED.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration, env = "SHEAF_QUERY_TIMEOUT")]
    pub query_timeout: std::time::Duration,
    /// MiB of memory one SQL query may hold; past it sorts, joins and
    /// aggregates spill to disk, or the query fails with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 2048, env = "SHEAF_SQL_MEMORY_MIB")]
    pub sql_memory_mib: usize,
    /// Time one SQL query (one result endpoint) may run, waiting for a turn
    /// included; past it the query fails with DEADLINE_EXCEEDED (e.g. 30s, 5m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, env = "SHEAF_SQL_TIMEOUT")]
    pub sql_timeout: std::time::Duration,
    /// SQL queries running at once; more wait for a turn.
    #[arg(long, default_value_t = 8, env = "SHEAF_SQL_MAX_QUERIES")]
    pub sql_max_queries: usize,
    /// After SIGTERM or Ctrl-C: how long the server stays ready-false but
    /// still accepts requests (so load balancers and peers stop sending
    /// new ones) before it stops accepting.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, env = "SHEAF_DRAIN_DELAY")]
    pub drain_delay: std::time::Duration,
    /// After the drain delay, how long running requests may take to
    /// finish before the server stops anyway.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "SHEAF_SHUTDOWN_GRACE")]
    pub shutdown_grace: std::time::Duration,
    /// Log as JSON lines (default: human-readable). Level from RUST_LOG.
    #[arg(long, env = "SHEAF_LOG_JSON")]
    pub log_json: bool,
    /// Export a trace span per RPC to this OpenTelemetry collector over
    /// OTLP/gRPC (http://host:4317, or https:// with the system's roots).
    /// The OTEL_* variables (service name, headers, sampler, batching)
    /// apply. Default: no export.
    #[arg(long, env = "SHEAF_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Who may read and write what: a TOML file of users, API tokens and
    /// grants (README, "Authentication"). Reloaded on SIGHUP.
    #[arg(long, env = "SHEAF_AUTH")]
    pub auth: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, clients connect with
    /// grpc+tls://.
    #[arg(long, requires = "tls_key", env = "SHEAF_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert", env = "SHEAF_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): clients must present a certificate signed
    /// by one of them (mutual TLS).
    #[arg(long, requires = "tls_cert", env = "SHEAF_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// CA certificates (PEM) trusted when checking grpc+tls:// peers'
    /// health, besides the system's roots.
    #[arg(long, env = "SHEAF_PEER_CA")]
    pub peer_ca: Option<PathBuf>,
    /// Serve without --auth on a non-loopback address: anyone who can
    /// reach the port reads and writes every package.
    #[arg(long, env = "SHEAF_INSECURE_ANONYMOUS")]
    pub insecure_anonymous: bool,
}

/// Flags of `sheaf auth`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// Flags of the commands that talk to a server (`get`, `put`).
#[derive(Debug, Args)]
pub struct Remote {
    /// Server URL.
    #[arg(long, default_value = "grpc://127.0.0.1:50051", env = "SHEAF_SERVER")]
    pub server: String,
    /// Bearer token sent with every call.
    #[arg(long, env = "SHEAF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificates (PEM) trusted for grpc+tls:// servers, besides the
    /// system's roots.
    #[arg(long)]
    pub tls_root_certs: Option<PathBuf>,
    /// Client certificate chain (PEM) for servers that require mutual TLS.
    #[arg(long, requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-client-cert.
    #[arg(long, requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

/// Flags of `sheaf get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// sheaf://OWNER/NAME[@HASH|:TAG]/PATH[?columns=..&filter=..&...]
    pub uri: String,
    /// Output file: .parquet, .arrow/.feather/.ipc, .arrows or .csv.
    #[arg(long)]
    pub out: PathBuf,
    /// The server and how to reach it.
    #[command(flatten)]
    pub remote: Remote,
    /// Endpoints read at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
}

/// Flags of `sheaf put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The table file: .parquet, .arrow/.feather/.ipc, .arrows or .csv (with a
    /// header row; types inferred).
    pub file: PathBuf,
    /// Where: sheaf://OWNER/NAME/PATH (a .parquet file, or a folder to which
    /// the table is added as a part).
    pub uri: String,
    /// The server and how to reach it.
    #[command(flatten)]
    pub remote: Remote,
    /// Commit message.
    #[arg(long, short)]
    pub message: Option<String>,
    /// Package metadata of the new revision, a JSON object (default: kept).
    #[arg(long)]
    pub meta: Option<String>,
    /// What to do when the table exists: append (a folder gains a part; a
    /// file is replaced), overwrite, or error.
    #[arg(long, default_value = "append", value_parser = ["append", "overwrite", "error"])]
    pub mode: String,
    /// A dataset the table was derived from (repeatable), recorded as
    /// lineage: OWNER/NAME[@HASH|:TAG][/PATH] or a sheaf:// URI.
    #[arg(long = "derived-from")]
    pub derived_from: Vec<String>,
}

/// Flags of `sheaf lineage`.
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// OWNER/NAME[@HASH_PREFIX|:TAG]
    pub reference: String,
    /// Levels of inputs to follow.
    #[arg(long, default_value_t = 16)]
    pub depth: u32,
}

/// Flags of `sheaf hash`.
#[derive(Debug, Args)]
pub struct HashArgs {
    /// Files to hash.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
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

// Flags into library values. Errors are the library's own (`Error::Invalid`
// and the parsers'), not clap's, so that messages and exit codes stay those
// of the registry, in JSON too.

impl Cli {
    /// The registry location: `--registry`, `SHEAF_REGISTRY`, or a local
    /// folder, so nothing needs configuring.
    pub fn registry_spec(&self) -> String {
        self.registry.clone().unwrap_or_else(|| {
            let data = std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
                .unwrap_or_else(|| PathBuf::from("."));
            data.join("sheaf/registry").display().to_string()
        })
    }
}

impl PushArgs {
    /// The package to push to.
    pub fn package(&self) -> Result<PackageName> {
        self.package.parse()
    }

    /// Message and metadata. `--meta` is read as quilt3 reads JSON (NaN and
    /// Infinity allowed) and must be an object, or `null`: it becomes the
    /// header's `user_meta` (`null` as quilt3's `set_dir` writes it when given
    /// no metadata; without `--meta` the header has no `user_meta`).
    pub fn options(&self) -> Result<PushOptions> {
        let (user_meta, exact_user_meta) = match self.meta.as_deref() {
            Some(text) if text.trim() == "null" => (None, Some(json::Exact::Null)),
            Some(text) => {
                let (values, exact) = parse_meta(text)?;
                (Some(values), exact)
            }
            None => (None, None),
        };
        Ok(PushOptions { message: self.message.clone(), user_meta, exact_user_meta, profile: !self.no_profile })
    }
}

/// `--meta` as values, and as written when it holds integers beyond 64 bits
/// (which the values hold as the nearest float).
fn parse_meta(text: &str) -> Result<(Map<String, Value>, Option<json::Exact>)> {
    let not_json = |e: String| Error::Invalid(format!("--meta is not valid JSON: {e}"));
    let (value, exact) = match json::parse_like_python(text) {
        Ok(value) => (value, None),
        Err(e) => {
            let value: Value = serde_json::from_str(text).map_err(|_| not_json(e.clone()))?;
            (value, Some(json::parse_exact(text).map_err(|_| not_json(e))?))
        }
    };
    match value {
        Value::Object(m) => Ok((m, exact)),
        _ => Err(Error::Invalid(format!("--meta must be a JSON object, got {text}"))),
    }
}

impl LogArgs {
    /// The package whose revisions to list.
    pub fn package(&self) -> Result<PackageName> {
        self.package.parse()
    }
}

impl BrowseArgs {
    /// The revision and the folder to show: the PREFIX argument, else the
    /// reference's sub-path, else everything (`""`).
    pub fn target(&self) -> Result<(PackageRef, String)> {
        let r: PackageRef = self.reference.parse()?;
        let prefix = self.prefix.clone().or(r.subpath.clone()).unwrap_or_default();
        Ok((r, prefix))
    }
}

impl InstallArgs {
    /// The revision (or part of it) to install.
    pub fn reference(&self) -> Result<PackageRef> {
        self.reference.parse()
    }
}

impl VerifyArgs {
    /// The revision (or part of it) to check against.
    pub fn reference(&self) -> Result<PackageRef> {
        self.reference.parse()
    }
}

impl DiffArgs {
    /// The two revisions, in order.
    pub fn references(&self) -> Result<(PackageRef, PackageRef)> {
        Ok((self.from.parse()?, self.to.parse()?))
    }
}

impl TagArgs {
    /// The revision to name.
    pub fn reference(&self) -> Result<PackageRef> {
        self.reference.parse()
    }
}

impl DeleteArgs {
    /// The package, and the revision's hash prefix when one was given. A tag
    /// or a sub-path is refused: deleting "whatever v1 points at" or part of
    /// a revision is too easy to get wrong.
    pub fn target(&self) -> Result<PackageRef> {
        let r: PackageRef = self.reference.parse()?;
        if matches!(r.revision, Revision::Tag(_)) || r.subpath.is_some() {
            return Err(Error::Invalid(format!("delete takes OWNER/NAME or OWNER/NAME@HASH, not {}", self.reference)));
        }
        Ok(r)
    }
}

impl GcArgs {
    /// What to look for and whether to remove it.
    pub fn options(&self) -> GcOptions {
        GcOptions { older_than: self.older_than, unreferenced: self.unreferenced, delete: self.delete }
    }
}

impl Remote {
    /// The PEM files given for TLS.
    pub fn tls(&self) -> TlsFiles<'_> {
        TlsFiles {
            root_certs: self.tls_root_certs.as_deref(),
            client_cert: self.tls_client_cert.as_deref(),
            client_key: self.tls_client_key.as_deref(),
        }
    }
}

impl LineageArgs {
    /// The revision asked about.
    pub fn reference(&self) -> Result<PackageRef> {
        self.reference.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("sheaf").chain(args.iter().copied())).expect("parses").command
    }

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn delete_takes_a_package_or_a_hash_only() {
        for bad in ["t/one:v1", "t/one/sub"] {
            let Command::Delete(a) = command(&["delete", bad]) else { panic!() };
            let e = a.target().unwrap_err();
            assert_eq!(e.to_string(), format!("delete takes OWNER/NAME or OWNER/NAME@HASH, not {bad}"));
        }
        let Command::Cache(a) = command(&["cache", "prune", "--max-bytes", "2G"]) else { panic!() };
        assert!(matches!(a.action, Some(CacheAction::Prune { max_bytes: 2_147_483_648 })));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert!(parse_bytes("lots").is_err());
        let Command::Delete(a) = command(&["delete", "t/one@abc123"]) else { panic!() };
        assert!(matches!(a.target().unwrap().revision, Revision::Hash(_)));
    }

    #[test]
    fn meta_must_be_a_json_object() {
        let options = |meta: &str| {
            let Command::Push(a) = command(&["push", "t/one", ".", "--meta", meta]) else { panic!() };
            a.options()
        };
        let m = options(r#"{"a": 1, "b": [2]}"#).unwrap().user_meta.unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(options("[1]").unwrap_err().to_string(), "--meta must be a JSON object, got [1]");
        assert!(options("{bad").unwrap_err().to_string().starts_with("--meta is not valid JSON: "));
        let big = options(r#"{"n": 1180591620717411303424, "z": -0}"#).unwrap();
        assert!(big.exact_user_meta.is_some() && big.user_meta.unwrap()["n"].is_f64());
        assert!(options(r#"{"n": 1}"#).unwrap().exact_user_meta.is_none());
    }

    #[test]
    fn browse_prefix_wins_over_the_sub_path() {
        let target = |args: &[&str]| {
            let Command::Browse(a) = command(args) else { panic!() };
            a.target().unwrap().1
        };
        assert_eq!(target(&["browse", "t/one"]), "");
        assert_eq!(target(&["browse", "t/one/sub"]), "sub");
        assert_eq!(target(&["browse", "t/one/sub", "other"]), "other");
    }
}
