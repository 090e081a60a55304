//! Encoding record batches as Flight messages without copying their data.
//!
//! arrow-flight's `FlightDataEncoder` copies every Arrow buffer into one
//! contiguous IPC body per message. Here arrow-ipc's [`StreamEncoder`]
//! encodes each batch as a list of buffers that share the batch's own memory
//! (only string offsets and unaligned bitmaps of sliced arrays, and padding,
//! are new), and each message keeps its body as those buffers: a
//! [`WireMessage`]. Parts under 4 KiB (padding, small bitmaps and offsets)
//! are copied together into one chunk; large buffers are never copied. The
//! DoGet framing ([`super::grpc`]) writes them out as they are, and the
//! stream cache holds them as they are.
//!
//! Compressed streams and schemas with dictionaries take arrow-flight's
//! encoder (their bodies are new bytes anyway).

use arrow::array::{Array, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::writer::{IpcWriteOptions, StreamEncoder};
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use tonic::Status;

/// Largest body a message aims for: batches above it are sent as slices.
/// Stays under the 4 MiB receive limit that gRPC clients (arrow-rs, grpc-java)
/// apply by default, unless a single row is larger.
pub const TARGET_MESSAGE_BYTES: usize = 3 * 1024 * 1024;

/// Body buffers shorter than this are copied together into one chunk
/// (padding, offsets of small slices, bitmaps) instead of being sent alone.
const COALESCE_BELOW: usize = 4096;

/// One DoGet message as it goes on the wire: the `FlightData` fields before
/// the body, and the body as the buffers it is made of.
#[derive(Debug, Clone, Default)]
pub struct WireMessage {
    /// The IPC message header (a flatbuffer `Message`).
    pub data_header: Bytes,
    /// Application metadata (unused by Sheaf's DoGet).
    pub app_metadata: Bytes,
    /// The IPC body, in order; its concatenation is `FlightData::data_body`.
    pub body: Vec<Bytes>,
    /// The whole message as DoGet sends it (gRPC length prefix, protobuf
    /// fields, body) in one buffer, when it was made contiguous for the
    /// stream cache ([`super::grpc::contiguous`]); `body` is then a view of it.
    pub framed: Option<Bytes>,
}

impl WireMessage {
    /// Length of the body.
    pub fn body_len(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }

    /// Size of the message as held in memory (header, metadata and body).
    pub fn bytes(&self) -> u64 {
        (self.data_header.len() + self.app_metadata.len() + self.body_len()) as u64
    }

    /// Rows of a record-batch message (None for schema and other messages).
    pub fn batch_rows(&self) -> Option<u64> {
        let message = arrow::ipc::root_as_message(&self.data_header).ok()?;
        Some(message.header_as_record_batch()?.length().max(0) as u64)
    }

    /// The same message as one `FlightData` (copies the body together).
    pub fn into_flight_data(self) -> FlightData {
        let data_body = concat(&self.body);
        FlightData {
            flight_descriptor: None,
            data_header: self.data_header,
            app_metadata: self.app_metadata,
            data_body,
        }
    }
}

impl From<FlightData> for WireMessage {
    /// A message of arrow-flight's encoder (DoGet messages carry no descriptor).
    fn from(m: FlightData) -> Self {
        let body = if m.data_body.is_empty() { vec![] } else { vec![m.data_body] };
        WireMessage { data_header: m.data_header, app_metadata: m.app_metadata, body, framed: None }
    }
}

/// Whether `data_type` holds a dictionary anywhere.
fn has_dictionary(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(..) => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) | DataType::Map(f, _) => {
            has_dictionary(f.data_type())
        }
        DataType::ListView(f) | DataType::LargeListView(f) => has_dictionary(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| has_dictionary(f.data_type())),
        DataType::Union(fields, _) => fields.iter().any(|(_, f)| has_dictionary(f.data_type())),
        DataType::RunEndEncoded(_, values) => has_dictionary(values.data_type()),
        _ => false,
    }
}

