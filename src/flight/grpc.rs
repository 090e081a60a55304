//! DoGet over HTTP/2 without tonic's codec.
//!
//! tonic encodes each response message into one contiguous buffer, copying
//! every Arrow body once more on its way to the socket (tonic #1558). Here a
//! [`WireMessage`] is framed by hand: a small head (the gRPC length prefix and
//! the protobuf fields before `data_body`) and the body's own buffers (the
//! Arrow buffers themselves, see [`super::encode`]), sent as HTTP/2 data
//! chunks that hyper writes out without copying. Messages the stream cache
//! keeps become contiguous at their stream's first hit ([`contiguous`]:
//! copied once) and then go out as one chunk each. Every other RPC goes to tonic's generated
//! service unchanged.

use super::SheafFlight;
use super::encode::WireMessage;
use arrow_flight::flight_service_server::FlightServiceServer;
use bytes::{BufMut, Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

/// The gRPC path of DoGet.
pub const DO_GET_PATH: &str = "/arrow.flight.protocol.FlightService/DoGet";
/// Largest DoGet request (a ticket) accepted: a ticket may carry up to
/// 100,000 row ranges of a random read (at most 24 bytes each).
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// Frames one message for the wire: the head (5-byte gRPC prefix and the
/// protobuf fields before `data_body`) and the body's parts, unchanged. Their
/// concatenation equals the prefix plus the `FlightData`'s protobuf encoding.
pub fn frame(message: &WireMessage) -> Result<Bytes, Status> {
    let field = |tag: u32, len: usize| if len == 0 { 0 } else { key_len(tag) + encoded_len_varint(len as u64) + len };
    let (header, metadata, body) = (message.data_header.len(), message.app_metadata.len(), message.body_len());
    let head_fields = field(2, header) + field(3, metadata);
    let total = head_fields + field(1000, body);
    let total = u32::try_from(total)
        .map_err(|_| Status::resource_exhausted(format!("a message of {total} bytes exceeds gRPC's 4 GiB limit")))?;
    let mut head = BytesMut::with_capacity(5 + head_fields + 8);
    head.put_u8(0);
    head.put_u32(total);
    for (tag, bytes) in [(2, &message.data_header), (3, &message.app_metadata)] {
        if !bytes.is_empty() {
            encode_key(tag, WireType::LengthDelimited, &mut head);
            encode_varint(bytes.len() as u64, &mut head);
            head.put_slice(bytes);
        }
    }
    if body > 0 {
        encode_key(1000, WireType::LengthDelimited, &mut head);
        encode_varint(body as u64, &mut head);
    }
    Ok(head.freeze())
}

/// `message` with its wire form in one buffer: the head [`frame`] makes and
/// the body, copied together once. The stream cache keeps messages so
/// (see [`super::cache`]): a cached message then goes out as one HTTP/2 data
/// frame and one socket write instead of one per Arrow buffer (hyper writes
/// each frame with its own `writev`: about 230 writes instead of 1,800 for a
/// read of `benches/flight_read.py`'s table), and the memory the cache holds
/// is exactly what it sends (no decoded buffer kept alive by a slice of it).
pub fn contiguous(message: &WireMessage) -> Result<WireMessage, Status> {
    if message.framed.is_some() {
        return Ok(message.clone());
    }
    let head = frame(message)?;
    let mut whole = BytesMut::with_capacity(head.len() + message.body_len());
    whole.put_slice(&head);
    message.body.iter().for_each(|part| whole.put_slice(part));
    let whole = whole.freeze();
    let body = if message.body_len() == 0 { vec![] } else { vec![whole.slice(head.len()..)] };
    Ok(WireMessage {
        data_header: message.data_header.clone(),
        app_metadata: message.app_metadata.clone(),
        body,
        framed: Some(whole),
    })
}

/// The HTTP/2 data chunks of one message: its head and body parts, or its
/// contiguous wire form.
fn chunks(message: WireMessage) -> Result<Vec<Bytes>, Status> {
    if let Some(whole) = message.framed {
        return Ok(vec![whole]);
    }
    let head = frame(&message)?;
    let mut chunks = Vec::with_capacity(1 + message.body.len());
    chunks.push(head);
    chunks.extend(message.body);
    Ok(chunks)
}

/// Reads a unary gRPC request: one uncompressed, length-prefixed message.
async fn read_unary<M: Message + Default>(body: Body) -> Result<M, Status> {
    let bytes = Limited::new(body, MAX_REQUEST)
        .collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("reading the request: {e}")))?
        .to_bytes();
    if bytes.len() < 5 {
        return Err(Status::invalid_argument("the request holds no gRPC message"));
    }
    if bytes[0] != 0 {
        return Err(Status::unimplemented("compressed requests are not supported"));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if bytes.len() != 5 + len {
        return Err(Status::invalid_argument("the request must hold exactly one gRPC message"));
    }
    M::decode(bytes.slice(5..)).map_err(|e| Status::invalid_argument(format!("decoding the request: {e}")))
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut map = http::HeaderMap::new();
    if status.add_header(&mut map).is_err() {
        // The message could not become a header; keep the code.
        map.clear();
        let _ = Status::new(status.code(), "").add_header(&mut map);
    }
    Frame::trailers(map)
}

