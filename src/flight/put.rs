//! DoPut: an Arrow stream becomes a Parquet table in a new revision.
//!
//! The stream is written to a temporary Parquet file as it arrives (memory
//! stays bounded by the writer's row group) and profiled on the way
//! ([`crate::profile`]), then committed with
//! [`crate::registry::Registry::commit`], or, when the request names a write
//! session, staged as one of its parts
//! ([`crate::registry::Registry::stage_part`]; `commit_write` commits them).
//! Nothing is visible until the stream has ended successfully and `latest`
//! has moved; a stream that fails or is cancelled leaves no revision behind.

use crate::auth::{Access, Principal};
use crate::proto::{ErrorReason, Form, PutResponse};
use crate::query::{DatasetUri, Engine};
use crate::registry::{Base, Revision};
use arrow::array::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use futures::stream::{self, StreamExt, TryStreamExt};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tonic::{Status, Streaming};

/// `flight` with every message checked ([`crate::query::ipc`]) before
/// arrow decodes it: a message arrow would panic or over-allocate on is
/// refused, naming `what` is being uploaded.
pub(super) fn checked_ipc(
    flight: impl futures::Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
    what: String,
) -> impl futures::Stream<Item = Result<FlightData, FlightError>> + Send + 'static {
    use crate::query::ipc::{IpcLimits, check_message};
    flight.map(move |item| {
        let data = item?;
        match check_message(&data.data_header, &data.data_body, IpcLimits::UPLOAD) {
            Ok(()) => Ok(data),
            Err(why) => Err(FlightError::Tonic(Box::new(Status::invalid_argument(format!(
                "{what}: the uploaded stream is not valid Arrow IPC: {why}"
            ))))),
        }
    })
}

/// The next decoded batch of an upload. arrow panics on some batches its
/// checks pass (a validity bitmap shorter than its column): that is the
/// client's malformed stream, INVALID_ARGUMENT.
pub(super) async fn next_batch(
    batches: &mut FlightRecordBatchStream,
    what: &str,
) -> Result<Option<RecordBatch>, Status> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(batches.try_next()).catch_unwind().await {
        Ok(next) => next.map_err(|e| stream_error(e, what)),
        Err(_) => Err(Status::invalid_argument(format!(
            "DoPut to {what}: the uploaded stream is not valid Arrow IPC: a batch cannot be decoded"
        ))),
    }
}

fn stream_error(e: FlightError, what: &str) -> Status {
    match e {
        FlightError::Tonic(status) => *status,
        other => {
            Status::invalid_argument(format!("DoPut to {what}: the uploaded stream is not valid Arrow IPC: {other}"))
        }
    }
}

/// Refuses, before anything is written, a schema Sheaf cannot store: too
/// many columns, or a column whose type Parquet cannot hold (named).
fn check_schema(schema: &arrow::datatypes::Schema, what: &str) -> Result<(), Status> {
    use crate::query::limits::{MAX_COLUMNS, excerpt};
    let columns = schema.fields().len();
    if columns == 0 {
        return Err(Status::invalid_argument(format!(
            "DoPut to {what}: the table has no columns; Parquet cannot keep its rows"
        )));
    }
    // Nested fields count: each is a column of its own in Parquet, with
    // its own writer, statistics and profile.
    let leaves: usize = schema.fields().iter().map(|f| leaf_columns(f.data_type())).sum();
    if columns > MAX_COLUMNS || leaves > MAX_COLUMNS {
        return Err(Status::invalid_argument(format!(
            "DoPut to {what}: the table has {columns} columns ({leaves} counting the fields of nested ones); at \
             most {MAX_COLUMNS} are accepted"
        )));
    }
    let mut names = std::collections::HashSet::new();
    if let Some(twice) = schema.fields().iter().find(|f| !names.insert(f.name().as_str())) {
        let status = Status::invalid_argument(format!(
            "DoPut to {what}: two columns are named {}; column names must differ (no reader could tell them apart)",
            excerpt(twice.name())
        ));
        return Err(super::status::detailed(status, ErrorReason::InvalidRequest, &[("column", twice.name())]));
    }
    for field in schema.fields() {
        let refuse = |why: String| {
            let status = Status::invalid_argument(format!(
                "DoPut to {what}: column {} has type {} that cannot be stored as Parquet: {why}",
                excerpt(field.name()),
                field.data_type()
            ));
            super::status::detailed(status, ErrorReason::InvalidRequest, &[("column", field.name())])
        };
        if let Some(bad) = unwritable(field.data_type()) {
            return Err(refuse(format!("Parquet has no {bad}")));
        }
        let single = arrow::datatypes::Schema::new(vec![field.clone()]);
        let converted = std::panic::catch_unwind(|| parquet::arrow::ArrowSchemaConverter::new().convert(&single));
        let why = match converted {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "Parquet has no such type".to_owned(),
        };
        return Err(refuse(why));
    }
    Ok(())
}

