//! A client for Sheaf's Arrow Flight server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sheaf_client::Error> {
//! use futures::TryStreamExt;
//! let client = sheaf_client::Client::connect("grpc://127.0.0.1:50051").await?;
//! let dataset = client.dataset("sheaf://demo/weather/tables/readings.parquet?columns=id,temp_c").await?;
//! println!("{} rows of {} (pinned: {})", dataset.total_rows().unwrap_or(0), dataset.top_hash, dataset.pinned_uri);
//! let batches: Vec<_> = client.read(&dataset, 4).try_collect().await?;
//! # Ok(()) }
//! ```
//!
//! Endpoints are read in parallel and their batches returned in endpoint
//! order, so a read equals the server's canonical order. Messages of any size
//! are accepted (the gRPC default of 4 MiB would refuse rows with large values).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightEndpoint, FlightInfo};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde_json::Value;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Errors from the client: the server's status (code and message) or a
/// transport/decoding failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
    /// Connecting failed.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The server URL.
        url: String,
        /// Why.
        message: String,
    },
    /// Anything else (decoding, bad responses).
    #[error("{0}")]
    Other(String),
}

impl From<FlightError> for Error {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(status) => Error::Status(status),
            other => Error::Other(other.to_string()),
        }
    }
}

impl Error {
    /// The gRPC code, when the server answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// A planned dataset: what GetFlightInfo returned.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The FlightInfo (schema, endpoints, counts).
    pub info: FlightInfo,
    /// The schema of every endpoint's batches.
    pub schema: SchemaRef,
    /// The resolved revision (record it to reproduce the read).
    pub top_hash: String,
    /// The URI pinned to that revision.
    pub pinned_uri: String,
}

impl Dataset {
    /// Rows of the result, when the server knows them.
    pub fn total_rows(&self) -> Option<u64> {
        u64::try_from(self.info.total_records).ok()
    }
}

/// A connection to a Sheaf server.
#[derive(Clone)]
pub struct Client {
    url: String,
    channel: Channel,
    token: Option<String>,
    tls: ClientTlsConfig,
}

fn http_url(url: &str) -> String {
    match url.split_once("://") {
        Some(("grpc" | "grpc+tcp", rest)) => format!("http://{rest}"),
        Some(("grpc+tls", rest)) => format!("https://{rest}"),
        Some(_) => url.to_owned(),
        None => format!("http://{url}"),
    }
}

/// A channel to `url`. `grpc+tls://` (and `https://`) always connect with
/// TLS, verified against `tls` (the system's roots plus any given): a URL's
/// scheme never silently downgrades.
async fn channel(url: &str, tls: &ClientTlsConfig) -> Result<Channel, Error> {
    let connect = |message: String| Error::Connect { url: url.to_owned(), message };
    let target = http_url(url);
    let mut endpoint = Endpoint::from_shared(target.clone()).map_err(|e| connect(e.to_string()))?.tcp_nodelay(true);
    if target.starts_with("https://") {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| connect(format!("TLS: {e}")))?;
    } else if !target.starts_with("http://") {
        return Err(connect("unsupported scheme: use grpc:// or grpc+tls://".into()));
    }
    endpoint.connect().await.map_err(|e| connect(e.to_string()))
}

/// Batches each endpoint being read ahead of the consumer may buffer.
pub const PREFETCH_BATCHES: usize = 8;

