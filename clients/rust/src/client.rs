//! The client: typed actions, planning and parallel reads.

use crate::Error;
use crate::endpoints::Channels;
use crate::proto::{self, Form};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightEndpoint, FlightInfo};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use prost::{Message, Name};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A planned dataset: what GetFlightInfo returned.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The FlightInfo (schema, endpoints, counts).
    pub info: FlightInfo,
    /// The schema of every endpoint's batches.
    pub schema: SchemaRef,
    /// The resolved revision (record it to reproduce the read).
    pub top_hash: String,
    /// The request pinned to that revision, as a URI.
    pub pinned_uri: String,
    form: Form,
}

impl Dataset {
    /// Rows of the result, when the server knows them.
    pub fn total_rows(&self) -> Option<u64> {
        u64::try_from(self.info.total_records).ok()
    }

    /// The table rows endpoint `i` covers (absent for tables read whole).
    pub fn endpoint_metadata(&self, i: usize) -> Option<proto::EndpointMetadata> {
        decode(self.form, &self.info.endpoint.get(i)?.app_metadata)
    }
}

/// A metadata message in the form it was asked for.
fn decode<M: Message + Default + serde::de::DeserializeOwned>(form: Form, bytes: &[u8]) -> Option<M> {
    match form {
        _ if bytes.is_empty() => None,
        Form::Typed => M::decode(bytes).ok(),
        Form::Text => serde_json::from_slice(bytes).ok(),
    }
}

