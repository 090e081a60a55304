//! Flight SQL: arrow-flight's [`FlightSqlService`] over the SQL engine
//! ([`crate::sql`]). [`super::SheafFlight`] hands it every request whose
//! descriptor, ticket or action is a Flight SQL command; the typed dispatch
//! is arrow-flight's. Statement results are DoGet streams like any other
//! (the same gates and stream limits); the catalog commands answer from the
//! registry, showing the caller only the packages it may read.
//!
//! Tickets and prepared-statement handles are self-contained (see
//! [`crate::sql::ticket`]): a result ticket pins every revision the
//! statement read, and FlightInfo's `app_metadata` lists them as JSON
//! (`{"revisions": ["owner/name@<top hash>", ...], "sql": ...}`).

mod cancel;
mod info;
mod patterns;
mod prepared;
mod schemas;

use super::auth::Authenticator;
use crate::auth::{Access, Principal};
use crate::query::Execution;
use crate::sql::{MANIFEST_TABLE, MayRead, PreparedHandle, SqlEngine, StatementTicket, ticket};
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::SqlInfoData;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndSavepointRequest, ActionEndTransactionRequest, Any, Command, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData, FlightDescriptor,
    FlightEndpoint, FlightInfo, Ticket,
};
use bytes::Bytes;
use cancel::{Cancels, may_cancel, may_read_all, until_cancelled};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use info::XDBC_INFO;
use patterns::{check_patterns, like};
use prepared::open_handle;
use prost::Message;
use schemas::{advertised, foreign_keys_schema, keys_schema, schema_bytes};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The prefix of every Flight SQL message's type URL.
const SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";
/// The Flight action cancelling a FlightInfo's queries.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";
/// Largest result ticket handed out: a DoGet request (a `Ticket` message
/// and its gRPC framing) may be at most 4 MiB (`MAX_REQUEST` in
/// [`super::grpc`]), so a bigger ticket could never be redeemed.
const MAX_TICKET_BYTES: usize = 4 * 1024 * 1024 - 16;
/// The actions Flight SQL defines (answered by [`SqlFlight`]).
const SQL_ACTIONS: [&str; 9] = [
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
    CANCEL_FLIGHT_INFO,
];

/// Whether `bytes` (a descriptor's command or a ticket) is a Flight SQL
/// message. One whose body does not decode is refused here, with
/// INVALID_ARGUMENT naming its type (arrow-flight's service would answer
/// INTERNAL, as if the server were at fault).
pub fn is_sql(bytes: &[u8]) -> Result<bool, Status> {
    let Ok(any) = arrow_flight::sql::Any::decode(bytes) else { return Ok(false) };
    let Some(what) = any.type_url.strip_prefix(SQL_TYPE_PREFIX).map(str::to_owned) else { return Ok(false) };
    match arrow_flight::sql::Command::try_from(any) {
        Ok(_) => Ok(true),
        Err(e) => Err(Status::invalid_argument(format!(
            "a malformed Flight SQL {}: {e}",
            crate::query::limits::excerpt(&what)
        ))),
    }
}

/// Whether an action is Flight SQL's.
pub fn is_sql_action(name: &str) -> bool {
    SQL_ACTIONS.contains(&name)
}

