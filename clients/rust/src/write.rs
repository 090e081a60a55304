//! Writes: a table (or many) published as one new revision, through a write
//! session (`begin_write`, one DoPut per part, `commit_write`).
//!
//! ```no_run
//! # async fn demo(batches: Vec<arrow::record_batch::RecordBatch>) -> Result<(), sheaf_client::Error> {
//! use sheaf_client::{Client, WriteOptions};
//! let client = Client::connect("grpc://127.0.0.1:50051").await?;
//! let schema = batches[0].schema();
//! let stream = futures::stream::iter(batches.into_iter().map(Ok));
//! let done = client.write("team/features/train.parquet", schema, stream, &WriteOptions::default()).await?;
//! println!("revision {}", done.top_hash);
//! # Ok(()) }
//! ```

use crate::proto::{self, WriteMode};
use crate::{Client, Dataset, Error};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use prost::Message;

/// How a write makes its revision.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The revision's message.
    pub message: Option<String>,
    /// The revision's user metadata (a JSON object); `None` keeps the base
    /// revision's.
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// What happens to a table that exists.
    pub mode: WriteMode,
    /// Build on exactly this revision (hash, prefix or tag): the commit fails
    /// if `latest` has moved. `None` builds on whatever is latest.
    pub base: Option<String>,
    /// The datasets the data was derived from (lineage); see
    /// [`Dataset::lineage_input`].
    pub derived_from: Vec<proto::LineageInput>,
    /// The program writing (default: this crate and its version).
    pub tool: Option<String>,
    /// A key making `begin_write` idempotent (a retry finds the same session).
    pub idempotency_key: Option<String>,
}

impl Dataset {
    /// This read as a lineage input: its package, the revision it resolved
    /// to, and its pinned URI.
    pub fn lineage_input(&self) -> proto::LineageInput {
        let rest = self.pinned_uri.strip_prefix("sheaf://").unwrap_or(&self.pinned_uri);
        let package = rest.split(['@', ':', '/', '?']).take(2).collect::<Vec<_>>().join("/");
        proto::LineageInput { package, top_hash: self.top_hash.clone(), uri: self.pinned_uri.clone() }
    }
}

/// An open write session: upload parts with [`Writer::put`], then
/// [`Writer::commit`] (or [`Writer::abort`]). A writer dropped without
/// either leaves its session to expire (nothing becomes visible).
pub struct Writer<'a> {
    client: &'a Client,
    /// The session id.
    pub session: String,
    /// `owner/name`.
    pub package: String,
    parts: Vec<String>,
}

/// `owner/name` and the path of `target` (`[sheaf://]owner/name/path`).
fn split_target(target: &str) -> Result<(String, String), Error> {
    let rest = target.strip_prefix("sheaf://").unwrap_or(target);
    let mut pieces = rest.splitn(3, '/');
    match (pieces.next(), pieces.next(), pieces.next()) {
        (Some(owner), Some(name), Some(path)) if !owner.is_empty() && !name.is_empty() && !path.is_empty() => {
            Ok((format!("{owner}/{name}"), path.to_owned()))
        }
        _ => Err(Error::Other(format!("{target:?} is not a write target: expected [sheaf://]owner/name/path"))),
    }
}

