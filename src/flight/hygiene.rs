//! Response hygiene, a tower layer in front of every route (the hand-framed
//! DoGet included):
//!
//! - a handler or response stream that panics answers INTERNAL (its stream
//!   ends with that status), instead of a dropped connection or, worse, a
//!   stream that looks complete;
//! - every `grpc-message` (in headers or trailers) is capped at
//!   [`MAX_MESSAGE_BYTES`], so an error quoting a huge request cannot turn
//!   into a header the client refuses;
//! - the server's storage locations (registry root, allowed folders) are
//!   replaced by `<registry>` in every message, and the credentials of any
//!   URL in it by `***`;
//! - every error status carries its machine-readable detail
//!   ([`super::status::complete_detail`]), naming the package, revision and
//!   table the call was about.

use super::audit::AuditNote;
use super::pipeline::panic_message;
use super::status::complete_detail;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// Longest `grpc-message` sent, in bytes of its decoded text.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// gRPC percent-encodes `%` and bytes outside printable ASCII.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// The layer: `redact` lists the strings (storage roots as URLs and paths)
/// that must not reach a client.
#[derive(Clone)]
pub struct HygieneLayer {
    redact: Arc<Vec<String>>,
}

impl HygieneLayer {
    /// A layer hiding `redact` from every message.
    pub fn new(redact: Vec<String>) -> Self {
        let mut redact: Vec<String> = redact.into_iter().filter(|s| s.len() > 1).collect();
        // Longest first, so a root inside another is replaced whole.
        redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        redact.dedup();
        HygieneLayer { redact: Arc::new(redact) }
    }
}

impl<S> Layer<S> for HygieneLayer {
    type Service = Hygiene<S>;

    fn layer(&self, inner: S) -> Hygiene<S> {
        Hygiene { inner, redact: self.redact.clone() }
    }
}

/// The service made by [`HygieneLayer`].
#[derive(Clone)]
pub struct Hygiene<S> {
    inner: S,
    redact: Arc<Vec<String>>,
}

/// The cleaned text of a `grpc-message` value.
pub fn clean_message(encoded: &str, redact: &[String]) -> String {
    let mut text = percent_decode_str(encoded).decode_utf8_lossy().into_owned();
    if let std::borrow::Cow::Owned(hidden) = crate::registry::hide_credentials(&text) {
        text = hidden;
    }
    for secret in redact {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "<registry>");
        }
    }
    if text.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES - 40;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text = format!("{}... ({} bytes cut)", &text[..cut], text.len() - cut);
    }
    text
}

fn clean_headers(headers: &mut http::HeaderMap, redact: &[String], note: &AuditNote) {
    if let Some(value) = headers.get("grpc-message") {
        let encoded = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let cleaned = clean_message(&encoded, redact);
        let value = utf8_percent_encode(&cleaned, GRPC_MESSAGE).to_string();
        match http::HeaderValue::from_str(&value) {
            Ok(v) => {
                headers.insert("grpc-message", v);
            }
            Err(_) => {
                headers.remove("grpc-message");
            }
        }
    }
    // After cleaning: the detail copies the cleaned message.
    complete_detail(headers, &note.subject());
}

fn panic_trailers(panic: &(dyn std::any::Any + Send)) -> http::HeaderMap {
    tracing::error!(panic = ?panic_message(panic), "a response stream panicked");
    let mut map = http::HeaderMap::new();
    let _ = Status::internal("internal error: the response failed on the server (details are in its log)")
        .add_header(&mut map);
    map
}

impl<S> Service<http::Request<Body>> for Hygiene<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let redact = self.redact.clone();
        let note = AuditNote::of(request.extensions());
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = match AssertUnwindSafe(future).catch_unwind().await {
                Ok(result) => result?,
                Err(panic) => {
                    tracing::error!(panic = ?panic_message(panic.as_ref()), "a request handler panicked");
                    Status::internal("internal error: the request failed on the server (details are in its log)")
                        .into_http()
                }
            };
            let (mut parts, body) = response.into_parts();
            clean_headers(&mut parts.headers, &redact, &note);
            Ok(http::Response::from_parts(parts, Body::new(CleanBody { inner: Some(body), redact, note })))
        })
    }
}

/// A response body whose trailers are cleaned and whose panics become an
/// INTERNAL status.
struct CleanBody {
    inner: Option<Body>,
    redact: Arc<Vec<String>>,
    note: AuditNote,
}

impl HttpBody for CleanBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll_frame(cx)));
        match polled {
            Err(panic) => {
                this.inner = None;
                let mut trailers = panic_trailers(panic.as_ref());
                complete_detail(&mut trailers, &this.note.subject());
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Ok(Poll::Ready(Some(Ok(frame)))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    clean_headers(&mut trailers, &this.redact, &this.note);
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Ok(other) => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_capped_and_redacted() {
        let redact = vec!["/tmp/reg".to_owned(), "file:///tmp/reg".to_owned()];
        let layer = HygieneLayer::new(redact);
        let text =
            clean_message("data of a.csv at file:///tmp/reg/.sheaf/blobs/ab: No such file /tmp/reg/x", &layer.redact);
        assert_eq!(text, "data of a.csv at <registry>/.sheaf/blobs/ab: No such file <registry>/x");
        let long = "é".repeat(100_000);
        let text = clean_message(&utf8_percent_encode(&long, GRPC_MESSAGE).to_string(), &[]);
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-message", http::HeaderValue::from_str(&"x".repeat(2_000_000)).unwrap());
        clean_headers(&mut headers, &[], &AuditNote::default());
        assert!(headers["grpc-message"].len() <= MAX_MESSAGE_BYTES);
    }
}