/// Encodes `batches` of `schema` as Flight messages: the schema, then each
/// batch (sliced to about [`TARGET_MESSAGE_BYTES`]). Errors of `batches`
/// end the stream with that status.
pub fn encode(
    schema: SchemaRef,
    options: IpcWriteOptions,
    compressed: bool,
    batches: BoxStream<'static, Result<RecordBatch, Status>>,
) -> BoxStream<'static, Result<WireMessage, Status>> {
    if compressed || schema.fields().iter().any(|f| has_dictionary(f.data_type())) {
        return FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_options(options)
            .build(batches.map(|b| b.map_err(|s| FlightError::Tonic(Box::new(s)))))
            .map(|m| {
                m.map(WireMessage::from).map_err(|e| match e {
                    FlightError::Tonic(status) => *status,
                    other => Status::internal(other.to_string()),
                })
            })
            .boxed();
    }
    let encoder = match StreamEncoder::try_new_with_options(&schema, options) {
        Ok(encoder) => encoder,
        Err(e) => return stream::once(async move { Err(Status::internal(format!("encoding {schema}: {e}"))) }).boxed(),
    };
    // The encoder's first output starts with the schema message; a stream
    // without batches gets it from `finish`.
    stream::unfold(Some((batches, encoder, false)), |state| async move {
        let (mut batches, mut encoder, started) = state?;
        let (messages, next) = match batches.next().await {
            Some(Ok(batch)) => {
                let messages = encode_batch(&mut encoder, &batch);
                (messages, Some((batches, encoder, true)))
            }
            Some(Err(status)) => return Some((stream::iter([Err(status)]).boxed(), None)),
            None if started => return None,
            None => (encoder.finish().and_then(split_messages), None),
        };
        match messages {
            Ok(messages) => Some((stream::iter(messages.into_iter().map(Ok)).boxed(), next)),
            Err(e) => {
                Some((stream::iter([Err(Status::internal(format!("encoding a record batch: {e}")))]).boxed(), None))
            }
        }
    })
    .flatten()
    .boxed()
}

/// The messages of one batch, sliced to about [`TARGET_MESSAGE_BYTES`].
fn encode_batch(encoder: &mut StreamEncoder, batch: &RecordBatch) -> Result<Vec<WireMessage>, ArrowError> {
    let mut out = Vec::new();
    for piece in split(batch) {
        out.extend(split_messages(encoder.encode(&piece)?)?);
    }
    Ok(out)
}

/// `batch` as slices of about [`TARGET_MESSAGE_BYTES`] each (at least one row).
fn split(batch: &RecordBatch) -> Vec<RecordBatch> {
    let size: usize = batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0)).sum();
    let rows = batch.num_rows();
    let pieces = size.div_ceil(TARGET_MESSAGE_BYTES).clamp(1, rows.max(1));
    if pieces == 1 {
        return vec![batch.clone()];
    }
    let per_piece = rows.div_ceil(pieces);
    (0..rows).step_by(per_piece).map(|start| batch.slice(start, per_piece.min(rows - start))).collect()
}

/// An arrow buffer as `Bytes`, sharing its memory.
fn shared(buffer: Buffer) -> Bytes {
    struct Owner(Buffer);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0.as_slice()
        }
    }
    Bytes::from_owner(Owner(buffer))
}

/// Reads the buffers of an IPC stream as a sequence of bytes, handing out
/// slices that share the buffers' memory.
struct Cursor {
    parts: std::collections::VecDeque<Bytes>,
}

impl Cursor {
    fn remaining(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// The next `n` bytes as shared slices.
    fn take(&mut self, mut n: usize) -> Result<Vec<Bytes>, ArrowError> {
        let mut out = Vec::new();
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                return Err(ArrowError::IpcError("IPC stream ended inside a message".into()));
            };
            if front.len() <= n {
                n -= front.len();
                out.push(self.parts.pop_front().expect("front exists"));
            } else {
                out.push(front.split_to(n));
                n = 0;
            }
        }
        Ok(out)
    }
}

fn concat(parts: &[Bytes]) -> Bytes {
    match parts {
        [] => Bytes::new(),
        [one] => one.clone(),
        _ => {
            let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            parts.iter().for_each(|p| all.extend_from_slice(p));
            all.freeze()
        }
    }
}