/// The Flight SQL actions, for ListActions.
pub fn action_types() -> Vec<arrow_flight::ActionType> {
    SQL_ACTIONS
        .iter()
        .map(|name| arrow_flight::ActionType { r#type: (*name).into(), description: format!("Flight SQL {name}") })
        .collect()
}

/// What a Flight SQL DoGet streams.
pub enum SqlRows {
    /// A statement's result partition, to run ([`SqlFlight::run`]) through
    /// the DoGet pipeline.
    Statement(SqlStatement),
    /// A catalog command's answer, encoded.
    Catalog(BoxStream<'static, Result<FlightData, Status>>),
}

/// A statement's result partition, decoded from its ticket, not run yet.
pub struct SqlStatement {
    ticket: StatementTicket,
    /// The ticket's bytes: its name for `CancelFlightInfo`.
    bytes: Bytes,
    /// What it is, for logs.
    pub what: String,
    /// The revisions it reads (`owner/name@<top hash>`), for the audit line.
    pub revisions: Vec<String>,
    /// Whether the caller may read every revision the ticket pins: only then
    /// may an answer kept from an earlier run of it be sent (a run checks
    /// every table it reads; an answer kept is reusable only when its run
    /// read exactly the pinned revisions, see [`crate::sql::Planned::reusable`]).
    pub may_reuse: bool,
}

/// The Flight SQL service.
pub struct SqlFlight {
    sql: Arc<SqlEngine>,
    auth: Arc<Authenticator>,
    cancels: Arc<Cancels>,
    /// The answers to `GetSqlInfo` (they report the engine's limits).
    sql_info: SqlInfoData,
}

impl SqlFlight {
    /// The service over `sql`, checking callers with `auth`.
    pub fn new(sql: Arc<SqlEngine>, auth: Arc<Authenticator>) -> Self {
        let sql_info = info::sql_info(sql.limits().timeout);
        SqlFlight { sql, auth, cancels: Arc::default(), sql_info }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.auth.caller(request.extensions().get::<Principal>())
    }

    /// Which packages `principal` may read.
    fn may_read(principal: &Principal) -> MayRead {
        let principal = principal.clone();
        Arc::new(move |package: &str| principal.may(Access::Read, package))
    }

    /// The FlightInfo of a statement: planned with its revisions resolved,
    /// one endpoint per output partition, each ticket pinned.
    async fn statement_info(
        &self,
        sql: &str,
        parameters: Vec<u8>,
        principal: &Principal,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let bound = ticket::decode_parameters(&parameters)?;
        let planned = self.sql.plan(sql, bound.as_ref(), Self::may_read(principal), None).await?;
        let physical = self.sql.physical(&planned).await?;
        let partitions = physical.properties().output_partitioning().partition_count();
        let pins = planned.pins.clone();
        tracing::info!(principal = %principal.label(), sql = %crate::query::limits::clip(sql, 400),
            revisions = ?pins.revisions(), endpoints = partitions, "Flight SQL statement planned");
        let mut endpoints = Vec::with_capacity(partitions);
        for partition in 0..partitions {
            let ticket = StatementTicket {
                sql: sql.to_owned(),
                pins: Some(pins.clone()),
                parameters: parameters.clone(),
                partition: partition as u32,
                partitions: partitions as u32,
            };
            let ticket = TicketStatementQuery { statement_handle: ticket.encode_to_vec().into() };
            let ticket = ticket.as_any().encode_to_vec();
            if ticket.len() > MAX_TICKET_BYTES {
                return Err(Status::invalid_argument(format!(
                    "the statement's result ticket would be {} bytes (the statement {} bytes, its parameters {} \
                     bytes, the {} revisions it reads); a DoGet request carries at most {MAX_TICKET_BYTES}",
                    ticket.len(),
                    sql.len(),
                    parameters.len(),
                    pins.revisions().len()
                )));
            }
            endpoints.push(FlightEndpoint::new().with_ticket(Ticket::new(ticket)));
        }
        let metadata = serde_json::json!({ "revisions": pins.revisions(), "sql": sql });
        let info = FlightInfo::new()
            .try_with_schema(crate::query::wire_schema(&physical.schema()).as_ref())
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_descriptor(descriptor)
            .with_endpoints(endpoints)
            .with_total_records(-1)
            .with_total_bytes(-1)
            .with_ordered(partitions == 1)
            .with_app_metadata(metadata.to_string().into_bytes());
        Ok(info)
    }

    /// The schema of a statement's rows (GetSchema).
    pub async fn statement_schema(
        &self,
        sql: &str,
        parameters: &[u8],
        principal: &Principal,
    ) -> Result<SchemaRef, Status> {
        let bound = ticket::decode_parameters(parameters)?;
        let planned = self.sql.plan(sql, bound.as_ref(), Self::may_read(principal), None).await?;
        Ok(planned.schema())
    }

    /// The schema of the rows a Flight SQL descriptor names (GetSchema):
    /// statements and prepared statements; catalog commands have fixed
    /// schemas.
    pub async fn schema(&self, descriptor: &FlightDescriptor, principal: &Principal) -> Result<SchemaRef, Status> {
        let any = Any::decode(descriptor.cmd.as_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        match Command::try_from(any).map_err(|e| Status::invalid_argument(e.to_string()))? {
            Command::CommandStatementQuery(q) => self.statement_schema(&q.query, &[], principal).await,
            Command::CommandPreparedStatementQuery(q) => {
                let handle = open_handle(&q.prepared_statement_handle)?;
                // With the parameters bound to it, as its execution plans it
                // (`SELECT $1` is the bound value's type).
                self.statement_schema(&handle.sql, &handle.parameters, principal).await
            }
            Command::CommandGetCatalogs(q) => Ok(q.into_builder().schema()),
            Command::CommandGetDbSchemas(q) => Ok(q.into_builder().schema()),
            Command::CommandGetTables(q) => Ok(q.into_builder().schema()),
            Command::CommandGetTableTypes(q) => Ok(q.into_builder().schema()),
            Command::CommandGetSqlInfo(q) => Ok(q.into_builder(&self.sql_info).schema()),
            Command::CommandGetXdbcTypeInfo(q) => Ok(q.into_builder(&XDBC_INFO).schema()),
            Command::CommandGetPrimaryKeys(_) => Ok(Arc::new(keys_schema())),
            Command::CommandGetExportedKeys(_)
            | Command::CommandGetImportedKeys(_)
            | Command::CommandGetCrossReference(_) => Ok(Arc::new(foreign_keys_schema())),
            other => Err(Status::unimplemented(format!("GetSchema of {}", other.type_url()))),
        }
    }

    /// A Flight SQL DoGet: a statement's partition, or a catalog answer.
    pub async fn do_get_ticket(&self, ticket: Bytes, principal: &Principal) -> Result<SqlRows, Status> {
        let any = Any::decode(ticket.as_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if any.is::<TicketStatementQuery>() {
            let query: TicketStatementQuery = any
                .unpack()
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .ok_or_else(|| Status::invalid_argument("not a TicketStatementQuery"))?;
            let statement = StatementTicket::decode(query.statement_handle.as_ref())
                .map_err(|e| Status::invalid_argument(format!("not a Sheaf SQL ticket: {e}")))?;
            let what =
                format!("SQL {} partition {}", crate::query::limits::clip(&statement.sql, 200), statement.partition);
            let revisions = statement.pins.as_ref().map(|p| p.revisions()).unwrap_or_default();
            let may_reuse = may_read_all(principal, &revisions);
            return Ok(SqlRows::Statement(SqlStatement {
                ticket: statement,
                bytes: ticket,
                what,
                revisions,
                may_reuse,
            }));
        }
        let mut request = Request::new(Ticket { ticket });
        request.extensions_mut().insert(principal.clone());
        let response = FlightService::do_get(self, request).await?;
        Ok(SqlRows::Catalog(response.into_inner().boxed()))
    }

    /// Runs a statement's result partition for `principal` (who must be
    /// allowed to read every table it reads); also says whether its rows may
    /// be kept for later DoGets of the same ticket
    /// ([`crate::sql::SqlEngine::execute`]).
    pub async fn run(&self, statement: SqlStatement, principal: &Principal) -> Result<(Execution, bool), Status> {
        let (execution, reusable) = self.sql.execute(statement.ticket, Self::may_read(principal)).await?;
        let (guard, cancelled) = self.cancels.register(statement.bytes.to_vec());
        let batches = until_cancelled(execution.batches, cancelled, guard);
        Ok((Execution { batches, ..execution }, reusable))
    }

    /// The FlightInfo of a catalog command: one endpoint whose ticket is
    /// the command itself.
    fn catalog_info(
        &self,
        command: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(command.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// The readable packages whose name matches a LIKE `pattern`, with
    /// their latest revision.
    async fn packages(&self, principal: &Principal, pattern: Option<&str>) -> Result<Vec<(String, String)>, Status> {
        let packages = self.sql.engine().registry().list_packages().await?;
        let readable: Vec<(String, String)> = packages
            .into_iter()
            .filter(|p| principal.may(Access::Read, &p.name))
            .filter_map(|p| Some((p.name.clone(), p.latest?)))
            .collect();
        Ok(match pattern {
            None => readable,
            Some(pattern) => {
                let names = StringArray::from_iter_values(readable.iter().map(|(n, _)| n.as_str()));
                let matched = like("schema", &names, pattern)?;
                readable.into_iter().zip(matched.iter()).filter(|(_, m)| *m == Some(true)).map(|(p, _)| p).collect()
            }
        })
    }
}

/// Encodes one batch as a DoGet answer.
fn answer(
    batch: Result<RecordBatch, impl std::fmt::Display>,
) -> Result<Response<BoxStream<'static, Result<FlightData, Status>>>, Status> {
    let batch = batch.map_err(|e| Status::internal(format!("building the answer: {e}")))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(stream.boxed()))
}

/// A read-only refusal.
fn read_only(what: &str) -> Status {
    Status::invalid_argument(format!("{what}: Sheaf SQL is read-only (no transactions, no writes through SQL)"))
}

#[tonic::async_trait]
impl FlightSqlService for SqlFlight {
    type FlightService = SqlFlight;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if query.transaction_id.is_some() {
            return Err(read_only("a statement in a transaction"));
        }
        let principal = self.caller(&request)?;
        let info = self.statement_info(&query.query, Vec::new(), &principal, request.into_inner()).await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.caller(&request)?;
        let handle = open_handle(&query.prepared_statement_handle)?;
        let info = self.statement_info(&handle.sql, handle.parameters, &principal, request.into_inner()).await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.catalog_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog_info(query, &keys_schema(), request.into_inner())
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog_info(query, &foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog_info(query, &foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.catalog_info(query, &foreign_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&XDBC_INFO).schema();
        self.catalog_info(query, &schema, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.caller(&request)?;
        let bytes = ticket.as_any().encode_to_vec();
        match self.do_get_ticket(bytes.into(), &principal).await? {
            SqlRows::Statement(statement) => {
                let (execution, _) = self.run(statement, &principal).await?;
                let batches =
                    execution.batches.map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(e.into())));
                let stream =
                    FlightDataEncoderBuilder::new().with_schema(execution.schema).build(batches).map_err(Status::from);
                Ok(Response::new(stream.boxed()))
            }
            SqlRows::Catalog(stream) => Ok(Response::new(stream)),
        }
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(crate::sql::CATALOG);
        answer(builder.build())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.caller(&request)?;
        check_patterns(&[("schema", &query.db_schema_filter_pattern)])?;
        let packages = match query.catalog.as_deref() {
            Some(c) if c != crate::sql::CATALOG => Vec::new(),
            _ => self.packages(&principal, query.db_schema_filter_pattern.as_deref()).await?,
        };
        let mut builder = query.into_builder();
        for (name, _) in packages {
            builder.append(crate::sql::CATALOG, name);
        }
        answer(builder.build())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.caller(&request)?;
        // The patterns are checked first: the builder applies them again
        // while answering, where one it cannot match would look like the
        // server's fault (INTERNAL).
        check_patterns(&[("schema", &query.db_schema_filter_pattern), ("table", &query.table_name_filter_pattern)])?;
        let packages = match query.catalog.as_deref() {
            Some(c) if c != crate::sql::CATALOG => Vec::new(),
            _ => self.packages(&principal, query.db_schema_filter_pattern.as_deref()).await?,
        };
        let include_schema = query.include_schema;
        let mut builder = query.into_builder();
        for (package, top_hash) in packages {
            // A package whose latest revision cannot be read (its manifest
            // missing or unparseable) is left out, as tables that cannot be
            // planned are, so the others are listed; a failure that may pass
            // (storage, limits) fails the listing.
            let tables = match self.sql.tables(&package, &top_hash, include_schema).await.map_err(Status::from) {
                Ok(tables) => tables,
                Err(e) if super::status::is_transient(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(package = %package, top_hash = %top_hash, error = %e.message(),
                        "GetTables: leaving out a package whose tables cannot be listed");
                    continue;
                }
            };
            for (table, schema) in tables {
                let schema = schema.unwrap_or_else(|| Arc::new(Schema::empty()));
                let name = if table.is_empty() { MANIFEST_TABLE.to_owned() } else { table };
                builder
                    .append(crate::sql::CATALOG, &package, name, "TABLE", &schema)
                    .map_err(|e| Status::internal(format!("listing tables: {e}")))?;
            }
        }
        answer(builder.build())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        answer(builder.build())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        answer(query.into_builder(&self.sql_info).build())
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        answer(Ok::<_, Status>(RecordBatch::new_empty(Arc::new(keys_schema()))))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        answer(Ok::<_, Status>(RecordBatch::new_empty(Arc::new(foreign_keys_schema()))))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        answer(Ok::<_, Status>(RecordBatch::new_empty(Arc::new(foreign_keys_schema()))))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        answer(Ok::<_, Status>(RecordBatch::new_empty(Arc::new(foreign_keys_schema()))))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        answer(query.into_builder(&XDBC_INFO).build())
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        if query.transaction_id.is_some() {
            return Err(read_only("a prepared statement in a transaction"));
        }
        let principal = self.caller(&request)?;
        let planned = self.sql.plan(&query.query, None, Self::may_read(&principal), None).await?;
        let handle = PreparedHandle { sql: query.query, parameters: Vec::new() };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.encode_to_vec().into(),
            dataset_schema: schema_bytes(&planned.schema())?,
            parameter_schema: match planned.parameters.fields().is_empty() {
                true => Bytes::new(),
                false => schema_bytes(&advertised(&planned.parameters))?,
            },
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles hold no server state.
        Ok(())
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(read_only("BeginTransaction"))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only("EndTransaction"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(read_only("BeginSavepoint"))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(read_only("EndSavepoint"))
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let principal = self.caller(&request)?;
        let info = FlightInfo::decode(query.info.as_ref())
            .map_err(|e| Status::invalid_argument(format!("CancelQuery: not a FlightInfo: {e}")))?;
        // CancelResult: 1 cancelled, 3 not cancellable.
        let result = match self.cancels.cancel_info(&info, |ticket| may_cancel(&principal, ticket)) {
            CancelStatus::Cancelled => 1,
            _ => 3,
        };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return Err(Status::invalid_argument(format!(
                "unknown action {}",
                crate::query::limits::excerpt(&request.get_ref().r#type)
            )));
        }
        let principal = self.caller(&request)?;
        let action = request.into_inner();
        let cancel = CancelFlightInfoRequest::decode(action.body.as_ref())
            .map_err(|e| Status::invalid_argument(format!("CancelFlightInfo: {e}")))?;
        let info = cancel.info.ok_or_else(|| Status::invalid_argument("CancelFlightInfo names no FlightInfo"))?;
        let status = self.cancels.cancel_info(&info, |ticket| may_cancel(&principal, ticket));
        let body = CancelFlightInfoResult { status: status as i32 }.encode_to_vec();
        Ok(Response::new(stream::once(async move { Ok(arrow_flight::Result::new(body)) }).boxed()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