/// The Parquet columns (leaves) a column of `data_type` makes.
fn leaf_columns(data_type: &arrow::datatypes::DataType) -> usize {
    use arrow::datatypes::DataType as T;
    match data_type {
        T::List(f) | T::LargeList(f) | T::ListView(f) | T::LargeListView(f) | T::FixedSizeList(f, _) | T::Map(f, _) => {
            leaf_columns(f.data_type())
        }
        T::Struct(fields) => fields.iter().map(|f| leaf_columns(f.data_type())).sum::<usize>().max(1),
        T::Dictionary(_, value) => leaf_columns(value),
        T::RunEndEncoded(_, values) => leaf_columns(values.data_type()),
        _ => 1,
    }
}

/// The part of `data_type` (itself or a nested type) that the Parquet
/// writer cannot write although the schema converter accepts it: intervals
/// of nanoseconds (Parquet's INTERVAL holds months, days and milliseconds).
fn unwritable(data_type: &arrow::datatypes::DataType) -> Option<String> {
    use arrow::datatypes::{DataType as T, IntervalUnit};
    match data_type {
        T::Interval(IntervalUnit::MonthDayNano) => Some("interval of nanoseconds (month_day_nano)".into()),
        T::List(f) | T::LargeList(f) | T::ListView(f) | T::LargeListView(f) | T::FixedSizeList(f, _) | T::Map(f, _) => {
            unwritable(f.data_type())
        }
        T::Struct(fields) => fields.iter().find_map(|f| unwritable(f.data_type())),
        T::Dictionary(_, value) => unwritable(value),
        T::RunEndEncoded(_, values) => unwritable(values.data_type()),
        _ => None,
    }
}

/// Most rows in one uploaded record batch. A batch's row count costs the
/// sender nothing when its columns are all null, so it is checked before the
/// Parquet writer (which splits a batch recursively by row group) sees it.
const MAX_BATCH_ROWS: usize = 1 << 24;

fn check_batch(batch: &arrow::array::RecordBatch, what: &str) -> Result<(), Status> {
    if batch.num_rows() > MAX_BATCH_ROWS {
        return Err(Status::invalid_argument(format!(
            "DoPut to {what}: a record batch of {} rows; at most {MAX_BATCH_ROWS} per batch are accepted",
            batch.num_rows()
        )));
    }
    Ok(())
}

/// An uploaded Arrow stream, written to a temporary Parquet file.
pub struct Received {
    /// The Parquet file (removed when dropped).
    pub file: tempfile::NamedTempFile,
    /// Rows received.
    pub rows: u64,
    /// `(name, Arrow type)` of its columns.
    pub columns: Vec<(String, String)>,
    /// Its profile, computed as the batches arrived.
    pub profile: crate::profile::Profile,
    /// Milliseconds the profiler computed (it runs beside the writer).
    pub profile_ms: u64,
}