/// Splits the IPC stream buffers of one encoded batch into its messages
/// (dictionary batches, if any, then the record batch).
fn split_messages(buffers: Vec<Buffer>) -> Result<Vec<WireMessage>, ArrowError> {
    let mut cursor = Cursor { parts: buffers.into_iter().map(shared).filter(|b| !b.is_empty()).collect() };
    let mut out = Vec::new();
    while cursor.remaining() > 0 {
        let prefix = concat(&cursor.take(8)?);
        if prefix[..4] != [0xff; 4] {
            return Err(ArrowError::IpcError("IPC message without a continuation marker".into()));
        }
        let len = i32::from_le_bytes(prefix[4..8].try_into().expect("4 bytes"));
        if len <= 0 {
            break; // end of stream
        }
        let region = cursor.take(len as usize)?;
        // arrow-ipc writes the flatbuffer as one buffer and its padding
        // after it: send the flatbuffer alone, as Flight encoders do.
        let data_header = match region.split_first() {
            Some((first, rest)) if rest.iter().all(|p| p.iter().all(|b| *b == 0)) => first.clone(),
            _ => concat(&region),
        };
        let message = arrow::ipc::root_as_message(&data_header)
            .map_err(|e| ArrowError::IpcError(format!("reading an encoded message: {e}")))?;
        let body_len =
            usize::try_from(message.bodyLength()).map_err(|_| ArrowError::IpcError("negative body length".into()))?;
        out.push(WireMessage {
            data_header,
            app_metadata: Bytes::new(),
            body: coalesce(cursor.take(body_len)?),
            framed: None,
        });
    }
    Ok(out)
}

