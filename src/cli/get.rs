//! `sheaf get`: a dataset from a server into a local file.

use super::codes;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use sheaf_client::{Client, Error};
use std::fs::File;
use std::path::Path;

/// The exit code for a client error.
pub fn exit_code(e: &Error) -> u8 {
    use tonic::Code;
    match e.code() {
        Some(Code::NotFound) => codes::NOT_FOUND,
        Some(Code::InvalidArgument) => codes::INVALID,
        Some(Code::PermissionDenied) => codes::FORBIDDEN,
        Some(Code::DataLoss) => codes::INTEGRITY,
        Some(Code::AlreadyExists) => codes::CONFLICT,
        _ => codes::FAILURE,
    }
}

/// What `get` wrote.
#[derive(serde::Serialize)]
pub struct GetReport {
    pub rows: u64,
    pub top_hash: String,
    pub pinned_uri: String,
    pub out: String,
}

enum Writer {
    Parquet(parquet::arrow::ArrowWriter<File>),
    IpcFile(arrow::ipc::writer::FileWriter<File>),
    IpcStream(arrow::ipc::writer::StreamWriter<File>),
    Csv(arrow::csv::Writer<File>),
}

impl Writer {
    fn create(path: &Path, file: File, schema: &SchemaRef) -> Result<Writer, String> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let e = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match ext.as_str() {
            "parquet" | "pq" => {
                Writer::Parquet(parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).map_err(|x| e(&x))?)
            }
            "arrow" | "feather" | "ipc" => {
                Writer::IpcFile(arrow::ipc::writer::FileWriter::try_new(file, schema).map_err(|x| e(&x))?)
            }
            "arrows" => Writer::IpcStream(arrow::ipc::writer::StreamWriter::try_new(file, schema).map_err(|x| e(&x))?),
            "csv" => Writer::Csv(arrow::csv::Writer::new(file)),
            other => {
                return Err(format!(
                    "unknown output format {other:?}: use .parquet, .arrow, .feather, .arrows or .csv"
                ));
            }
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        match self {
            Writer::Parquet(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::IpcFile(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::IpcStream(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::Csv(w) => w.write(batch).map_err(|e| e.to_string()),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self {
            Writer::Parquet(w) => w.close().map(|_| ()).map_err(|e| e.to_string()),
            Writer::IpcFile(mut w) => w.finish().map_err(|e| e.to_string()),
            Writer::IpcStream(mut w) => w.finish().map_err(|e| e.to_string()),
            Writer::Csv(_) => Ok(()),
        }
    }
}

/// PEM files for TLS: CAs trusted besides the system's, and a client
/// certificate with its key for mutual TLS.
#[derive(Debug, Default, Clone, Copy)]
pub struct TlsFiles<'a> {
    pub root_certs: Option<&'a Path>,
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
}

/// Reads `uri` from `server` into `out`, through a temporary file renamed
/// into place only when the whole dataset arrived.
pub async fn get(
    server: &str,
    token: Option<String>,
    tls: &TlsFiles<'_>,
    uri: &str,
    out: &Path,
    parallelism: usize,
) -> Result<GetReport, (u8, String)> {
    let client_err = |e: Error| (exit_code(&e), e.to_string());
    let read = |p: Option<&Path>| match p {
        Some(p) => std::fs::read(p).map(Some).map_err(|e| (super::codes::FAILURE, format!("{}: {e}", p.display()))),
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