/// A streaming gRPC response: each message as its head and body chunks, then
/// trailers with the final status (OK, or the error that ended the stream,
/// so a stream never ends early while looking complete).
fn streaming_response(messages: BoxStream<'static, Result<WireMessage, Status>>) -> http::Response<Body> {
    let frames = stream::unfold(Some(messages), |state| async move {
        let mut messages = state?;
        let message = match messages.next().await {
            Some(Ok(m)) => m,
            Some(Err(status)) => return Some((vec![trailers(&status)], None)),
            None => return Some((vec![trailers(&Status::ok(""))], None)),
        };
        match chunks(message) {
            Ok(chunks) => Some((chunks.into_iter().map(Frame::data).collect(), Some(messages))),
            Err(status) => Some((vec![trailers(&status)], None)),
        }
    })
    .flat_map(|frames| stream::iter(frames.into_iter().map(Ok::<_, Infallible>)));
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(Body::new(StreamBody::new(frames)))
        .expect("valid response")
}

async fn do_get(flight: Arc<SheafFlight>, request: http::Request<Body>) -> http::Response<Body> {
    let result = async {
        let principal = flight.caller(request.extensions().get::<crate::auth::Principal>())?;
        let note = super::audit::AuditNote::of(request.extensions());
        let ticket: arrow_flight::Ticket = read_unary(request.into_body()).await?;
        flight.messages(ticket.ticket, &principal, &note).await
    };
    match result.await {
        Ok(messages) => streaming_response(messages.boxed()),
        Err(status) => status.into_http(),
    }
}

/// The Flight service as the server mounts it: DoGet framed here, every
/// other RPC handled by tonic's generated service.
#[derive(Clone)]
pub struct FlightRoutes {
    flight: Arc<SheafFlight>,
    generated: FlightServiceServer<SheafFlight>,
}

impl FlightRoutes {
    /// Routes for `flight`; `configure` sets the generated service's options
    /// (message size limits).
    pub fn new(
        flight: Arc<SheafFlight>,
        configure: impl FnOnce(FlightServiceServer<SheafFlight>) -> FlightServiceServer<SheafFlight>,
    ) -> Self {
        let generated = configure(FlightServiceServer::from_arc(flight.clone()));
        FlightRoutes { flight, generated }
    }
}

impl NamedService for FlightRoutes {
    const NAME: &'static str = <FlightServiceServer<SheafFlight> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for FlightRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<http::Request<Body>>::poll_ready(&mut self.generated, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == DO_GET_PATH {
            Box::pin(do_get(self.flight.clone(), request).map(Ok))
        } else {
            Box::pin(self.generated.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::FlightData;

    fn framed_equals_prost(m: FlightData) {
        for parts in [1, 3] {
            let mut wire = WireMessage::from(m.clone());
            if parts == 3 && m.data_body.len() > 2 {
                let body = m.data_body.clone();
                wire.body = vec![body.slice(..1), body.slice(1..2), body.slice(2..)];
            }
            let mut ours = frame(&wire).unwrap().to_vec();
            wire.body.iter().for_each(|p| ours.extend_from_slice(p));
            let encoded = m.encode_to_vec();
            let mut expected = vec![0u8];
            expected.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
            expected.extend_from_slice(&encoded);
            assert_eq!(ours, expected);
        }
    }

    #[test]
    fn a_contiguous_message_is_the_same_message_in_one_buffer() {
        let m = FlightData {
            data_header: Bytes::from(vec![7u8; 300]),
            data_body: Bytes::from(vec![1u8; 70_000]),
            app_metadata: Bytes::new(),
            flight_descriptor: None,
        };
        let mut wire = WireMessage::from(m.clone());
        let body = m.data_body.clone();
        wire.body = vec![body.slice(..10), body.slice(10..)];
        let whole = contiguous(&wire).unwrap();
        let framed = whole.framed.clone().unwrap();
        let mut expected = frame(&wire).unwrap().to_vec();
        expected.extend_from_slice(&m.data_body);
        assert_eq!(framed.to_vec(), expected);
        // The body is a view of the one buffer, and the message reads as before.
        assert_eq!(whole.body.len(), 1);
        assert_eq!(whole.body[0].as_ptr(), framed[framed.len() - m.data_body.len()..].as_ptr());
        assert_eq!(whole.bytes(), wire.bytes());
        assert_eq!(chunks(whole.clone()).unwrap(), vec![framed]);
        assert_eq!(whole.clone().into_flight_data(), m);
        // Made contiguous twice, it is kept as it is.
        assert_eq!(contiguous(&whole).unwrap().framed.unwrap().as_ptr(), whole.framed.unwrap().as_ptr());
        // A message without a body.
        let empty = contiguous(&WireMessage::from(FlightData::default())).unwrap();
        assert!(empty.body.is_empty());
        assert_eq!(empty.framed.unwrap().to_vec(), frame(&WireMessage::default()).unwrap().to_vec());
    }

    #[test]
    fn frames_like_prost() {
        framed_equals_prost(FlightData::default());
        framed_equals_prost(FlightData { data_header: Bytes::from_static(b"hdr"), ..Default::default() });
        framed_equals_prost(FlightData {
            data_header: Bytes::from(vec![7u8; 300]),
            data_body: Bytes::from(vec![1u8; 70_000]),
            app_metadata: Bytes::from_static(b"{}"),
            flight_descriptor: None,
        });
    }
}
