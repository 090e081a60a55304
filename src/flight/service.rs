//! The Arrow Flight service: RPCs over the query engine.

use super::actions;
use super::audit::AuditNote;
use super::auth::Authenticator;
use super::cache::{Admission, Lookup, StreamCache};
use super::descriptor;
use super::doget::DoGetStream;
use super::encode::WireMessage;
use super::pipeline::{self, Gates, StreamLimits};
use super::replicas::Replicas;
use crate::auth::glob_match;
use crate::auth::{Access, Principal};
use crate::metrics;
use crate::proto::{self, Form};
use crate::query::{Compression, DatasetUri, Engine, Plan};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::{Request, Response, Status, Streaming};

/// Sheaf's Flight service.
pub struct SheafFlight {
    engine: Arc<Engine>,
    replicas: Arc<Replicas>,
    next_location: AtomicUsize,
    cache: Arc<StreamCache>,
    gates: Gates,
    limits: StreamLimits,
    auth: Arc<Authenticator>,
    /// Flight SQL, when the server offers it.
    sql: Option<Arc<super::sql::SqlFlight>>,
}

impl SheafFlight {
    /// A service over `engine`; endpoints name the healthy `replicas` in
    /// placement order (none configured: no location, meaning "this
    /// server"). Repeated reads are answered from `cache`; reads of storage
    /// take turns on `gates` (see [`pipeline`]), under `limits`.
    pub fn new(
        engine: Arc<Engine>,
        replicas: Arc<Replicas>,
        cache: Arc<StreamCache>,
        gates: Gates,
        limits: StreamLimits,
    ) -> Self {
        SheafFlight {
            engine,
            replicas,
            next_location: AtomicUsize::new(0),
            cache,
            gates,
            limits,
            auth: Arc::new(Authenticator::open()),
            sql: None,
        }
    }

    /// Answers Flight SQL requests with `sql`.
    pub fn with_sql(mut self, sql: super::sql::SqlFlight) -> Self {
        self.sql = Some(Arc::new(sql));
        self
    }

    /// The Flight SQL service, or UNIMPLEMENTED.
    fn sql(&self) -> Result<&Arc<super::sql::SqlFlight>, Status> {
        self.sql.as_ref().ok_or_else(|| Status::unimplemented("this server does not offer Flight SQL"))
    }

