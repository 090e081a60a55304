//! Fuzz targets, shared by `tests/fuzz.rs` (corpus replay and seeded
//! mutations under `cargo test`) and the cargo-fuzz crate in `fuzz/` (long
//! runs); both include this file with `#[path]`. It lives under
//! `tests/fuzz/` so that Cargo does not build it as a test crate of its own.
//!
//! Each target takes arbitrary bytes. It must not panic (in the caller or in
//! any task it spawns), hang, or fail uncleanly: input errors are
//! INVALID_ARGUMENT or NOT_FOUND with a message, never INTERNAL or UNKNOWN.
//! Where a result has a checkable property (a URI prints back to itself, a
//! manifest round-trips, an upload reads back with as many rows as it
//! reported, partitions add up to a single read), the target asserts it.
//!
//! The targets run against [`fixture`]: one in-memory registry holding the
//! package `fuzz/p` (a Parquet table of 200 rows in 4 row groups, a folder
//! table of two Parquet parts, CSV, JSON lines, Arrow IPC stream and file
//! tables, a text file; tag `v1`), an [`Engine`] and a [`SheafFlight`].

use arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::Int32Type;
use arrow_flight::Action;
use arrow_flight::flight_service_server::FlightService;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use prost::Message;
use sheaf::flight::SheafFlight;
use sheaf::flight::cache::StreamCache;
use sheaf::manifest::Manifest;
use sheaf::progress::NoProgress;
use sheaf::proto;
use sheaf::query::{DatasetUri, Engine, PutTarget, Revision};
use sheaf::registry::PushOptions;
use sheaf::{PackageName, Registry};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tonic::{Code, Request};

/// Every target, by name (the corpus folder under `tests/fuzz/corpus/`).
pub const TARGETS: &[(&str, fn(&[u8]))] =
    &[("uri", uri), ("filter", filter), ("ticket", ticket), ("manifest", manifest), ("action", action), ("put", put)];

/// Rows of `t/data.parquet`.
pub const DATA_ROWS: usize = 200;
/// Most rows any fixture table has.
const MAX_TABLE_ROWS: u64 = 200;
/// Longest a single target call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry, engine and Flight service the targets run against.
pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub engine: Arc<Engine>,
    pub flight: Arc<SheafFlight>,
    pub top_hash: String,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (engine, flight, top_hash) = rt.block_on(async {
            let registry = Registry::with_store("memory://sheaf-fuzz", Arc::new(InMemory::new())).unwrap();
            let dir = tempfile::tempdir().unwrap();
            for (key, data) in fixture_files() {
                let path = dir.path().join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, data).unwrap();
            }
            let package: PackageName = "fuzz/p".parse().unwrap();
            let meta = serde_json::json!({"source": "fuzz", "n": [1, 2.5, "é"]});
            let opts = PushOptions {
                message: Some("fuzz fixture".into()),
                user_meta: meta.as_object().cloned(),
                ..Default::default()
            };
            let report = registry.push(&package, dir.path(), &opts, &NoProgress).await.unwrap();
            registry.tag(&package, &report.top_hash, "v1", false).await.unwrap();
            let engine = Arc::new(Engine::new(registry));
            // No stream cache: a target's outcome must not depend on earlier calls.
            let flight = Arc::new(new_flight(engine.clone(), StreamCache::new(0, 1)));
            (engine, flight, report.top_hash)
        });
        Fixture { rt, engine, flight, top_hash }
    })
}

/// DoGet's messages for `ticket`, as a caller without `--auth` (who may read everything).
pub async fn redeem(flight: &SheafFlight, ticket: Bytes) -> Result<sheaf::flight::doget::DoGetStream, tonic::Status> {
    flight.messages(ticket, &sheaf::auth::Principal::unrestricted(), &Default::default()).await
}

/// A Flight service over `engine` with the server's default limits.
pub fn new_flight(engine: Arc<Engine>, cache: Arc<StreamCache>) -> SheafFlight {
    SheafFlight::new(engine, Default::default(), cache, sheaf::flight::pipeline::Gates::new(8, 64), Default::default())
}

