//! `sheaf get`: a dataset from a server into a local file.

use super::args::GetArgs;
use super::exit::{Failure, client_failure};
use super::outfile::Writer;
use super::{Report, codes};
use futures::TryStreamExt;
use sheaf_client::{Client, Error};
use std::fmt;
use std::fs::File;
use std::path::Path;

/// What `get` wrote.
#[derive(serde::Serialize)]
pub struct GetReport {
    /// Rows written.
    pub rows: u64,
    /// The revision read.
    pub top_hash: String,
    /// The URI with the revision pinned: reading it again reads the same rows.
    pub pinned_uri: String,
    /// The file written.
    pub out: String,
}

impl fmt::Display for GetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows of {} -> {}", self.rows, self.pinned_uri, self.out)
    }
}

impl Report for GetReport {}

/// Runs `sheaf get`. Its errors come from the server or the output file, so
/// they carry an exit code rather than a registry error.
pub async fn run(args: &GetArgs) -> Result<GetReport, Failure> {
    get(&args.remote.server, args.remote.token.clone(), &args.remote.tls(), &args.uri, &args.out, args.parallelism)
        .await
        .map_err(|(code, message)| Failure::Remote { code, message })
}

/// PEM files for TLS: CAs trusted besides the system's, and a client
/// certificate with its key for mutual TLS.
#[derive(Debug, Default, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// CA certificates trusted besides the system's roots.
    pub root_certs: Option<&'a Path>,
    /// Client certificate chain, for mutual TLS.
    pub client_cert: Option<&'a Path>,
    /// The client certificate's private key.
    pub client_key: Option<&'a Path>,
}

/// Connects to `server` with the token and TLS files given; errors carry
/// the exit code.
pub(super) async fn connect(server: &str, token: Option<String>, tls: &TlsFiles<'_>) -> Result<Client, (u8, String)> {
    let client_err = |e: Error| client_failure(&e, server);
    let read = |p: Option<&Path>| match p {
        Some(p) => std::fs::read(p).map(Some).map_err(|e| (codes::FAILURE, format!("{}: {e}", p.display()))),
        None => Ok(None),
    };
    let roots = read(tls.root_certs)?;
    let identity = (read(tls.client_cert)?, read(tls.client_key)?);
    let identity = match &identity {
        (Some(cert), Some(key)) => Some((cert.as_slice(), key.as_slice())),
        _ => None,
    };
    let mut client = Client::connect_tls(server, roots.as_deref(), identity).await.map_err(client_err)?;
    if let Some(t) = token {
        client = client.with_token(t);
    }
    Ok(client)
}

/// Reads `uri` from `server` into `out`, through a temporary file renamed
/// into place only when the whole dataset arrived.
async fn get(
    server: &str,
    token: Option<String>,
    tls: &TlsFiles<'_>,
    uri: &str,
    out: &Path,
    parallelism: usize,
) -> Result<GetReport, (u8, String)> {
    let client_err = |e: Error| client_failure(&e, server);
    let client = connect(server, token, tls).await?;
    let dataset = client.dataset(uri).await.map_err(client_err)?;
    let tmp = out.with_file_name(format!(
        ".{}.sheaf-partial-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let io = |e: std::io::Error| (codes::FAILURE, format!("{}: {e}", out.display()));
    let file = File::create(&tmp).map_err(io)?;
    let result = async {
        let mut writer = Writer::create(out, file, &dataset.schema).map_err(|m| (codes::INVALID, m))?;
        let mut rows = 0u64;
        let mut batches = client.read(&dataset, parallelism);
        while let Some(batch) = batches.try_next().await.map_err(client_err)? {
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(|m| (codes::FAILURE, m))?;
        }
        writer.finish().map_err(|m| (codes::FAILURE, m))?;
        std::fs::rename(&tmp, out).map_err(io)?;
        Ok(rows)
    }
    .await;
    match result {
        Ok(rows) => Ok(GetReport {
            rows,
            top_hash: dataset.top_hash,
            pinned_uri: dataset.pinned_uri,
            out: out.display().to_string(),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