    /// Checks callers with `auth` (the server's [`super::auth::AuthLayer`]
    /// puts each request's principal in its extensions) and signs tickets
    /// with its key.
    pub fn with_auth(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// The caller of a request: set by the auth layer; without `--auth`,
    /// anyone may do anything.
    pub fn caller(&self, principal: Option<&Principal>) -> Result<Principal, Status> {
        self.auth.caller(principal)
    }

    /// Fails unless `principal` may do `access` with `package`; a package it
    /// may not read answers as a missing one.
    fn require(
        &self,
        principal: &Principal,
        access: Access,
        package: &crate::registry::PackageName,
    ) -> Result<(), Status> {
        super::auth::require(principal, access, &package.to_string(), || {
            self.engine.registry().package_not_found(package).into()
        })
    }

    /// The bytes of a ticket as handed to clients: signed when callers are
    /// authenticated.
    fn ticket_bytes(&self, ticket: &proto::Ticket) -> Vec<u8> {
        let mut ticket = ticket.clone();
        ticket.signature.clear();
        if let Some(tag) = self.auth.sign(&ticket.encode_to_vec()) {
            ticket.signature = tag;
        }
        ticket.encode_to_vec()
    }

    /// Decodes a ticket and checks its signature.
    fn open_ticket(&self, bytes: Bytes) -> Result<proto::Ticket, Status> {
        let mut ticket =
            proto::Ticket::decode(bytes).map_err(|e| Status::invalid_argument(format!("not a Sheaf ticket: {e}")))?;
        if self.auth.required() {
            let tag = std::mem::take(&mut ticket.signature);
            if !self.auth.verify(&ticket.encode_to_vec(), &tag) {
                return Err(Status::invalid_argument("not a ticket this service issued (tickets cannot be edited)"));
            }
        }
        Ok(ticket)
    }

    /// The encoded messages of a DoGet ([`DoGetStream`]): from the cache
    /// when this ticket was read before, else executed, encoded and recorded.
    pub async fn messages(
        &self,
        ticket_bytes: Bytes,
        principal: &Principal,
        note: &AuditNote,
    ) -> Result<DoGetStream, Status> {
        if super::sql::is_sql(&ticket_bytes)? {
            metrics::DO_GET.add(1);
            return self.sql_messages(ticket_bytes, principal, note).await;
        }
        let ticket = self.open_ticket(ticket_bytes.clone())?;
        note.target(&ticket.package, Some(&ticket.top_hash), Some(&ticket.path));
        let package: crate::registry::PackageName = ticket
            .package
            .parse()
            .map_err(|e: crate::registry::Error| Status::invalid_argument(format!("bad ticket: {e}")))?;
        // Checked on every redemption: a ticket passed to another caller
        // grants nothing.
        self.require(principal, Access::Read, &package)?;
        let what = format!("{}@{}/{} partition {}", ticket.package, ticket.top_hash, ticket.path, ticket.partition);
        let what = crate::query::limits::clip(&what, 400).into_owned();
        metrics::DO_GET.add(1);
        let compression = Compression::parse(ticket.query.as_ref().map(|q| q.compression.as_str()).unwrap_or(""))?;
        let recording = match self.cache.lookup(&ticket_bytes, Admission::Repeated).await {
            Lookup::Hit(cached) => return Ok(DoGetStream::cached(cached, what)),
            Lookup::Miss(recording) => recording,
        };
        let execution = self.engine.execute(ticket).await?;
        DoGetStream::scanned(execution, compression, (self.gates.clone(), self.limits), Some(recording), what)
    }

    /// The messages of a Flight SQL DoGet: a statement's result partition
    /// (from the cache when it was kept), or a catalog answer.
    async fn sql_messages(
        &self,
        ticket_bytes: Bytes,
        principal: &Principal,
        note: &AuditNote,
    ) -> Result<DoGetStream, Status> {
        let sql = self.sql()?;
        match sql.do_get_ticket(ticket_bytes.clone(), principal).await? {
            super::sql::SqlRows::Statement(statement) => {
                // The audit line names every revision the statement reads.
                note.target(&statement.revisions.join(","), None, None);
                let what = statement.what.clone();
                // Its revisions are pinned, so a deterministic statement's
                // answer is the ticket's for good: kept like a URI read's,
                // but from its first read (an answer is usually far smaller
                // than the scan behind it).
                let recording = match statement.may_reuse {
                    true => match self.cache.lookup(&ticket_bytes, Admission::First).await {
                        Lookup::Hit(cached) => return Ok(DoGetStream::cached(cached, what)),
                        Lookup::Miss(recording) => Some(recording),
                    },
                    false => None,
                };
                let (execution, reusable) = sql.run(statement, principal).await?;
                let recording = recording.filter(|_| reusable);
                DoGetStream::scanned(execution, Compression::None, (self.gates.clone(), self.limits), recording, what)
            }
            super::sql::SqlRows::Catalog(messages) => {
                Ok(DoGetStream::encoded(messages.map_ok(WireMessage::from).boxed(), "Flight SQL catalog".into()))
            }
        }
    }

    /// The FlightInfo of a plan; its metadata in the request's `form`.
    fn flight_info(&self, plan: &Plan, descriptor: FlightDescriptor, form: Form) -> Result<FlightInfo, Status> {
        let start = self.next_location.fetch_add(plan.tickets.len().max(1), Ordering::Relaxed);
        let endpoints = plan.tickets.iter().zip(&plan.regions).enumerate().map(|(i, (t, region))| {
            let ticket = self.ticket_bytes(t);
            let locations = self.replicas.locations(&ticket, start + i);
            let mut endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
            if let Some(r) = *region {
                let meta = proto::EndpointMetadata {
                    partition: i as u32,
                    first_row: r.first_row,
                    table_rows: r.rows,
                    selected_rows: r.selected,
                    rows: plan.exact_rows(i),
                };
                endpoint = endpoint.with_app_metadata(form.encode(&meta, false));
            }
            locations.into_iter().fold(endpoint, |endpoint, location| endpoint.with_location(location))
        });
        let meta = proto::FlightInfoMetadata {
            package: plan.uri.package.to_string(),
            top_hash: plan.top_hash.clone(),
            path: plan.uri.path.clone(),
            pinned_uri: plan.uri.to_string(),
        };
        let info = FlightInfo::new()
            .try_with_schema(&plan.schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_descriptor(descriptor)
            .with_endpoints(endpoints.collect())
            .with_total_records(plan.total_rows.map_or(-1, |r| r as i64))
            .with_total_bytes(plan.total_bytes.map_or(-1, |b| b as i64))
            .with_ordered(true)
            .with_app_metadata(form.encode(&meta, false));
        Ok(info)
    }
}

#[tonic::async_trait]
impl FlightService for SheafFlight {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        if !self.auth.required() {
            return Err(Status::unimplemented(
                "this server does not authenticate callers (no --auth): no login is needed",
            ));
        }
        // The auth layer checked the credentials and puts the session token
        // in the response headers; the handshake's messages carry nothing.
        Ok(Response::new(stream::empty().boxed()))
    }

    async fn list_flights(&self, request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let principal = self.caller(request.extensions().get::<Principal>())?;
        let pattern = String::from_utf8_lossy(&request.get_ref().expression).trim().to_owned();
        let pattern = if pattern.is_empty() { "*".to_owned() } else { pattern };
        let packages = self.engine.registry().list_packages().await?;
        let mut infos = Vec::new();
        for p in packages.into_iter().filter(|p| glob_match(&pattern, &p.name) && principal.may(Access::Read, &p.name))
        {
            let Some(top_hash) = p.latest else { continue };
            // A package whose latest manifest cannot be read is left out
            // too (and logged), as `sheaf list` lists it without a revision.
            let tables = match self.engine.revision(&top_hash).await {
                Ok(revision) => revision.tables(),
                Err(e) => {
                    tracing::warn!(package = %p.name, top_hash = %top_hash, error = %e, "package left out of ListFlights");
                    continue;
                }
            };
            let package = p.name.parse()?;
            for (path, _) in tables {
                let uri = DatasetUri::table(&package, &top_hash, &path);
                // A table that cannot be planned (say, an unreadable file) is
                // left out of the listing, not allowed to fail it.
                match self.engine.plan(&uri).await {
                    Ok(plan) => {
                        infos.push(self.flight_info(&plan, FlightDescriptor::new_cmd(uri.to_string()), Form::Text))
                    }
                    Err(e) => tracing::warn!(uri = %uri, error = %e, "table left out of ListFlights"),
                }
            }
        }
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        if request.get_ref().r#type() == arrow_flight::flight_descriptor::DescriptorType::Cmd
            && super::sql::is_sql(&request.get_ref().cmd)?
        {
            return FlightService::get_flight_info(self.sql()?.as_ref(), request).await;
        }
        let principal = self.caller(request.extensions().get::<Principal>())?;
        let note = AuditNote::of(request.extensions());
        let descriptor = request.into_inner();
        let (uri, form) = descriptor::dataset(&descriptor)?;
        note.target(&uri.package.to_string(), None, Some(&uri.path));
        self.require(&principal, Access::Read, &uri.package)?;
        let plan = self.engine.plan(&uri).await?;
        note.target(&uri.package.to_string(), Some(&plan.top_hash), None);
        tracing::info!(principal = %principal.label(), uri = %crate::query::limits::clip(&plan.uri.to_string(), 400),
            endpoints = plan.tickets.len(), rows = ?plan.total_rows, "GetFlightInfo");
        Ok(Response::new(self.flight_info(&plan, descriptor, form)?))
    }

    async fn poll_flight_info(&self, _request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("PollFlightInfo: planning is immediate, use GetFlightInfo"))
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let principal = self.caller(request.extensions().get::<Principal>())?;
        let schema = match super::sql::is_sql(&request.get_ref().cmd)? {
            true => self.sql()?.schema(request.get_ref(), &principal).await?,
            false => {
                let (uri, _) = descriptor::dataset(request.get_ref())?;
                let note = AuditNote::of(request.extensions());
                note.target(&uri.package.to_string(), None, Some(&uri.path));
                self.require(&principal, Access::Read, &uri.package)?;
                let plan = self.engine.plan(&uri).await?;
                note.target(&uri.package.to_string(), Some(&plan.top_hash), None);
                plan.schema
            }
        };
        let options = IpcWriteOptions::default();
        let result: SchemaResult = SchemaAsIpc::new(&schema, &options)
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(format!("encoding the schema: {e}")))?;
        Ok(Response::new(result))
    }

    /// DoGet through tonic's codec. The server mounts [`super::grpc`]'s
    /// copy-free framing in front of it; both send [`SheafFlight::messages`].
    async fn do_get(&self, request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let principal = self.caller(request.extensions().get::<Principal>())?;
        let note = AuditNote::of(request.extensions());
        let messages = self.messages(request.into_inner().ticket, &principal, &note).await?;
        Ok(Response::new(messages.map_ok(WireMessage::into_flight_data).boxed()))
    }

    /// Uploads an Arrow stream as a Parquet table (see [`super::put`]). The
    /// response starts at once and carries one result when the revision is
    /// committed, so a long upload is not cut by the request timeout.
    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let principal = self.caller(request.extensions().get::<Principal>())?;
        let note = AuditNote::of(request.extensions());
        let engine = self.engine.clone();
        let sql = self.sql.clone();
        let messages = request.into_inner();
        let result = stream::once(async move {
            let put = super::put::put(&engine, sql.as_deref(), messages, &principal, &note);
            let put = std::panic::AssertUnwindSafe(put).catch_unwind().await;
            let put = put.unwrap_or_else(|panic| {
                tracing::error!(panic = ?pipeline::panic_message(panic.as_ref()), "DoPut panicked");
                Err(Status::internal("DoPut failed on the server (details are in its log); nothing was committed"))
            });
            let app_metadata = put.inspect_err(|e| {
                tracing::warn!(code = ?e.code(), error = %crate::query::limits::clip(e.message(), 400), "DoPut failed; nothing committed");
            })?;
            Ok(PutResult { app_metadata: app_metadata.into() })
        });
        Ok(Response::new(result.boxed()))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("DoExchange is not supported"))
    }

    async fn do_action(&self, request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        if super::sql::is_sql_action(&request.get_ref().r#type) {
            // Refuses a malformed Flight SQL body (most actions carry one).
            super::sql::is_sql(&request.get_ref().body)?;
            return FlightService::do_action(self.sql()?.as_ref(), request).await;
        }
        let principal = self.caller(request.extensions().get::<Principal>())?;
        let note = AuditNote::of(request.extensions());
        let action = request.into_inner();
        let body = actions::run(&self.engine, &action.r#type, &action.body, &principal, &note).await?;
        let result = arrow_flight::Result::new(body);
        Ok(Response::new(stream::once(async { Ok(result) }).boxed()))
    }

    async fn list_actions(&self, _request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        let types: Vec<Result<ActionType, Status>> = actions::ACTIONS
            .iter()
            .map(|(name, description)| Ok(ActionType { r#type: (*name).into(), description: (*description).into() }))
            .chain(self.sql.iter().flat_map(|_| super::sql::action_types().into_iter().map(Ok)))
            .collect();
        Ok(Response::new(stream::iter(types).boxed()))
    }
}