fn data_batch() -> RecordBatch {
    let n = DATA_ROWS as i64;
    let ids: Vec<i64> = (0..n).collect();
    let names: Vec<Option<String>> = ids.iter().map(|i| (i % 7 != 0).then(|| format!("s{i}"))).collect();
    let cats: DictionaryArray<Int32Type> = ids.iter().map(|i| ["a", "b", "c"][(*i % 3) as usize]).collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
        ("s", Arc::new(StringArray::from(names)) as ArrayRef),
        ("x", Arc::new(Float64Array::from_iter_values(ids.iter().map(|i| *i as f64 * 0.5 - 20.0)))),
        ("flag", Arc::new(BooleanArray::from_iter(ids.iter().map(|i| Some(i % 3 == 0))))),
        ("day", Arc::new(Date32Array::from_iter_values(ids.iter().map(|i| 18_000 + *i as i32)))),
        ("cat", Arc::new(cats)),
    ])
    .unwrap()
}

fn part_batch(offset: i64, n: i64) -> RecordBatch {
    let ids: Vec<i64> = (offset..offset + n).collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
        ("v", Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("v{i}"))))),
    ])
    .unwrap()
}

fn parquet_of(batch: &RecordBatch, row_group_rows: usize) -> Vec<u8> {
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(row_group_rows)).build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    out
}

/// IPC stream bytes of `batches` (all of one schema).
pub fn ipc_stream_of(batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    out
}

fn fixture_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut csv = String::from("id,name,x\n");
    let mut jsonl = String::new();
    for i in 0..50 {
        csv.push_str(&format!("{i},n{i},{}\n", i as f64 / 4.0));
        jsonl.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\", \"x\": {}}}\n", i as f64 / 4.0));
    }
    // An IPC file as pyarrow writes it (8-byte alignment), and one as
    // arrow-rs writes it by default (64-byte alignment: 58 bytes of padding
    // after the magic).
    let ipc_file = |alignment: usize| {
        let b = part_batch(0, 40);
        let options =
            arrow::ipc::writer::IpcWriteOptions::try_new(alignment, false, arrow::ipc::MetadataVersion::V5).unwrap();
        let mut out = Vec::new();
        let mut w = arrow::ipc::writer::FileWriter::try_new_with_options(&mut out, &b.schema(), options).unwrap();
        w.write(&b).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    };
    vec![
        ("t/data.parquet", parquet_of(&data_batch(), 64)),
        ("t/parts/a.parquet", parquet_of(&part_batch(0, 30), 16)),
        ("t/parts/b.parquet", parquet_of(&part_batch(30, 30), 16)),
        ("t/parts/_SUCCESS", vec![]),
        ("c.csv", csv.into_bytes()),
        ("j.jsonl", jsonl.into_bytes()),
        ("s.arrows", ipc_stream_of(&[part_batch(0, 20), part_batch(20, 20)])),
        ("f.arrow", ipc_file(8)),
        ("f64.arrow", ipc_file(64)),
        ("notes.txt", b"not a table\n".to_vec()),
    ]
}

/// Inputs each target accepted (parsed, planned, executed, committed), for
/// judging how deep mutations get.
static ACCEPTED: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn accepted(target: &'static str) {
    *ACCEPTED.lock().unwrap().entry(target).or_default() += 1;
}

/// How many inputs `target` accepted so far.
pub fn accepted_count(target: &str) -> u64 {
    ACCEPTED.lock().unwrap().get(target).copied().unwrap_or(0)
}

/// Runs `fut` on the fixture's runtime, failing (as a crash) if it hangs.
fn block_on<F: Future>(what: &str, fut: F) -> F::Output {
    let f = fixture();
    f.rt.block_on(async {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(out) => out,
            Err(_) => panic!("{what}: no answer within {CALL_TIMEOUT:?}"),
        }
    })
}

/// `SHEAF_FUZZ_STRICT=1`: bad DoPut input must be INVALID_ARGUMENT even when
/// arrow's IPC decoder panicked on it (the server catches that panic and
/// answers INTERNAL; without strict mode that is tolerated).
pub fn strict() -> bool {
    std::env::var_os("SHEAF_FUZZ_STRICT").is_some_and(|v| v != "0")
}