impl Received {
    /// The manifest entry metadata of the table: its profile.
    pub fn entry_meta(&self) -> serde_json::Value {
        serde_json::json!({ "sheaf": { "profile": self.profile.to_json() } })
    }
}

/// How long an upload may send nothing before it is dropped
/// (DEADLINE_EXCEEDED): an idle upload holds a temporary file and its
/// writer's buffers.
pub const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// Writes the record batches of `flight` to a temporary Parquet file as they
/// arrive, profiling them. Each batch is encoded and profiled on blocking
/// threads while the next one is received (the two overlap each other and
/// the network, and no runtime worker is held by CPU-bound work); nothing
/// holds a thread while the upload waits for the client, so idle uploads
/// cannot use up the blocking pool the server's storage reads share, and an
/// upload idle for [`UPLOAD_IDLE`] is dropped. Memory stays bounded by the
/// writer's row group plus a batch.
pub(super) async fn receive(
    flight: impl futures::Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
    what: &str,
) -> Result<Received, Status> {
    let mut batches = FlightRecordBatchStream::new_from_flight_data(checked_ipc(flight, format!("DoPut to {what}")));
    let first_batch = next_idle_bounded(&mut batches, what).await?;
    let schema = batches
        .schema()
        .cloned()
        .ok_or_else(|| Status::invalid_argument(format!("DoPut to {what}: the stream carries no schema")))?;
    check_schema(&schema, what)?;
    let temp = tempfile::Builder::new()
        .prefix("sheaf-put-")
        .suffix(".parquet")
        .tempfile()
        .map_err(|e| local_error(&e, what, "cannot create a temporary file"))?;
    let file = temp.reopen().map_err(|e| local_error(&e, what, "cannot open its temporary file"))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
        .build();
    let write_error = |e: parquet::errors::ParquetError| match crate::registry::storage_full(&e) {
        true => local_error(&e, what, "writing its temporary file"),
        false => Status::invalid_argument(format!("DoPut to {what}: writing Parquet: {e}")),
    };
    let columns = crate::registry::columns_of(&schema);
    let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(write_error)?;
    let panicked = |e: tokio::task::JoinError| Status::internal(format!("DoPut to {what}: {e}"));
    let mut writer = Worker::new(writer);
    let mut profiler = Worker::new((crate::profile::Profiler::new(&schema), std::time::Duration::ZERO));
    let mut rows = 0u64;
    let mut next = first_batch;
    while let Some(batch) = next {
        check_batch(&batch, what)?;
        rows += batch.num_rows() as u64;
        let profiled = batch.clone();
        profiler
            .then(move |(mut profiler, spent)| {
                let t = std::time::Instant::now();
                profiler.update(&profiled);
                Ok::<_, Status>((profiler, spent + t.elapsed()))
            })
            .await
            .map_err(panicked)??;
        writer
            .then(move |mut writer| writer.write(&batch).map(|()| writer))
            .await
            .map_err(panicked)?
            .map_err(write_error)?;
        next = next_idle_bounded(&mut batches, what).await?;
    }
    let writer = writer.finish().await.map_err(panicked)?.map_err(write_error)?;
    let (profiler, profiling_time) = profiler.finish().await.map_err(panicked)??;
    let profile = tokio::task::spawn_blocking(move || writer.close().map(|_| profiler.finish()))
        .await
        .map_err(panicked)?
        .map_err(write_error)?;
    Ok(Received { file: temp, rows, columns, profile, profile_ms: profiling_time.as_millis() as u64 })
}