/// Joins runs of short parts into one chunk, so the wire sees a few large
/// writes rather than one per padding or bitmap.
fn coalesce(parts: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(parts.len());
    let mut pending = BytesMut::new();
    for part in parts {
        if part.len() < COALESCE_BELOW {
            pending.extend_from_slice(&part);
            continue;
        }
        if !pending.is_empty() {
            out.push(pending.split().freeze());
        }
        out.push(part);
    }
    if !pending.is_empty() {
        out.push(pending.freeze());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, BooleanArray, Decimal128Array, FixedSizeListBuilder, Float64Array, Int32Array, Int32Builder,
        Int64Array, LargeStringArray, ListBuilder, StringArray, StructArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Field;
    use arrow_flight::utils::flight_data_to_arrow_batch;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn schema_of(m: &WireMessage) -> arrow::datatypes::Schema {
        arrow::datatypes::Schema::try_from(&m.clone().into_flight_data()).expect("a schema message")
    }

    fn sample(rows: usize) -> RecordBatch {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
        let x: ArrayRef = Arc::new(Float64Array::from_iter((0..rows).map(|i| (i % 7 != 0).then_some(i as f64 / 3.0))));
        let s: ArrayRef = Arc::new(StringArray::from_iter(
            (0..rows).map(|i| (i % 5 != 0).then(|| format!("row {i} {}", "z".repeat(i % 13)))),
        ));
        let ls: ArrayRef = Arc::new(LargeStringArray::from_iter_values((0..rows).map(|i| format!("L{i}"))));
        let b: ArrayRef = Arc::new(BooleanArray::from_iter((0..rows).map(|i| (i % 3 != 0).then_some(i % 2 == 0))));
        let d: ArrayRef = Arc::new(
            Decimal128Array::from_iter_values((0..rows).map(|i| i as i128 * 1000))
                .with_precision_and_scale(20, 3)
                .unwrap(),
        );
        let t: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from_iter_values((0..rows).map(|i| i as i64 * 1_000_000)));
        let mut list = ListBuilder::new(Int32Builder::new());
        for i in 0..rows {
            if i % 4 == 0 {
                list.append_null();
            } else {
                (0..i % 5).for_each(|j| list.values().append_value(j as i32));
                list.append(true);
            }
        }
        let list: ArrayRef = Arc::new(list.finish());
        let mut fixed = FixedSizeListBuilder::new(Int32Builder::new(), 3);
        for i in 0..rows {
            (0..3).for_each(|j| fixed.values().append_value((i * 3 + j) as i32));
            fixed.append(true);
        }
        let fixed: ArrayRef = Arc::new(fixed.finish());
        let st: ArrayRef = Arc::new(StructArray::from(vec![
            (
                Arc::new(Field::new("a", DataType::Int32, true)),
                Arc::new(Int32Array::from_iter((0..rows).map(|i| (i % 6 != 0).then_some(i as i32)))) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Utf8, false)),
                Arc::new(StringArray::from_iter_values((0..rows).map(|i| i.to_string()))) as ArrayRef,
            ),
        ]));
        RecordBatch::try_from_iter([
            ("id", ids),
            ("x", x),
            ("s", s),
            ("ls", ls),
            ("b", b),
            ("d", d),
            ("t", t),
            ("list", list),
            ("fixed", fixed),
            ("st", st),
        ])
        .unwrap()
    }

    async fn round_trip(batches: Vec<RecordBatch>) -> (Vec<WireMessage>, Vec<RecordBatch>) {
        let schema = batches[0].schema();
        let input = stream::iter(batches.into_iter().map(Ok)).boxed();
        let messages: Vec<WireMessage> =
            encode(schema.clone(), IpcWriteOptions::default(), false, input).map(|m| m.unwrap()).collect().await;
        assert_eq!(&schema_of(&messages[0]), schema.as_ref());
        let decoded = messages[1..]
            .iter()
            .map(|m| {
                flight_data_to_arrow_batch(&m.clone().into_flight_data(), schema.clone(), &HashMap::new()).unwrap()
            })
            .collect();
        (messages, decoded)
    }

    fn concat_batches(batches: &[RecordBatch]) -> RecordBatch {
        arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
    }

    #[tokio::test]
    async fn decodes_to_the_same_rows() {
        let batch = sample(1000);
        let (_, decoded) = round_trip(vec![batch.clone()]).await;
        assert_eq!(concat_batches(&decoded), batch);
    }

    #[tokio::test]
    async fn sliced_batches_decode_to_their_rows() {
        let batch = sample(1000);
        let pieces = vec![batch.slice(3, 500), batch.slice(503, 0), batch.slice(503, 497)];
        let (_, decoded) = round_trip(pieces.clone()).await;
        assert_eq!(concat_batches(&decoded), concat_batches(&pieces));
    }

    #[tokio::test]
    async fn large_batches_are_split_under_the_target() {
        let batch = sample(200_000);
        let (messages, decoded) = round_trip(vec![batch.clone()]).await;
        assert!(messages.len() > 3, "{} messages", messages.len());
        for m in &messages {
            assert!(m.body_len() <= TARGET_MESSAGE_BYTES + 64 * 1024, "a body of {} bytes", m.body_len());
        }
        assert_eq!(concat_batches(&decoded), batch);
    }

    #[tokio::test]
    async fn bodies_share_the_batch_memory() {
        let values = Int64Array::from_iter_values(0..100_000);
        let start = values.values().inner().as_ptr() as usize;
        let batch = RecordBatch::try_from_iter([("v", Arc::new(values) as ArrayRef)]).unwrap();
        let (messages, _) = round_trip(vec![batch]).await;
        let body = &messages[1].body;
        assert!(body.iter().any(|part| part.as_ptr() as usize == start), "the values were copied");
    }

    #[tokio::test]
    async fn flight_data_concatenates_the_body() {
        let (messages, _) = round_trip(vec![sample(100)]).await;
        let m = messages[1].clone();
        let expected: Vec<u8> = m.body.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(m.clone().into_flight_data().data_body.as_ref(), expected.as_slice());
        assert_eq!(m.batch_rows(), Some(100));
        assert_eq!(messages[0].batch_rows(), None);
    }

    #[tokio::test]
    async fn a_stream_without_batches_sends_its_schema() {
        let schema = sample(1).schema();
        let out: Vec<_> =
            encode(schema.clone(), IpcWriteOptions::default(), false, stream::empty().boxed()).collect().await;
        assert_eq!(out.len(), 1);
        assert_eq!(&schema_of(out[0].as_ref().unwrap()), schema.as_ref());
    }

    #[tokio::test]
    async fn dictionaries_take_arrow_flights_encoder() {
        let dict: ArrayRef =
            Arc::new(arrow::array::DictionaryArray::<arrow::datatypes::Int32Type>::from_iter(["a", "b", "a"]));
        let batch = RecordBatch::try_from_iter([("d", dict)]).unwrap();
        let input = stream::iter([Ok(batch.clone())]).boxed();
        let out: Vec<WireMessage> =
            encode(batch.schema(), IpcWriteOptions::default(), false, input).map(|m| m.unwrap()).collect().await;
        // Hydrated: the schema says Utf8 and the rows are the dictionary's values.
        let schema = Arc::new(schema_of(&out[0]));
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        let rows = flight_data_to_arrow_batch(&out[1].clone().into_flight_data(), schema, &HashMap::new()).unwrap();
        assert_eq!(rows.column(0).as_ref(), &StringArray::from(vec!["a", "b", "a"]) as &dyn Array);
    }

    #[tokio::test]
    async fn an_error_ends_the_stream() {
        let batch = sample(10);
        let input = stream::iter([Ok(batch.clone()), Err(Status::not_found("gone")), Ok(batch.clone())]).boxed();
        let out: Vec<_> = encode(batch.schema(), IpcWriteOptions::default(), false, input).collect().await;
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].as_ref().unwrap_err().message(), "gone");
    }
}