/// Crates whose panics the server catches on DoPut input: arrow's IPC
/// decoding, and parquet's schema conversion (`put.rs` asks it about each
/// column and catches its `unimplemented!`).
const CAUGHT_IN_PUT: &[&str] = &["/arrow-ipc-", "/arrow-buffer-", "/arrow-data-", "/arrow-array-", "/parquet-"];

/// Whether a panic raised at `file` while `target` runs is tolerated: one
/// the server catches on DoPut input, outside strict mode.
pub fn tolerated_panic(target: &str, file: &str) -> bool {
    target == "put" && !strict() && CAUGHT_IN_PUT.iter().any(|c| file.contains(c))
}

/// Setup for a libFuzzer target (`fuzz_target!(init: ...)`): builds the
/// fixture, and keeps libFuzzer's abort-on-panic hook from firing for the
/// panics [`tolerated_panic`] allows (the server catches them).
pub fn under_libfuzzer(target: &'static str) {
    fixture();
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let file = info.location().map(|l| l.file()).unwrap_or_default();
        if !tolerated_panic(target, file) {
            abort(info);
        }
    }));
}

/// An error about the client's input: INVALID_ARGUMENT or NOT_FOUND, with a message.
fn assert_input_error(what: &str, code: Code, message: &str) {
    assert!(!message.trim().is_empty(), "{what}: an error without a message ({code:?})");
    assert!(
        matches!(code, Code::InvalidArgument | Code::NotFound),
        "{what}: bad input answered with {code:?}, not INVALID_ARGUMENT or NOT_FOUND: {message}"
    );
}

fn assert_query_input_error(what: &str, e: &sheaf::query::Error) {
    assert_input_error(what, sheaf::flight::status::from_query(e).code(), &e.to_string());
}

/// An error while rows stream (evaluating a filter may fail on some values):
/// any code but UNKNOWN, with a message.
fn assert_stream_error(what: &str, code: Code, message: &str) {
    assert!(!message.trim().is_empty(), "{what}: a stream error without a message ({code:?})");
    assert!(code != Code::Unknown, "{what}: a stream failed with UNKNOWN: {message}");
}

/// Executes every ticket of a plan through `Engine::execute`; the rows, or
/// the first error as (code, message).
async fn execute_all(plan: &sheaf::query::Plan) -> Result<Vec<RecordBatch>, (Code, String)> {
    let engine = &fixture().engine;
    let mut out = Vec::new();
    for t in &plan.tickets {
        let execution = engine
            .execute(t.clone())
            .await
            .map_err(|e| (sheaf::flight::status::from_query(&e).code(), e.to_string()))?;
        let batches: Vec<RecordBatch> = execution
            .batches
            .try_collect()
            .await
            .map_err(|e| (sheaf::flight::status::from_query(&e).code(), e.to_string()))?;
        for b in &batches {
            assert_eq!(b.schema().fields(), plan.schema.fields(), "a batch does not have the planned schema");
        }
        out.extend(batches);
    }
    Ok(out)
}

fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn same_rows(a: &[RecordBatch], b: &[RecordBatch]) -> bool {
    if row_count(a) != row_count(b) {
        return false;
    }
    if a.is_empty() || b.is_empty() {
        return true;
    }
    let x = arrow::compute::concat_batches(&a[0].schema(), a).unwrap();
    let y = arrow::compute::concat_batches(&b[0].schema(), b).unwrap();
    x.columns().iter().zip(y.columns()).all(|(c, d)| c.to_data() == d.to_data())
}