/// A local file failure while receiving an upload: RESOURCE_EXHAUSTED when
/// the server's disk is full (no retry helps until space is freed), else
/// UNAVAILABLE. The server's paths are left out (they are for the log).
fn local_error(e: &(dyn std::error::Error + 'static), what: &str, doing: &str) -> Status {
    tracing::warn!(error = %e, target = what, "DoPut: {doing}");
    match crate::registry::storage_full(e) {
        true => super::status::storage_full(format!(
            "DoPut to {what}: {doing}: the server's storage is full; retrying will not help until space is freed"
        )),
        false => Status::unavailable(format!("DoPut to {what}: {doing} failed on the server; retry later")),
    }
}

/// A state (a Parquet writer, a profiler) that works on blocking threads a
/// step at a time: each step starts when the previous one is done, and
/// between steps no thread is held. After a failed step it holds nothing
/// (the upload ends with that failure).
struct Worker<S: Send + 'static, E: Send + 'static>(Option<Step<S, E>>);

enum Step<S, E> {
    Idle(S),
    Working(tokio::task::JoinHandle<Result<S, E>>),
}

impl<S: Send + 'static, E: Send + 'static> Worker<S, E> {
    fn new(state: S) -> Self {
        Worker(Some(Step::Idle(state)))
    }

    /// Waits for the running step (returning its error, if it failed),
    /// then starts `step` on a blocking thread.
    async fn then(
        &mut self,
        step: impl FnOnce(S) -> Result<S, E> + Send + 'static,
    ) -> Result<Result<(), E>, tokio::task::JoinError> {
        let state = match self.0.take().expect("no step after a failed one") {
            Step::Idle(state) => state,
            Step::Working(task) => match task.await? {
                Ok(state) => state,
                Err(e) => return Ok(Err(e)),
            },
        };
        self.0 = Some(Step::Working(tokio::task::spawn_blocking(move || step(state))));
        Ok(Ok(()))
    }

    /// The state once its last step is done.
    async fn finish(self) -> Result<Result<S, E>, tokio::task::JoinError> {
        match self.0.expect("no step after a failed one") {
            Step::Idle(state) => Ok(Ok(state)),
            Step::Working(task) => task.await,
        }
    }
}

/// The next batch of an upload, or DEADLINE_EXCEEDED once it has sent
/// nothing for [`UPLOAD_IDLE`].
async fn next_idle_bounded(batches: &mut FlightRecordBatchStream, what: &str) -> Result<Option<RecordBatch>, Status> {
    tokio::time::timeout(UPLOAD_IDLE, next_batch(batches, what)).await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(format!(
            "DoPut to {what}: the upload sent nothing for {} s; it is dropped (nothing was written)",
            UPLOAD_IDLE.as_secs()
        )))
    })
}

/// Receives one DoPut and commits it (or, in a write session, stages it as
/// a part; or, for a Flight SQL bulk ingest, writes it through a session of
/// its own: [`super::ingest`]); returns the result's `app_metadata`: what it
/// did, in the form of the request's descriptor.
pub async fn put(
    engine: &Engine,
    sql: Option<&super::sql::SqlFlight>,
    mut messages: Streaming<FlightData>,
    principal: &Principal,
    note: &super::audit::AuditNote,
) -> Result<Vec<u8>, Status> {
    let first = messages.message().await?.ok_or_else(|| {
        Status::invalid_argument(
            "DoPut received no messages, so no descriptor naming where to write (ADBC's bulk ingest sends none for a \
             table of no rows: ingest at least one row)",
        )
    })?;
    let descriptor = first
        .flight_descriptor
        .clone()
        .ok_or_else(|| Status::invalid_argument("the first DoPut message must carry the flight descriptor"))?;
    if let Some(command) = super::ingest::command(&descriptor)? {
        let flight = stream::once(futures::future::ready(Ok(first)))
            .chain(messages.map_err(|s| FlightError::Tonic(Box::new(s))));
        return super::ingest::ingest(engine, command, flight, principal, note).await;
    }
    if super::sql::is_sql(&descriptor.cmd)? {
        let sql = sql.ok_or_else(|| Status::unimplemented("this server does not offer Flight SQL"))?;
        let flight = stream::once(futures::future::ready(Ok(first)))
            .chain(messages.map_err(|s| FlightError::Tonic(Box::new(s))));
        return sql.put(&descriptor, flight).await;
    }
    let (response, form) = put_table(engine, first, descriptor, messages, principal, note).await?;
    Ok(form.encode(&response, false))
}