impl Client {
    /// Connects to `grpc://host:port` or `grpc+tls://host:port` (verified
    /// against the system's root certificates).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with_roots(url, None).await
    }

    /// Connects, trusting `tls_root_certs` (PEM) besides the system's roots
    /// for `grpc+tls://` servers (a private CA, say).
    pub async fn connect_with_roots(url: &str, tls_root_certs: Option<&[u8]>) -> Result<Self, Error> {
        Self::connect_tls(url, tls_root_certs, None).await
    }

    /// Connects, trusting `tls_root_certs` (PEM) besides the system's roots,
    /// and presenting `client_identity` (certificate chain and private key,
    /// PEM) to servers that require mutual TLS.
    pub async fn connect_tls(
        url: &str,
        tls_root_certs: Option<&[u8]>,
        client_identity: Option<(&[u8], &[u8])>,
    ) -> Result<Self, Error> {
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(pem) = tls_root_certs {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = client_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Ok(Client { url: url.to_owned(), channel: channel(url, &tls).await?, token: None, tls })
    }

    /// Sends `authorization: Bearer <token>` on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    fn flight(&self, channel: Channel) -> Result<FlightClient, Error> {
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut client = FlightClient::new_from_inner(inner);
        if let Some(token) = &self.token {
            client.add_header("authorization", &format!("Bearer {token}"))?;
        }
        Ok(client)
    }

    /// Runs a DoAction and parses its JSON result.
    pub async fn action(&self, name: &str, body: Value) -> Result<Value, Error> {
        let mut client = self.flight(self.channel.clone())?;
        let results: Vec<bytes::Bytes> =
            client.do_action(Action::new(name, body.to_string().into_bytes())).await?.try_collect().await?;
        let first = results.into_iter().next().ok_or_else(|| Error::Other(format!("{name}: empty result")))?;
        serde_json::from_slice(&first).map_err(|e| Error::Other(format!("{name}: result is not JSON: {e}")))
    }

    /// Packages and their latest top hash (`pattern` is a glob such as `team/*`).
    pub async fn list_packages(&self, pattern: Option<&str>) -> Result<Value, Error> {
        let body = pattern.map(|p| serde_json::json!({"pattern": p})).unwrap_or_else(|| serde_json::json!({}));
        self.action("list_packages", body).await
    }

    /// Resolves `owner/name[@hash|:tag]` to its full top hash.
    pub async fn resolve(&self, reference: &str) -> Result<String, Error> {
        let v = self.action("resolve", serde_json::json!({"ref": reference})).await?;
        v["top_hash"].as_str().map(str::to_owned).ok_or_else(|| Error::Other("resolve: no top_hash".into()))
    }

    /// The tables of a revision, each `{"path", "format", "uri"}`.
    pub async fn list_tables(&self, reference: &str) -> Result<Vec<Value>, Error> {
        let v = self.action("list_tables", serde_json::json!({"ref": reference})).await?;
        Ok(v["tables"].as_array().cloned().unwrap_or_default())
    }

    /// Plans a read of a dataset URI (GetFlightInfo).
    pub async fn dataset(&self, uri: &str) -> Result<Dataset, Error> {
        let mut client = self.flight(self.channel.clone())?;
        let info = client.get_flight_info(FlightDescriptor::new_cmd(uri.to_owned())).await?;
        let schema = std::sync::Arc::new(info.clone().try_decode_schema().map_err(|e| Error::Other(e.to_string()))?);
        let meta: Value = serde_json::from_slice(&info.app_metadata).unwrap_or(Value::Null);
        Ok(Dataset {
            top_hash: meta["top_hash"].as_str().unwrap_or_default().to_owned(),
            pinned_uri: meta["pinned_uri"].as_str().unwrap_or_default().to_owned(),
            schema,
            info,
        })
    }

    /// Reads one endpoint, from its location or, when it names none, this server.
    pub async fn read_endpoint(
        &self,
        endpoint: &FlightEndpoint,
    ) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> {
        let channel = match endpoint.location.first() {
            Some(location) if !location.uri.is_empty() && location.uri != self.url => {
                channel(&location.uri, &self.tls).await?
            }
            _ => self.channel.clone(),
        };
        let ticket = endpoint.ticket.clone().ok_or_else(|| Error::Other("endpoint without a ticket".into()))?;
        let stream = self.flight(channel)?.do_get(ticket).await?;
        Ok(stream.map_err(Error::from).boxed())
    }

    /// Reads every endpoint, `parallelism` at a time, yielding batches in
    /// endpoint order (the canonical order of the dataset). Endpoints ahead of
    /// the one being consumed stream into small buffers
    /// ([`PREFETCH_BATCHES`] batches each), so memory stays bounded by
    /// `parallelism` x that, whatever the endpoints' sizes. Must be polled
    /// inside a tokio runtime.
    pub fn read<'a>(&'a self, dataset: &'a Dataset, parallelism: usize) -> BoxStream<'a, Result<RecordBatch, Error>> {
        stream::iter(dataset.info.endpoint.iter())
            .map(move |e| async move {
                let mut batches = self.read_endpoint(e).await?;
                let (tx, mut rx) = tokio::sync::mpsc::channel(PREFETCH_BATCHES);
                tokio::spawn(async move {
                    while let Some(batch) = batches.next().await {
                        // The reader went away: stop (dropping the stream cancels the call).
                        if tx.send(batch).await.is_err() {
                            break;
                        }
                    }
                });
                Ok::<_, Error>(stream::poll_fn(move |cx| rx.poll_recv(cx)))
            })
            .buffered(parallelism.max(1))
            .try_flatten()
            .boxed()
    }

    /// Plans and reads a dataset URI whole.
    pub async fn read_all(&self, uri: &str) -> Result<(Dataset, Vec<RecordBatch>), Error> {
        let dataset = self.dataset(uri).await?;
        let batches = self.read(&dataset, 4).try_collect().await?;
        Ok((dataset, batches))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls() {
        assert_eq!(super::http_url("grpc://127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(super::http_url("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(super::http_url("grpc+tls://h:1"), "https://h:1");
    }
}