fn check_plan(what: &str, plan: &sheaf::query::Plan) {
    assert!(!plan.tickets.is_empty(), "{what}: a plan without endpoints");
    assert_eq!(plan.tickets.len(), plan.regions.len(), "{what}: one region per endpoint");
    if let Some(rows) = plan.total_rows {
        assert!(rows <= MAX_TABLE_ROWS.max(64), "{what}: total_rows {rows} exceeds every fixture table");
    }
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// Dataset URIs (and DoPut URIs): parse; a URI that parses prints back to
/// itself; planning it against the fixture fails cleanly or yields a sane plan.
pub fn uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = PutTarget::parse(text) {
        assert_query_input_error("PutTarget::parse", &e);
    }
    let parsed = match DatasetUri::parse(text) {
        Ok(u) => u,
        Err(e) => return assert_query_input_error("DatasetUri::parse", &e),
    };
    let printed = parsed.to_string();
    let again = DatasetUri::parse(&printed)
        .unwrap_or_else(|e| panic!("{text:?} parses, but its printed form {printed:?} does not: {e}"));
    assert_eq!(again, parsed, "{text:?} printed as {printed:?} parses differently");
    block_on("plan", async {
        match fixture().engine.plan(&parsed).await {
            Ok(plan) => {
                accepted("uri");
                check_plan(&printed, &plan)
            }
            Err(e) => assert_query_input_error(&format!("plan {printed}"), &e),
        }
    });
}

/// Filter text on the fixture's Parquet table: planning refuses bad filters
/// as bad input; an accepted filter returns at most the table's rows, the
/// same rows whether read as one endpoint or four; then the same filter on
/// the CSV table (filtered by the engine's selector, not the Parquet scan).
pub fn filter(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    block_on("filter", async {
        let engine = &fixture().engine;
        let mut one = DatasetUri::parse("sheaf://fuzz/p/t/data.parquet").unwrap();
        one.query.filter = Some(text.clone()).filter(|f| !f.trim().is_empty());
        let plan = match engine.plan(&one).await {
            Ok(plan) => plan,
            Err(e) => return assert_query_input_error(&format!("filter {text:?}"), &e),
        };
        check_plan(&text, &plan);
        let mut four = one.clone();
        four.query.partitions = Some(4);
        let plan4 = engine
            .plan(&four)
            .await
            .unwrap_or_else(|e| panic!("filter {text:?} plans as one endpoint, not as four: {e}"));
        match (execute_all(&plan).await, execute_all(&plan4).await) {
            (Ok(a), Ok(b)) => {
                accepted("filter");
                assert!(row_count(&a) <= DATA_ROWS, "filter {text:?}: more rows than the table");
                assert!(
                    same_rows(&a, &b),
                    "filter {text:?}: one endpoint gives {} rows, four give {}",
                    row_count(&a),
                    row_count(&b)
                );
            }
            (Err((code, message)), Err(_)) => assert_stream_error(&format!("filter {text:?}"), code, &message),
            (a, b) => panic!(
                "filter {text:?}: one endpoint {}, four endpoints {}",
                a.map(|r| format!("gives {} rows", row_count(&r))).unwrap_or_else(|e| format!("fails: {e:?}")),
                b.map(|r| format!("give {} rows", row_count(&r))).unwrap_or_else(|e| format!("fail: {e:?}")),
            ),
        }
        let mut csv = DatasetUri::parse("sheaf://fuzz/p/c.csv").unwrap();
        csv.query.filter = one.query.filter.clone();
        match engine.plan(&csv).await {
            Ok(plan) => {
                if let Err((code, message)) = execute_all(&plan).await {
                    assert_stream_error(&format!("filter {text:?} on c.csv"), code, &message);
                }
            }
            Err(e) => assert_query_input_error(&format!("filter {text:?} on c.csv"), &e),
        }
    });
}

/// Ticket bytes, as DoGet receives them: prost-decoded and executed by
/// `Engine::execute`, then redeemed through `SheafFlight::messages`.
pub fn ticket(data: &[u8]) {
    block_on("ticket", async {
        let f = fixture();
        if let Ok(t) = proto::Ticket::decode(data) {
            match f.engine.execute(t).await {
                Ok(execution) => match execution.batches.try_collect::<Vec<RecordBatch>>().await {
                    Ok(batches) => {
                        accepted("ticket");
                        assert!(
                            row_count(&batches) as u64 <= MAX_TABLE_ROWS,
                            "a ticket returned more rows than any table"
                        )
                    }
                    Err(e) => assert_stream_error(
                        "executing a ticket",
                        sheaf::flight::status::from_query(&e).code(),
                        &e.to_string(),
                    ),
                },
                Err(e) => assert_query_input_error("executing a ticket", &e),
            }
        }
        match redeem(&f.flight, Bytes::copy_from_slice(data)).await {
            Ok(messages) => {
                let mut messages = messages;
                while let Some(m) = messages.next().await {
                    if let Err(s) = m {
                        assert_stream_error("DoGet of a ticket", s.code(), s.message());
                        break;
                    }
                }
            }
            Err(s) => assert_input_error("DoGet of a ticket", s.code(), s.message()),
        }
    });
}

