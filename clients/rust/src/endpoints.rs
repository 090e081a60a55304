//! Where an endpoint is read, the policy all three Sheaf clients share
//! (README "Endpoints"):
//!
//! - an endpoint's locations are tried in order; the next is tried when
//!   connecting fails or the server answers UNAVAILABLE;
//! - no location, or `arrow-flight-reuse-connection://?`, means this server
//!   (the client's own connection);
//! - one channel per location is opened and reused for the client's life;
//!   while calls are open it is pinged, so a frozen server fails them (and
//!   the read moves on) instead of leaving them waiting forever.

use crate::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// How long connecting to a location may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// While calls are open, the connection is pinged this often (HTTP/2 PING):
/// a server that is frozen (a stopped or hung process, a host gone without
/// closing the connection) answers nothing, where a busy one answers at
/// once, however long its query computes.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// A ping unanswered this long closes the connection: its calls fail as
/// UNAVAILABLE, so a read moves on to the endpoint's next location.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The URI Arrow Flight defines for "the connection this endpoint came on".
pub const REUSE_CONNECTION: &str = "arrow-flight-reuse-connection://?";

/// Whether a location means the server the client is connected to.
pub fn is_this_server(location: &str, own_url: &str) -> bool {
    location.is_empty() || location == own_url || location.starts_with("arrow-flight-reuse-connection:")
}

/// `grpc://` and `grpc+tls://` as the `http://` and `https://` tonic dials.
pub fn http_url(url: &str) -> String {
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
pub(crate) async fn connect(url: &str, tls: &ClientTlsConfig) -> Result<Channel, Error> {
    let fail = |message: String| Error::Connect { url: url.to_owned(), message };
    let target = http_url(url);
    let mut endpoint = Endpoint::from_shared(target.clone())
        .map_err(|e| fail(e.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
    if target.starts_with("https://") {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| fail(format!("TLS: {e}")))?;
    } else if !target.starts_with("http://") {
        return Err(fail("unsupported scheme: use grpc:// or grpc+tls://".into()));
    }
    endpoint.connect().await.map_err(|e| fail(with_sources(&e)))
}

/// An error and its sources, as one line: tonic's transport error alone says
/// only "transport error", its sources say why (a refused certificate, a
/// refused connection).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// The channels of one client: its own, and one per other location, opened
/// on first use.
#[derive(Clone)]
pub(crate) struct Channels {
    url: String,
    own: Channel,
    tls: ClientTlsConfig,
    others: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Channels {
    pub(crate) fn new(url: &str, own: Channel, tls: ClientTlsConfig) -> Self {
        Channels { url: url.to_owned(), own, tls, others: Arc::default() }
    }

    /// The client's own channel.
    pub(crate) fn own(&self) -> Channel {
        self.own.clone()
    }

    /// The channel for `location`, opened once.
    pub(crate) async fn get(&self, location: &str) -> Result<Channel, Error> {
        if is_this_server(location, &self.url) {
            return Ok(self.own());
        }
        if let Some(channel) = self.lock().get(location) {
            return Ok(channel.clone());
        }
        let channel = connect(location, &self.tls).await?;
        Ok(self.lock().entry(location.to_owned()).or_insert(channel).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.others.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_this_server() {
        assert_eq!(http_url("grpc://127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(http_url("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(http_url("grpc+tls://h:1"), "https://h:1");
        assert!(is_this_server("", "grpc://a:1"));
        assert!(is_this_server(REUSE_CONNECTION, "grpc://a:1"));
        assert!(is_this_server("grpc://a:1", "grpc://a:1"));
        assert!(!is_this_server("grpc://b:1", "grpc://a:1"));
    }
}