/// A DoPut of a dataset request: one table committed, or one part staged.
async fn put_table(
    engine: &Engine,
    first: FlightData,
    descriptor: arrow_flight::FlightDescriptor,
    messages: Streaming<FlightData>,
    principal: &Principal,
    note: &super::audit::AuditNote,
) -> Result<(PutResponse, Form), Status> {
    let (target, form) = super::descriptor::put_target(&descriptor)?;
    note.target(&target.package.to_string(), None, Some(&target.path));
    let registry = engine.registry();
    // Before anything is read or written: a write grant on the package.
    super::auth::require(principal, Access::Write, &target.package.to_string(), || {
        registry.package_not_found(&target.package).into()
    })?;
    let what = format!("{}/{}", target.package, target.path);
    let flight =
        stream::once(futures::future::ready(Ok(first))).chain(messages.map_err(|s| FlightError::Tonic(Box::new(s))));

    if let Some(session) = &target.session {
        // The session must exist and be of this package before any data is read.
        let spec = registry.write_session(session).await?;
        if spec.package != target.package.to_string() {
            return Err(crate::registry::Error::SessionNotFound {
                session: session.clone(),
                // The session's package is named only to whom may read it.
                why: match principal.may(Access::Read, &spec.package) {
                    true => format!("it writes {}, not {}", spec.package, target.package),
                    false => format!("it does not write {}", target.package),
                },
            }
            .into());
        }
        let started = std::time::Instant::now();
        let received = receive(flight, &what).await?;
        let receive_ms = started.elapsed().as_millis() as u64;
        let meta = received.entry_meta();
        let part = registry
            .stage_part(
                session,
                &target.path,
                target.part.unwrap_or(0),
                received.file.path(),
                received.rows,
                received.columns.clone(),
                meta,
            )
            .await?;
        tracing::info!(principal = %principal.label(), package = %target.package, path = %target.path, session = %session,
            part = %part.id, rows = part.rows, bytes = part.size, receive_ms, stage_ms = started.elapsed().as_millis() as u64 - receive_ms,
            profile_ms = received.profile_ms, "DoPut staged a part");
        let response = PutResponse {
            package: target.package.to_string(),
            path: part.key,
            rows: part.rows,
            bytes: part.size,
            session: session.clone(),
            part_id: part.id,
            ..Default::default()
        };
        return Ok((response, form));
    }

    let base = match &target.revision {
        Revision::Latest => Base::Latest,
        revision => Base::Exactly(registry.resolve(&target.package, revision).await?),
    };
    let received = receive(flight, &what).await?;
    let message = target.message.clone().or_else(|| Some(format!("put {}", target.path)));
    let file = crate::registry::CommitFile {
        key: target.path.clone(),
        path: received.file.path().to_path_buf(),
        meta: received.entry_meta(),
        columns: Some(received.columns.clone()),
    };
    let report = registry.commit(&target.package, vec![file], &base, message).await.map_err(|e| {
        // The store's context names the file, not the table written.
        match e.is_storage_full() {
            true => local_error(&e, &what, "storing the revision"),
            false => Status::from(e),
        }
    })?;
    let rows = received.rows;
    crate::metrics::DO_PUT.add(1);
    note.target(&report.package, Some(&report.top_hash), None);
    tracing::info!(principal = %principal.label(), package = %report.package, path = %target.path, rows, bytes = report.bytes, top_hash = %report.top_hash,
        previous = ?report.previous, "DoPut committed");
    let uri = DatasetUri::table(&target.package, &report.top_hash, &target.path).to_string();
    let response = PutResponse {
        package: report.package,
        top_hash: report.top_hash,
        previous: report.previous,
        path: target.path,
        rows,
        bytes: report.bytes,
        uri,
        ..Default::default()
    };
    Ok((response, form))
}