/// Manifest bytes: parsing fails with a message or yields a manifest that
/// encodes and parses back to itself with the same top hash; stored in a
/// registry, its index holds every entry and its tables are listed and
/// found.
pub fn manifest(data: &[u8]) {
    let (m, parsed) = match Manifest::parse_hashed(data) {
        Ok(m) => m,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    accepted("manifest");
    let top_hash = m.top_hash();
    let text = m.to_jsonl();
    let back = Manifest::parse(&text)
        .unwrap_or_else(|e| panic!("a parsed manifest does not parse back: {e}\n{}", String::from_utf8_lossy(&text)));
    assert_eq!(back, m, "a manifest changed in a write/read round trip");
    assert_eq!(back.top_hash(), top_hash, "a manifest's top hash changed in a round trip");
    let _ = m.with_changes(vec![], Some("fuzz".into()));
    let store = Arc::new(InMemory::new());
    let registry = Registry::with_store("memory://sheaf-fuzz-manifest", store.clone()).unwrap();
    let top = parsed.top_hash;
    block_on("indexing a manifest", async {
        let path = object_store::path::Path::from(format!(".quilt/packages/{top}"));
        store.put(&path, Bytes::copy_from_slice(data).into()).await.unwrap();
        let revision =
            Revision::read(&registry, &top).await.unwrap_or_else(|e| panic!("a parsed manifest is not indexed: {e}"));
        assert_eq!(revision.index.entries, m.entries().count() as u64, "the index counts every entry");
        for (path, _) in revision.tables() {
            if let Err(e) = revision.table(&registry, &path, "fuzz/p").await {
                panic!("table {path:?} is listed but not found: {e}");
            }
        }
    });
}

/// DoAction: the action name, a newline, the body.
pub fn action(data: &[u8]) {
    let (name, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let action = Action { r#type: String::from_utf8_lossy(name).into_owned(), body: Bytes::copy_from_slice(body) };
    block_on("action", async {
        match fixture().flight.do_action(Request::new(action)).await {
            Ok(response) => {
                accepted("action");
                let results: Vec<_> = response.into_inner().collect().await;
                assert_eq!(results.len(), 1, "an action returns one result");
                for r in results {
                    match r {
                        Ok(r) => {
                            serde_json::from_slice::<serde_json::Value>(&r.body).expect("action results are JSON");
                        }
                        Err(s) => assert_input_error("action result", s.code(), s.message()),
                    }
                }
            }
            Err(s) => assert_input_error("action", s.code(), s.message()),
        }
    });
}

/// DoPut of an Arrow IPC stream: its messages become Flight messages (the
/// first carries the descriptor) sent to `SheafFlight::do_put`. An upload
/// that succeeds reads back with as many rows as it reported.
pub fn put(data: &[u8]) {
    let messages = flight_io::put_request("sheaf://fuzz/put/t.parquet", flight_io::ipc_to_flight(data));
    block_on("put", async {
        let f = fixture();
        match flight_io::do_put(&f.flight, messages).await {
            Ok(json) => {
                accepted("put");
                let rows = json["rows"].as_u64().expect("the put result has rows");
                let uri = DatasetUri::parse(json["uri"].as_str().expect("the put result has a uri")).unwrap();
                let plan = f
                    .engine
                    .plan(&uri)
                    .await
                    .unwrap_or_else(|e| panic!("an upload of {rows} rows cannot be planned: {e}"));
                assert_eq!(plan.total_rows, Some(rows), "an upload's planned rows differ from what DoPut reported");
                let batches = execute_all(&plan)
                    .await
                    .unwrap_or_else(|e| panic!("an upload of {rows} rows cannot be read: {e:?}"));
                assert_eq!(
                    row_count(&batches) as u64,
                    rows,
                    "an upload reads back with other rows than DoPut reported"
                );
            }
            Err(s) if s.code() == Code::Internal && !strict() => assert!(!s.message().is_empty()),
            Err(s) => assert_input_error("DoPut", s.code(), s.message()),
        }
    });
}

// ---------------------------------------------------------------------------
// Seeds that are not text: tickets and IPC streams
// ---------------------------------------------------------------------------

/// Generated seeds for the binary targets, `(target, name, bytes)`.
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let f = fixture();
    let uris = [
        "sheaf://fuzz/p/t/data.parquet",
        "sheaf://fuzz/p/t/data.parquet?partitions=3",
        "sheaf://fuzz/p/t/data.parquet?columns=s,id&filter=id%20%3E%2010%20AND%20s%20LIKE%20%27s1%25%27&limit=7",
        "sheaf://fuzz/p/t/data.parquet?sample=0.3&seed=9",
        "sheaf://fuzz/p/t/data.parquet?sample_rows=17&compression=zstd",
        "sheaf://fuzz/p/t/parts?partitions=2",
        "sheaf://fuzz/p/c.csv?filter=x%20%3E%202&columns=name",
        "sheaf://fuzz/p/j.jsonl?sample=0.5",
        "sheaf://fuzz/p/s.arrows",
        "sheaf://fuzz/p/f.arrow?limit=3",
        "sheaf://fuzz/p?partitions=3",
        "sheaf://fuzz/p?content=true&filter=size%20%3C%20100",
    ];
    for (i, text) in uris.iter().enumerate() {
        let plan = block_on("seed plan", f.engine.plan(&DatasetUri::parse(text).unwrap())).unwrap();
        for (j, t) in plan.tickets.iter().enumerate() {
            out.push(("ticket", format!("gen-{i:02}-{j}"), t.encode_to_vec()));
        }
    }
    let batch = data_batch();
    let puts: Vec<(&str, Vec<RecordBatch>)> = vec![
        ("typed", vec![batch.slice(0, 50), batch.slice(50, 20)]),
        ("empty-batch", vec![batch.slice(0, 0)]),
        ("parts", vec![part_batch(0, 5)]),
        ("nested", vec![nested_batch()]),
        ("union", vec![union_batch()]),
    ];
    for (name, batches) in puts {
        out.push(("put", format!("gen-{name}"), ipc_stream_of(&batches)));
    }
    // A schema and no batches.
    let mut schema_only = Vec::new();
    arrow::ipc::writer::StreamWriter::try_new(&mut schema_only, &batch.schema()).unwrap().finish().unwrap();
    out.push(("put", "gen-schema-only".into(), schema_only));
    out
}

/// A union column, which Parquet cannot hold (issue 10: DoPut panicked).
fn union_batch() -> RecordBatch {
    use arrow::array::UnionArray;
    use arrow::buffer::ScalarBuffer;
    use arrow::datatypes::{DataType, Field, UnionFields};
    let fields = UnionFields::try_new(
        vec![0, 1],
        vec![Field::new("i", DataType::Int64, true), Field::new("s", DataType::Utf8, true)],
    )
    .unwrap();
    let children: Vec<ArrayRef> =
        vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec!["a", "b"]))];
    let union = UnionArray::try_new(fields, ScalarBuffer::from(vec![0i8, 1]), None, children).unwrap();
    RecordBatch::try_from_iter([("u", Arc::new(union) as ArrayRef)]).unwrap()
}

