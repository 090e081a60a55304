//! `sheaf put`: a local table file published through a server as a new
//! revision (the Rust client's [`sheaf_client::Client::write`]).

use super::args::PutArgs;
use super::exit::{Failure, client_failure};
use super::{Report, codes};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use sheaf_client::proto::{self, WriteMode};
use sheaf_client::{Error, WriteOptions};
use std::fmt;
use std::fs::File;
use std::path::Path;

/// What `put` committed.
#[derive(serde::Serialize)]
pub struct PutReport {
    /// `owner/name`.
    pub package: String,
    /// The new revision.
    pub top_hash: String,
    /// The revision it was built on.
    pub previous: Option<String>,
    /// The table written, pinned.
    pub uris: Vec<String>,
    /// Rows written.
    pub rows: u64,
    /// Bytes of Parquet stored.
    pub bytes: u64,
}

impl fmt::Display for PutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows -> {}", self.rows, self.uris.join(", "))
    }
}

impl Report for PutReport {}

/// A table file's batches, read on a blocking thread and streamed.
type Batches = (SchemaRef, Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>);

/// Opens `path` by its extension.
fn open(path: &Path) -> Result<Batches, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = |e: &dyn fmt::Display| format!("{}: {e}", path.display());
    Ok(match ext.as_str() {
        "parquet" | "pq" => {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| bad(&e))?
                .build()
                .map_err(|e| bad(&e))?;
            let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
            let shown = path.display().to_string();
            (schema, Box::new(reader.map(move |b| b.map_err(|e| format!("{shown}: {e}")))))
        }
        "arrow" | "feather" | "ipc" => {
            let reader = arrow::ipc::reader::FileReader::try_new(file, None).map_err(|e| bad(&e))?;
            let shown = path.display().to_string();
            (reader.schema(), Box::new(reader.map(move |b| b.map_err(|e| format!("{shown}: {e}")))))
        }
        "arrows" => {
            let reader = arrow::ipc::reader::StreamReader::try_new(file, None).map_err(|e| bad(&e))?;
            let shown = path.display().to_string();
            (reader.schema(), Box::new(reader.map(move |b| b.map_err(|e| format!("{shown}: {e}")))))
        }
        "csv" => {
            use std::io::Seek;
            let mut file = file;
            let format = arrow::csv::reader::Format::default().with_header(true);
            let (schema, _) = format.infer_schema(&mut file, Some(10_000)).map_err(|e| bad(&e))?;
            file.rewind().map_err(|e| bad(&e))?;
            let schema = std::sync::Arc::new(schema);
            let reader =
                arrow::csv::ReaderBuilder::new(schema.clone()).with_format(format).build(file).map_err(|e| bad(&e))?;
            let shown = path.display().to_string();
            (schema, Box::new(reader.map(move |b| b.map_err(|e| format!("{shown}: {e}")))))
        }
        other => {
            return Err(format!(
                "{}: unknown table format {other:?}: use .parquet, .arrow, .feather, .arrows or .csv",
                path.display()
            ));
        }
    })
}

/// `owner/name/path` of a write target, read as every dataset URI is
/// (`sheaf://` optional, the path percent-decoded: `a%20b.parquet` is
/// `a b.parquet`, the table a read of that URI finds); a revision or a
/// query is refused, naming the URI (a write lands on `latest`; its message
/// and metadata are options).
fn write_target(text: &str) -> Result<String, String> {
    let uri = sheaf::query::DatasetUri::parse(text).map_err(|e| e.to_string())?;
    let bad = |why: &str| format!("{text:?} is not a write target: {why}");
    if uri.revision != sheaf::registry::Revision::Latest {
        return Err(bad("a write lands on the latest revision (drop the @hash or :tag)"));
    }
    if text.contains('?') || uri.query != sheaf::query::QuerySpec::default() {
        return Err(bad("a write takes no query (?...): use --message, --meta and --mode"));
    }
    if uri.path.is_empty() {
        return Err(bad("name the table's path in the package (owner/name/path)"));
    }
    Ok(format!("{}/{}", uri.package, uri.path))
}

/// Runs `sheaf put`.
pub async fn run(args: &PutArgs) -> Result<PutReport, Failure> {
    put(args).await.map_err(|(code, message)| Failure::Remote { code, message })
}

async fn put(args: &PutArgs) -> Result<PutReport, (u8, String)> {
    let client_err = |e: Error| client_failure(&e, &args.remote.server);
    let invalid = |m: String| (codes::INVALID, m);
    // Read as Python reads it: an integer beyond 64 bits is refused here,
    // not rounded (as the server refuses it).
    let metadata = match args.meta.as_deref().map(sheaf::manifest::json::parse_like_python) {
        None => None,
        Some(Ok(serde_json::Value::Object(m))) => Some(m),
        Some(Err(e)) => return Err(invalid(format!("--meta: {e}"))),
        Some(Ok(_)) => return Err(invalid("--meta must be a JSON object".into())),
    };
    let target = write_target(&args.uri).map_err(invalid)?;
    let (schema, batches) = open(&args.file).map_err(invalid)?;
    let client = super::get::connect(&args.remote.server, args.remote.token.clone(), &args.remote.tls()).await?;
    let mut derived_from = Vec::new();
    for source in &args.derived_from {
        let uri = if source.starts_with("sheaf://") { source.clone() } else { format!("sheaf://{source}") };
        derived_from.push(client.dataset(&uri).await.map_err(client_err)?.lineage_input());
    }
    let options = WriteOptions {
        message: args.message.clone(),
        metadata,
        mode: match args.mode.as_str() {
            "overwrite" => WriteMode::Overwrite,
            "error" => WriteMode::ErrorIfExists,
            _ => WriteMode::Append,
        },
        derived_from,
        tool: Some(concat!("sheaf-cli ", env!("CARGO_PKG_VERSION")).into()),
        ..Default::default()
    };
    // The file is read on a blocking thread, a few batches ahead of the upload.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, Error>>(4);
    tokio::task::spawn_blocking(move || {
        for batch in batches {
            if tx.blocking_send(batch.map_err(Error::Other)).is_err() {
                break;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let done: proto::CommitWriteResponse = client.write(&target, schema, stream, &options).await.map_err(client_err)?;
    Ok(PutReport {
        package: done.package,
        top_hash: done.top_hash,
        previous: done.previous,
        uris: done.uris,
        rows: done.rows,
        bytes: done.bytes,
    })
}
