//! The Rust client reading an endpoint whose replica is killed (SIGKILL)
//! mid-stream: it continues at the next location and delivers every row
//! exactly once, in order. Two real `sheaf serve` processes over one local
//! registry.

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow_flight::{FlightEndpoint, Location};
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use sheaf_client::Client;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

const ROWS: i64 = 3_000_000;

/// A `sheaf serve` process and its URL; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(registry: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(["--registry", registry.to_str().unwrap(), "serve", "--listen", "127.0.0.1:0", "--cache-mib", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("grpc://"), "{line}");
    Server { child, url }
}

fn push(registry: &std::path::Path) {
    let src = tempfile::tempdir().unwrap();
    let ids: Vec<i64> = (0..ROWS).collect();
    let batch = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(ids)) as Arc<dyn Array>)]).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(100_000)).build();
    let file = std::fs::File::create(src.path().join("ids.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(["--registry", registry.to_str().unwrap(), "push", "t/ids", src.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_stream_costs_a_retry_not_an_error() {
    let registry = tempfile::tempdir().unwrap();
    push(registry.path());
    let doomed = serve(registry.path());
    let spare = serve(registry.path());
    let client = Client::connect(&spare.url).await.unwrap();
    let dataset = client.dataset("sheaf://t/ids/ids.parquet").await.unwrap();
    assert_eq!(dataset.info.endpoint.len(), 1);
    // The endpoint as a replicated server lists it: the doomed replica
    // first, the spare as the fallback.
    let mut endpoint: FlightEndpoint = dataset.info.endpoint[0].clone();
    endpoint.location = [&doomed.url, &spare.url].into_iter().map(|u| Location { uri: u.clone() }).collect();
    let mut doomed = doomed;
    let mut killed = false;
    let ids = read_ids(&client, &endpoint, || {
        doomed.child.kill().unwrap(); // SIGKILL
        doomed.child.wait().unwrap();
        killed = true;
    })
    .await;
    assert!(killed);
    assert_eq!(ids.len() as i64, ROWS, "every row once");
    assert!(ids.iter().copied().eq(0..ROWS), "in order, no row lost or repeated");

    // With every location dead the error names them all.
    let mut gone = serve(registry.path());
    let gone_url = gone.url.clone();
    gone.child.kill().unwrap();
    gone.child.wait().unwrap();
    endpoint.location = vec![Location { uri: gone_url.clone() }, Location { uri: "grpc://127.0.0.1:1".into() }];
    let e = match client.read_endpoint(&endpoint).await {
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
        Err(e) => e,
    };
    let message = e.to_string();
    assert!(message.contains(&gone_url) && message.contains("grpc://127.0.0.1:1"), "{message}");
}

/// Reads `endpoint` to its end, returning the ids; `after_first` runs once
/// the first batch arrived.
async fn read_ids(client: &Client, endpoint: &FlightEndpoint, mut after_first: impl FnMut()) -> Vec<i64> {
    let mut stream = client.read_endpoint(endpoint).await.unwrap();
    let mut ids: Vec<i64> = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        let first = ids.is_empty();
        ids.extend(batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter());
        if first {
            after_first();
        }
    }
    ids
}

/// A replica frozen (SIGSTOP: its connection stays open, nothing answers)
/// mid-stream, or before a read, is given up when it leaves the client's
/// keepalive pings unanswered: the read moves to the next location, every
/// row once, instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_is_left_for_the_next_location() {
    let registry = tempfile::tempdir().unwrap();
    push(registry.path());
    let frozen = serve(registry.path());
    let spare = serve(registry.path());
    let client = Client::connect(&spare.url).await.unwrap();
    let dataset = client.dataset("sheaf://t/ids/ids.parquet").await.unwrap();
    let mut endpoint: FlightEndpoint = dataset.info.endpoint[0].clone();
    endpoint.location = [&frozen.url, &spare.url].into_iter().map(|u| Location { uri: u.clone() }).collect();
    let pid = frozen.child.id() as libc::pid_t;
    let stop = || assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let ids = read_ids(&client, &endpoint, stop).await;
    assert!(ids.iter().copied().eq(0..ROWS), "mid-stream: every row once, in order");
    // Still frozen: a new read of the same endpoint moves on as well.
    let ids = read_ids(&client, &endpoint, || {}).await;
    assert!(ids.iter().copied().eq(0..ROWS), "before the read: every row once, in order");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
}
