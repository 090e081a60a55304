//! The Rust client crate and `sheaf get` against a real server on loopback
//! (started in-process over a `memory://` registry).

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use sheaf::progress::NoProgress;
use sheaf::query::Engine;
use sheaf::registry::PushOptions;
use sheaf::{Registry, flight};
use sheaf_client::Client;
use std::sync::Arc;

const ROWS: i64 = 30_000;

fn table() -> RecordBatch {
    let ids: Vec<i64> = (0..ROWS).collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids.clone())) as Arc<dyn Array>),
        ("name", Arc::new(StringArray::from_iter_values(ids.iter().map(|i| format!("row-{i}"))))),
        ("x", Arc::new(Float64Array::from_iter_values(ids.iter().map(|i| *i as f64 / 7.0)))),
    ])
    .unwrap()
}

/// Pushes a package with a 3-row-group Parquet table and serves it; returns
/// the server URL and the source folder (kept alive).
async fn start() -> (String, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("t")).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(10_000)).build();
    let file = std::fs::File::create(src.path().join("t/data.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, table().schema(), Some(props)).unwrap();
    w.write(&table()).unwrap();
    w.close().unwrap();
    let registry = Registry::open(&format!("memory://client-{}", std::process::id())).unwrap();
    registry.push(&"t/p".parse().unwrap(), src.path(), &PushOptions::default(), &NoProgress).await.unwrap();
    let engine = Arc::new(Engine::new(registry));
    let (incoming, addr) = flight::bind(([127, 0, 0, 1], 0).into()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let options = flight::ServeOptions::default();
        flight::serve(engine, incoming, &options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (format!("grpc://{addr}"), src, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_lists_plans_and_reads_in_parallel() {
    let (url, _src, _stop) = start().await;
    let client = Client::connect(&url).await.unwrap();

    let packages = client.list_packages(None).await.unwrap();
    assert_eq!(packages[0].name, "t/p");
    let top_hash = client.resolve("t/p").await.unwrap();
    assert_eq!(top_hash.len(), 64);
    let tables = client.list_tables("t/p").await.unwrap();
    assert!(tables.iter().any(|t| t.path == "t/data.parquet" && t.format == "parquet"));

    let dataset = client.dataset("sheaf://t/p/t/data.parquet?partitions=3").await.unwrap();
    assert_eq!(dataset.info.endpoint.len(), 3);
    assert_eq!(dataset.total_rows(), Some(ROWS as u64));
    assert_eq!(dataset.top_hash, top_hash);
    let batches: Vec<RecordBatch> = client.read(&dataset, 3).try_collect().await.unwrap();
    let all = concat_batches(&dataset.schema, &batches).unwrap();
    assert_eq!(all, table(), "the ordered union of endpoints equals the table");

    // Tickets are reusable: the same endpoint twice gives the same rows.
    let e = &dataset.info.endpoint[1];
    let once: Vec<RecordBatch> = client.read_endpoint(e).await.unwrap().try_collect().await.unwrap();
    let twice: Vec<RecordBatch> = client.read_endpoint(e).await.unwrap().try_collect().await.unwrap();
    assert_eq!(once, twice);

    // Projection, filter and a pinned revision.
    let uri = format!("sheaf://t/p@{}/t/data.parquet?columns=name&filter=id%20%3C%205", &top_hash[..10]);
    let (d, batches) = client.read_all(&uri).await.unwrap();
    let names = concat_batches(&d.schema, &batches).unwrap();
    assert_eq!(names.num_columns(), 1);
    assert_eq!(names.num_rows(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_carry_codes_and_names() {
    let (url, _src, _stop) = start().await;
    let client = Client::connect(&url).await.unwrap();
    let err = client.dataset("sheaf://t/p/missing.parquet").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound));
    assert!(err.to_string().contains("missing.parquet"), "{err}");
    let err = client.dataset("sheaf://t/p/t/data.parquet?columns=nope").await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
    assert!(err.to_string().contains("nope"), "{err}");
    let err = Client::connect("grpc://127.0.0.1:1").await.err().expect("nothing listens on port 1");
    assert!(err.to_string().contains("127.0.0.1:1"));
}

/// The typed contract: a `DatasetRequest` names the same rows as its URI,
/// endpoints say which rows they cover, and errors carry their reason and
/// the package, path or column at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_requests_metadata_and_error_details() {
    use sheaf::proto::{DatasetRequest, ErrorReason, dataset_request::Revision};
    let (url, _src, _stop) = start().await;
    let client = Client::connect(&url).await.unwrap();
    let top_hash = client.resolve("t/p").await.unwrap();
    let request = DatasetRequest {
        package: "t/p".into(),
        revision: Some(Revision::TopHash(top_hash[..12].into())),
        path: "t/data.parquet".into(),
        columns: vec!["id".into(), "x".into()],
        partitions: Some(3),
        ..Default::default()
    };
    let typed = client.dataset_request(&request).await.unwrap();
    let text = client
        .dataset(&format!("sheaf://t/p@{}/t/data.parquet?columns=id,x&partitions=3", &top_hash[..12]))
        .await
        .unwrap();
    assert_eq!(typed.top_hash, top_hash);
    assert_eq!(typed.pinned_uri, text.pinned_uri);
    let a: Vec<RecordBatch> = client.read(&typed, 2).try_collect().await.unwrap();
    let b: Vec<RecordBatch> = client.read(&text, 2).try_collect().await.unwrap();
    assert_eq!(a, b);
    // Endpoint metadata, binary for the typed request and JSON for the URI.
    let mut next = 0;
    for (i, dataset) in [&typed, &text].into_iter().flat_map(|d| (0..3).map(move |i| (i, d))) {
        let meta = dataset.endpoint_metadata(i).expect("parquet endpoints say their rows");
        assert_eq!(meta.partition as usize, i);
        if i == 0 {
            next = 0;
        }
        assert_eq!(meta.first_row, next);
        next += meta.table_rows;
    }
    assert_eq!(next, ROWS as u64);

    // Error details, without reading messages.
    let err =
        client.dataset_request(&DatasetRequest { columns: vec!["nope".into()], ..request.clone() }).await.unwrap_err();
    let server = err.server().expect("a server error");
    assert_eq!(server.reason, ErrorReason::UnknownColumn);
    assert_eq!(server.column.as_deref(), Some("nope"));
    assert_eq!(server.package.as_deref(), Some("t/p"));
    assert_eq!(server.path.as_deref(), Some("t/data.parquet"));
    let err = client.dataset("sheaf://t/p/missing.parquet").await.unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::NotFound));
    assert_eq!(err.server().unwrap().path.as_deref(), Some("missing.parquet"));
    let err = client.dataset_request(&DatasetRequest { sample: Some(3.0), ..request.clone() }).await.unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::InvalidRequest));
    let err = client.dataset("sheaf://t/p/t/data.parquet?filter=id%20/%200%20%3E%201").await;
    if let Ok(d) = err {
        let read: Result<Vec<RecordBatch>, _> = client.read(&d, 1).try_collect().await;
        let err = read.unwrap_err();
        assert_eq!(err.reason(), Some(ErrorReason::EvaluationFailed), "{err}");
        assert_eq!(err.server().unwrap().top_hash.as_deref(), Some(top_hash.as_str()));
    }
    let err = client.resolve("t/nothing").await.unwrap_err();
    assert_eq!(
        (err.reason(), err.server().unwrap().package.as_deref()),
        (Some(ErrorReason::NotFound), Some("t/nothing"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheaf_get_writes_parquet_and_reports_errors() {
    let (url, _src, _stop) = start().await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("slice.parquet");
    let bin = env!("CARGO_BIN_EXE_sheaf");
    let run = |args: Vec<String>| async move { tokio::process::Command::new(bin).args(args).output().await.unwrap() };
    let ok = run(vec![
        "get".into(),
        "sheaf://t/p/t/data.parquet?columns=id,x&filter=id%20%3E%3D%2029990".into(),
        "--server".into(),
        url.clone(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap()).unwrap().build().unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 10);
    assert_eq!(batches[0].schema().fields().len(), 2);

    let missing = out_dir.path().join("missing.csv");
    let bad = run(vec![
        "get".into(),
        "sheaf://t/nothing/x".into(),
        "--server".into(),
        url,
        "--out".into(),
        missing.display().to_string(),
    ])
    .await;
    assert_eq!(bad.status.code(), Some(3), "not found is exit code 3");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("t/nothing"));
    assert!(!missing.exists(), "no output file on failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_writes_revisions_with_lineage() {
    use sheaf_client::WriteOptions;
    use sheaf_client::proto::{ErrorReason, WriteMode};
    let (url, _src, _stop) = start().await;
    let client = Client::connect(&url).await.unwrap();
    let source = client.dataset("sheaf://t/p/t/data.parquet").await.unwrap();
    let batch = table();
    let halves = [batch.slice(0, 10_000), batch.slice(10_000, (ROWS - 10_000) as usize)];

    // Two parts of a folder table, one revision.
    let options = WriteOptions {
        message: Some("two parts".into()),
        derived_from: vec![source.lineage_input()],
        ..Default::default()
    };
    let mut writer = client.writer("w/rust", &options).await.unwrap();
    for (i, half) in halves.iter().enumerate() {
        let stream = futures::stream::iter([Ok(half.clone())]);
        let part = writer.put("features", Some(i as u32), batch.schema(), stream).await.unwrap();
        assert_eq!(part.rows, half.num_rows() as u64);
    }
    let done = writer.commit().await.unwrap();
    assert_eq!(done.rows, ROWS as u64);
    let (_, got) = client.read_all(&done.uris[0]).await.unwrap();
    assert_eq!(concat_batches(&batch.schema(), &got).unwrap(), batch);

    let nodes = client.lineage("w/rust").await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!((nodes[1].package.as_str(), nodes[1].top_hash.as_str()), ("t/p", source.top_hash.as_str()));
    assert!(nodes[0].tool.starts_with("sheaf-client "), "{:?}", nodes[0].tool);

    // One call; a different schema appended to the folder is refused, naming the column.
    let other = RecordBatch::try_from_iter([("id", Arc::new(StringArray::from(vec!["a"])) as Arc<dyn Array>)]).unwrap();
    let err = client
        .write("w/rust/features", other.schema(), futures::stream::iter([Ok(other.clone())]), &WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), Some(ErrorReason::SchemaMismatch), "{err}");
    assert_eq!(err.server().and_then(|s| s.column.as_deref()), Some("id"), "{err}");
    let replace = WriteOptions { mode: WriteMode::Overwrite, ..Default::default() };
    let done = client
        .write("sheaf://w/rust/features", other.schema(), futures::stream::iter([Ok(other.clone())]), &replace)
        .await
        .unwrap();
    let (_, got) = client.read_all(&done.uris[0]).await.unwrap();
    assert_eq!(got.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    assert_eq!(client.list_revisions("w/rust").await.unwrap().len(), 2, "the refused write made no revision");
}
