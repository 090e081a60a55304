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
//! The wire contract is [`proto`], generated from `proto/sheaf.proto`: a
//! dataset is named by a URI ([`Client::dataset`]) or a typed
//! [`proto::DatasetRequest`] ([`Client::dataset_request`]); actions send and
//! receive its typed messages; errors carry its [`proto::ErrorReason`].
//! [`Client::write`] and [`Client::writer`] publish tables as new revisions.
//! Endpoints are read by the policy of [`endpoints`], in parallel, and their
//! batches returned in endpoint order, so a read equals the server's
//! canonical order. Messages of any size are accepted (the gRPC default of
//! 4 MiB would refuse rows with large values).

pub mod cache;
mod client;
pub mod endpoints;
mod error;
pub mod proto;
mod write;

pub use client::{Client, Dataset, PREFETCH_BATCHES};
pub use error::{Error, ServerError};
pub use write::{WriteOptions, Writer};