/// A connection to a Sheaf server.
#[derive(Clone)]
pub struct Client {
    pub(crate) channels: Channels,
    token: Option<String>,
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
        let own = crate::endpoints::connect(url, &tls).await?;
        Ok(Client { channels: Channels::new(url, own, tls), token: None })
    }

    /// Sends `authorization: Bearer <token>` on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub(crate) fn flight(&self, channel: Channel) -> Result<FlightClient, Error> {
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut client = FlightClient::new_from_inner(inner);
        if let Some(token) = &self.token {
            client.add_header("authorization", &format!("Bearer {token}"))?;
        }
        Ok(client)
    }

    /// Runs action `name` with a typed request and decodes its typed response.
    pub async fn action<Req: Name, Resp: Name + Default>(&self, name: &str, request: &Req) -> Result<Resp, Error> {
        let mut client = self.flight(self.channels.own())?;
        let action = Action::new(name, proto::pack(request));
        let results: Vec<bytes::Bytes> = client.do_action(action).await?.try_collect().await?;
        let first = results.into_iter().next().ok_or_else(|| Error::Other(format!("{name}: empty result")))?;
        match proto::unpack_any(&first) {
            Some((type_name, value)) if type_name == Resp::NAME => {
                Resp::decode(value).map_err(|e| Error::Other(format!("{name}: bad {}: {e}", Resp::NAME)))
            }
            _ => Err(Error::Other(format!("{name}: the result is not a packed sheaf.v1.{}", Resp::NAME))),
        }
    }

    /// Packages and their latest top hash (`pattern` is a glob such as `team/*`).
    pub async fn list_packages(&self, pattern: Option<&str>) -> Result<Vec<proto::PackageSummary>, Error> {
        let request = proto::ListPackagesRequest { pattern: pattern.unwrap_or_default().to_owned() };
        let response: proto::ListPackagesResponse = self.action("list_packages", &request).await?;
        Ok(response.packages)
    }

    /// A package's revisions, newest first.
    pub async fn list_revisions(&self, package: &str) -> Result<Vec<proto::RevisionSummary>, Error> {
        let request = proto::ListRevisionsRequest { package: package.to_owned() };
        let response: proto::ListRevisionsResponse = self.action("list_revisions", &request).await?;
        Ok(response.revisions)
    }

    /// The entries of `owner/name[@hash|:tag]` under `prefix` (`""`: all).
    pub async fn browse(&self, reference: &str, prefix: &str) -> Result<proto::BrowseResponse, Error> {
        let request = proto::BrowseRequest { r#ref: reference.to_owned(), prefix: prefix.to_owned() };
        self.action("browse", &request).await
    }

    /// Resolves `owner/name[@hash|:tag]` to its full top hash.
    pub async fn resolve(&self, reference: &str) -> Result<String, Error> {
        let request = proto::ResolveRequest { r#ref: reference.to_owned() };
        let response: proto::ResolveResponse = self.action("resolve", &request).await?;
        Ok(response.top_hash)
    }

    /// The tables of a revision with their pinned URIs.
    pub async fn list_tables(&self, reference: &str) -> Result<Vec<proto::TableSummary>, Error> {
        let request = proto::ListTablesRequest { r#ref: reference.to_owned() };
        let response: proto::ListTablesResponse = self.action("list_tables", &request).await?;
        Ok(response.tables)
    }

    /// Plans a read of a dataset URI (GetFlightInfo); the server parses it.
    pub async fn dataset(&self, uri: &str) -> Result<Dataset, Error> {
        self.plan(FlightDescriptor::new_cmd(uri.to_owned()), Form::Text).await
    }

    /// Plans a read of a typed dataset request (GetFlightInfo).
    pub async fn dataset_request(&self, request: &proto::DatasetRequest) -> Result<Dataset, Error> {
        self.plan(FlightDescriptor::new_cmd(proto::pack(request)), Form::Typed).await
    }

    async fn plan(&self, descriptor: FlightDescriptor, form: Form) -> Result<Dataset, Error> {
        let mut client = self.flight(self.channels.own())?;
        let info = client.get_flight_info(descriptor).await?;
        let schema = std::sync::Arc::new(info.clone().try_decode_schema().map_err(|e| Error::Other(e.to_string()))?);
        let meta: proto::FlightInfoMetadata = decode(form, &info.app_metadata).unwrap_or_default();
        Ok(Dataset { top_hash: meta.top_hash, pinned_uri: meta.pinned_uri, schema, info, form })
    }

    /// Reads one endpoint by the endpoint policy ([`crate::endpoints`]):
    /// its locations in order, else this server. When the replica serving it
    /// fails mid-stream, the read continues at the next location, skipping
    /// the rows already delivered (a ticket returns the same rows in the same
    /// order everywhere), so no row is lost or repeated.
    pub async fn read_endpoint(
        &self,
        endpoint: &FlightEndpoint,
    ) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> {
        let ticket = endpoint.ticket.clone().ok_or_else(|| Error::Other("endpoint without a ticket".into()))?;
        let locations: Vec<String> = match endpoint.location.as_slice() {
            [] => vec![String::new()],
            many => many.iter().map(|l| l.uri.clone()).collect(),
        };
        let mut resume = Resume { client: self.clone(), ticket, locations, next: 0, delivered: 0, tried: Vec::new() };
        let first = resume.open().await?;
        let batches = stream::unfold((resume, Some(first)), |(mut resume, current)| async move {
            let mut current = current?;
            loop {
                match current.next().await {
                    None => return None,
                    Some(Ok(batch)) => {
                        resume.delivered += batch.num_rows() as u64;
                        return Some((Ok(batch), (resume, Some(current))));
                    }
                    Some(Err(e)) if e.replica_failed() && resume.next < resume.locations.len() => {
                        resume.tried.push(format!("{}: {e}", resume.locations[resume.next - 1]));
                        match resume.open().await {
                            Ok(stream) => current = stream,
                            Err(e) => return Some((Err(e), (resume, None))),
                        }
                    }
                    Some(Err(e)) => return Some((Err(resume.failed(e)), (resume, None))),
                }
            }
        });
        Ok(batches.boxed())
    }

    /// Reads every endpoint, `parallelism` at a time, yielding batches in
    /// endpoint order (the canonical order of the dataset). Endpoints ahead of
    /// the one being consumed stream into small buffers
    /// ([`PREFETCH_BATCHES`] batches each), so memory stays bounded by
    /// `parallelism` x that, whatever the endpoints' sizes. Must be polled
    /// inside a tokio runtime.
    ///
    /// Each endpoint's stream is held to its plan: batches of another schema
    /// than the dataset's, or a stream of other rows than the endpoint's
    /// exact count (when the plan gives one), fail the read with
    /// [`Error::Contradicted`].
    pub fn read<'a>(&'a self, dataset: &'a Dataset, parallelism: usize) -> BoxStream<'a, Result<RecordBatch, Error>> {
        stream::iter(dataset.info.endpoint.iter().enumerate())
            .map(move |(i, e)| async move {
                let plan = Planned {
                    what: format!("{} (endpoint {i})", dataset.pinned_uri),
                    schema: dataset.schema.clone(),
                    rows: dataset.endpoint_metadata(i).and_then(|m| m.rows),
                };
                let mut batches = plan.check(self.read_endpoint(e).await?);
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

/// What one endpoint's stream must hold: the dataset's schema and, when
/// the plan gives it, an exact number of rows.
struct Planned {
    /// The endpoint, for messages.
    what: String,
    schema: SchemaRef,
    rows: Option<u64>,
}

impl Planned {
    /// `batches`, failing at the first batch of another schema, or at the
    /// end (or once past the count) when the rows are not the planned ones.
    fn check(
        self,
        batches: BoxStream<'static, Result<RecordBatch, Error>>,
    ) -> BoxStream<'static, Result<RecordBatch, Error>> {
        let ended = stream::once(async { None });
        let items = batches.map(Some).chain(ended);
        items
            .scan((self, 0u64, false), |(plan, seen, failed), item| {
                let out = match item {
                    _ if *failed => None,
                    Some(Ok(batch)) => {
                        *seen += batch.num_rows() as u64;
                        if !same_columns(&batch.schema(), &plan.schema) {
                            Some(Some(Err(plan.contradicted(format!(
                                "a batch of schema {:?}, where the plan's is {:?}",
                                batch.schema().fields(),
                                plan.schema.fields()
                            )))))
                        } else if plan.rows.is_some_and(|r| *seen > r) {
                            Some(Some(Err(
                                plan.contradicted(format!("more than the {} rows planned", plan.rows.unwrap_or(0)))
                            )))
                        } else {
                            Some(Some(Ok(batch)))
                        }
                    }
                    Some(Err(e)) => Some(Some(Err(e))),
                    None => match plan.rows {
                        Some(r) if *seen != r => {
                            Some(Some(Err(plan.contradicted(format!("{seen} rows, where the plan has {r}")))))
                        }
                        _ => Some(None),
                    },
                };
                if matches!(out, Some(Some(Err(_)))) {
                    *failed = true;
                }
                futures::future::ready(out)
            })
            .filter_map(futures::future::ready)
            .boxed()
    }

    fn contradicted(&self, what: String) -> Error {
        Error::Contradicted(format!("{}: the server's stream holds {what}; the answer is broken", self.what))
    }
}

/// Whether two schemas have the same columns: names, types and
/// nullability, in order (metadata aside).
fn same_columns(a: &arrow::datatypes::Schema, b: &arrow::datatypes::Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields().iter())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type() && x.is_nullable() == y.is_nullable())
}

/// The state of one endpoint's read across replicas.
struct Resume {
    client: Client,
    ticket: arrow_flight::Ticket,
    locations: Vec<String>,
    /// The next location to try.
    next: usize,
    /// Rows handed to the caller so far; a stream reopened elsewhere skips
    /// them.
    delivered: u64,
    /// The locations that failed mid-stream, and how.
    tried: Vec<String>,
}

impl Resume {
    /// Opens the ticket at the next location that answers (connection
    /// refused or UNAVAILABLE: the one after it), counting rows from zero.
    async fn open(&mut self) -> Result<BoxStream<'static, Result<RecordBatch, Error>>, Error> {
        let mut last = None;
        while self.next < self.locations.len() {
            let location = self.locations[self.next].clone();
            self.next += 1;
            let attempt = async {
                let channel = self.client.channels.get(&location).await?;
                Ok::<_, Error>(self.client.flight(channel)?.do_get(self.ticket.clone()).await?)
            };
            match attempt.await {
                Ok(stream) => {
                    let mut skip = self.delivered;
                    // Rows already delivered are dropped as the new stream
                    // brings them again.
                    let stream = stream.map_err(Error::from).try_filter_map(move |batch| {
                        let rows = batch.num_rows() as u64;
                        let cut = skip.min(rows);
                        skip -= cut;
                        let rest = (cut < rows).then(|| batch.slice(cut as usize, (rows - cut) as usize));
                        futures::future::ready(Ok(rest))
                    });
                    return Ok(stream.boxed());
                }
                Err(e) if e.try_elsewhere() => {
                    self.tried.push(format!("{}: {e}", display(&location)));
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(e) if self.tried.len() > 1 => self.failed(e),
            Some(e) => e,
            None => Error::Other("endpoint without a location".into()),
        })
    }

    /// `e`, naming every location that failed before it when there were
    /// others.
    fn failed(&self, e: Error) -> Error {
        if self.tried.is_empty() {
            return e;
        }
        Error::Other(format!("{e} (after every location of the endpoint failed: {})", self.tried.join("; ")))
    }
}

/// A location as messages name it.
fn display(location: &str) -> &str {
    if location.is_empty() { "this server" } else { location }
}