fn nested_batch() -> RecordBatch {
    use arrow::array::{ListArray, StructArray};
    use arrow::datatypes::{DataType, Field, Int32Type as I32};
    let list = ListArray::from_iter_primitive::<I32, _, _>(vec![Some(vec![Some(1), None]), None, Some(vec![])]);
    let st = StructArray::from(vec![
        (
            Arc::new(Field::new("a", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("b", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("x"), Some(""), None])) as ArrayRef,
        ),
    ]);
    RecordBatch::try_from_iter([("l", Arc::new(list) as ArrayRef), ("st", Arc::new(st) as ArrayRef)]).unwrap()
}

// ---------------------------------------------------------------------------
// Driving DoPut without a network
// ---------------------------------------------------------------------------

pub mod flight_io {
    use arrow::array::RecordBatch;
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_flight::flight_service_server::FlightService;
    use arrow_flight::{FlightData, FlightDescriptor};
    use bytes::{BufMut, Bytes, BytesMut};
    use futures::{StreamExt, TryStreamExt};
    use prost::Message;
    use sheaf::flight::SheafFlight;
    use tonic::codec::{DecodeBuf, Decoder};
    use tonic::{Request, Status, Streaming};

    /// The Flight messages of a DoPut of `batches` to `uri`, as a client's
    /// encoder sends them (the descriptor rides on the first).
    pub fn put_messages(uri: &str, batches: &[RecordBatch]) -> Vec<FlightData> {
        let owned: Vec<RecordBatch> = batches.to_vec();
        let input = futures::stream::iter(owned.into_iter().map(Ok));
        let encoder = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_cmd(uri.to_owned())))
            .build(input);
        futures::executor::block_on(encoder.try_collect()).unwrap()
    }

    /// The messages of an Arrow IPC stream as Flight messages: each
    /// message's flatbuffer header and the body length it declares
    /// (clamped to the bytes there are), up to the end-of-stream marker.
    pub fn ipc_to_flight(data: &[u8]) -> Vec<FlightData> {
        let word = |pos: usize| data.get(pos..pos + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
        let mut out = Vec::new();
        let mut pos = 0usize;
        while let Some(mut len) = word(pos) {
            pos += 4;
            if len == 0xFFFF_FFFF {
                let Some(l) = word(pos) else { break };
                len = l;
                pos += 4;
            }
            if len == 0 || out.len() >= 256 {
                break;
            }
            let end = pos.saturating_add(len as usize).min(data.len());
            let header = &data[pos..end];
            pos = end;
            let body_len = arrow::ipc::root_as_message(header).map(|m| m.bodyLength().max(0) as usize).unwrap_or(0);
            let end = pos.saturating_add(body_len).min(data.len());
            let body = &data[pos..end];
            pos = end;
            out.push(FlightData {
                flight_descriptor: None,
                data_header: Bytes::copy_from_slice(header),
                app_metadata: Bytes::new(),
                data_body: Bytes::copy_from_slice(body),
            });
        }
        out
    }

    /// Puts the descriptor for `uri` on the first message (adding one if
    /// there is none).
    pub fn put_request(uri: &str, mut messages: Vec<FlightData>) -> Vec<FlightData> {
        if messages.is_empty() {
            messages.push(FlightData::default());
        }
        messages[0].flight_descriptor = Some(FlightDescriptor::new_cmd(uri.to_owned()));
        messages
    }

    struct FlightDataCodec;

    impl Decoder for FlightDataCodec {
        type Item = FlightData;
        type Error = Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<FlightData>, Status> {
            FlightData::decode(src).map(Some).map_err(|e| Status::internal(format!("decoding FlightData: {e}")))
        }
    }

    /// The messages as the gRPC request stream tonic hands to `do_put`
    /// (length-prefixed frames, decoded by prost).
    pub fn streaming(messages: &[FlightData]) -> Streaming<FlightData> {
        let mut body = BytesMut::new();
        for m in messages {
            let bytes = m.encode_to_vec();
            body.put_u8(0);
            body.put_u32(bytes.len() as u32);
            body.put_slice(&bytes);
        }
        Streaming::new_request(FlightDataCodec, http_body_util::Full::new(body.freeze()), None, Some(256 << 20))
    }

    /// Runs one DoPut; its JSON result or the status.
    pub async fn do_put(flight: &SheafFlight, messages: Vec<FlightData>) -> Result<serde_json::Value, Status> {
        let response = flight.do_put(Request::new(streaming(&messages))).await?;
        let mut results = response.into_inner();
        let first = results.next().await.ok_or_else(|| Status::internal("DoPut ended without a result"))??;
        assert!(results.next().await.is_none(), "DoPut sent more than one result");
        serde_json::from_slice(&first.app_metadata)
            .map_err(|e| Status::internal(format!("DoPut result is not JSON: {e}")))
    }
}