impl Client {
    /// Opens a write session on `package` (`owner/name`).
    pub async fn writer(&self, package: &str, options: &WriteOptions) -> Result<Writer<'_>, Error> {
        let request = proto::BeginWriteRequest {
            package: package.to_owned(),
            base: options.base.clone(),
            mode: options.mode as i32,
            message: options.message.clone(),
            metadata: options.metadata.as_ref().map(|m| serde_json::Value::Object(m.clone()).to_string()),
            inputs: options.derived_from.clone(),
            tool: options.tool.clone().unwrap_or_else(|| concat!("sheaf-client ", env!("CARGO_PKG_VERSION")).into()),
            idempotency_key: options.idempotency_key.clone().unwrap_or_default(),
            ttl_seconds: None,
        };
        let response: proto::BeginWriteResponse = self.action("begin_write", &request).await?;
        Ok(Writer { client: self, session: response.session, package: response.package, parts: Vec::new() })
    }

    /// Publishes one table as a new revision: `target` is
    /// `[sheaf://]owner/name/path` (a `.parquet` file or a folder), the
    /// batches are streamed (memory stays bounded), and the revision exists
    /// only once the whole stream has arrived. Returns what was committed.
    pub async fn write(
        &self,
        target: &str,
        schema: SchemaRef,
        batches: impl Stream<Item = Result<RecordBatch, Error>> + Send + 'static,
        options: &WriteOptions,
    ) -> Result<proto::CommitWriteResponse, Error> {
        let (package, path) = split_target(target)?;
        let mut writer = self.writer(&package, options).await?;
        let done = match writer.put(&path, None, schema, batches).await {
            Ok(_) => writer.commit_once().await,
            Err(e) => Err(e),
        };
        // A failed upload, or a refused commit (the table exists, the schema
        // differs, `latest` moved), leaves a session: dropped with its staged
        // data. A commit that did land refuses the abort, which is ignored.
        if done.is_err() {
            let _ = writer.abort().await;
        }
        done
    }

    /// The lineage of `owner/name[@hash|:tag]`: the revision, then every
    /// revision it was derived from (breadth first).
    pub async fn lineage(&self, reference: &str) -> Result<Vec<proto::LineageNode>, Error> {
        let request = proto::LineageRequest { r#ref: reference.to_owned(), depth: None };
        let response: proto::LineageResponse = self.action("lineage", &request).await?;
        Ok(response.nodes)
    }
}

impl Writer<'_> {
    /// Uploads one part of table `path` (a `.parquet` file, or a folder whose
    /// parts are ordered by `part`). Nothing is visible until the commit.
    pub async fn put(
        &mut self,
        path: &str,
        part: Option<u32>,
        schema: SchemaRef,
        batches: impl Stream<Item = Result<RecordBatch, Error>> + Send + 'static,
    ) -> Result<proto::PutResponse, Error> {
        let request = proto::DatasetRequest {
            package: self.package.clone(),
            path: path.to_owned(),
            session: self.session.clone(),
            part,
            ..Default::default()
        };
        let descriptor = FlightDescriptor::new_cmd(proto::pack(&request));
        let input: BoxStream<'static, Result<RecordBatch, FlightError>> =
            batches.map_err(|e| FlightError::ExternalError(Box::new(e))).boxed();
        let data =
            FlightDataEncoderBuilder::new().with_schema(schema).with_flight_descriptor(Some(descriptor)).build(input);
        let mut client = self.client.flight(self.client.channels.own())?;
        let results: Vec<arrow_flight::PutResult> = client.do_put(data).await?.try_collect().await?;
        let first = results.into_iter().next().ok_or_else(|| Error::Other("DoPut: empty result".into()))?;
        let response = proto::PutResponse::decode(first.app_metadata)
            .map_err(|e| Error::Other(format!("DoPut: bad sheaf.v1.PutResponse: {e}")))?;
        self.parts.push(response.part_id.clone());
        Ok(response)
    }

    /// Commits the parts uploaded through this writer as one revision. A
    /// commit whose answer was lost is retried: the server answers the same
    /// revision rather than making a second.
    pub async fn commit(self) -> Result<proto::CommitWriteResponse, Error> {
        self.commit_once().await
    }

    /// [`Writer::commit`], keeping the writer (to abort it if refused).
    async fn commit_once(&self) -> Result<proto::CommitWriteResponse, Error> {
        let request = proto::CommitWriteRequest { session: self.session.clone(), parts: self.parts.clone() };
        let mut attempt = 0;
        loop {
            match self.client.action("commit_write", &request).await {
                Err(e) if attempt < 3 && e.reason() == Some(proto::ErrorReason::Unavailable) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Drops the session and its parts.
    pub async fn abort(self) -> Result<(), Error> {
        let request = proto::AbortWriteRequest { session: self.session.clone() };
        let _: proto::AbortWriteResponse = self.client.action("abort_write", &request).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_package_and_path() {
        assert_eq!(split_target("sheaf://a/b/c/d.parquet").unwrap(), ("a/b".into(), "c/d.parquet".into()));
        assert_eq!(split_target("a/b/features").unwrap(), ("a/b".into(), "features".into()));
        assert!(split_target("a/b").is_err());
        assert!(split_target("sheaf://a//x").is_err());
    }
}
