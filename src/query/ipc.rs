//! Checks of Arrow IPC messages a client sent, made before arrow decodes
//! them. arrow's reader trusts a message's header: a buffer reaching past
//! the body panics while slicing, and a compressed buffer's declared size is
//! allocated as declared (tens of gigabytes from a few bytes, which aborts
//! the process: no `catch_unwind` stops that). Uploads (DoPut) and the
//! parameters inside Flight SQL tickets and handles are checked here first,
//! and so are the Arrow IPC files of a registry ([`CheckedStream`]: anyone
//! who may push can store one); what still cannot be decoded (a validity bitmap shorter than its column
//! panics in arrow) is decoded under `catch_unwind` by the callers.

use arrow::ipc::{MessageHeader, root_as_message};

/// What a message may declare.
#[derive(Debug, Clone, Copy)]
pub struct IpcLimits {
    /// Rows of one record batch.
    pub rows: i64,
    /// Bytes of one buffer once decompressed.
    pub buffer_bytes: i64,
    /// Bytes of all buffers of one message once decompressed.
    pub message_bytes: i64,
}

impl IpcLimits {
    /// Uploads: as much data in a message as gRPC lets a message carry
    /// (256 MiB), compressed or not: a few kilobytes of zstd inflating to
    /// gigabytes drove the server to 1.7 GB for a 10 KB upload.
    pub const UPLOAD: IpcLimits =
        IpcLimits { rows: i32::MAX as i64, buffer_bytes: 256 << 20, message_bytes: 256 << 20 };
    /// Arrow IPC files of a registry: batches of any size (a buffer up to
    /// 2 GiB, the most one of 32-bit offsets addresses; a message's body is
    /// also bounded by the file's size, see [`CheckedStream`]).
    pub const STORED: IpcLimits = IpcLimits { rows: i32::MAX as i64, buffer_bytes: 2 << 30, message_bytes: 4 << 30 };
    /// Bound parameters: one row.
    pub const PARAMETERS: IpcLimits = IpcLimits { rows: 1, buffer_bytes: 16 << 20, message_bytes: 64 << 20 };
}

/// Checks one message: its flatbuffer `header` and its `body`. Fails with
/// why the message cannot be decoded safely.
pub fn check_message(header: &[u8], body: &[u8], limits: IpcLimits) -> Result<(), String> {
    if header.is_empty() {
        return Ok(()); // no message (a FlightData carrying only a descriptor)
    }
    let message = root_as_message(header).map_err(|e| format!("not an Arrow IPC message: {e}"))?;
    let batch = match message.header_type() {
        // arrow converts a schema with unwraps: an edited one would panic
        // while decoding, so it is converted here, where that is caught.
        MessageHeader::Schema => {
            let schema = message.header_as_schema().ok_or("a schema message without its schema")?;
            check_schema(schema)?;
            let converted = std::panic::catch_unwind(|| arrow::ipc::convert::fb_to_schema(schema));
            return converted.map(drop).map_err(|_| "the schema message cannot be read".to_owned());
        }
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => message.header_as_dictionary_batch().and_then(|d| d.data()),
        _ => return Ok(()),
    };
    let Some(batch) = batch else { return Err("a batch message without its batch".into()) };
    if batch.length() < 0 || batch.length() > limits.rows {
        return Err(format!("a batch of {} rows (at most {} here)", batch.length(), limits.rows));
    }
    for node in batch.nodes().iter().flatten() {
        if node.length() < 0 || node.null_count() < 0 || node.null_count() > node.length() {
            return Err(format!("a column of {} values with {} nulls", node.length(), node.null_count()));
        }
    }
    if batch.variadicBufferCounts().is_some_and(|counts| counts.iter().any(|n| !(0..=1 << 16).contains(&n))) {
        return Err("a view column declaring too many data buffers".into());
    }
    let compressed = batch.compression().is_some();
    let mut total: i64 = 0;
    for buffer in batch.buffers().iter().flatten() {
        let (offset, length) = (buffer.offset(), buffer.length());
        let end = offset.checked_add(length).filter(|_| offset >= 0 && length >= 0);
        if end.is_none_or(|end| end as u64 > body.len() as u64) {
            return Err(format!(
                "a buffer at bytes {offset}..+{length} of a body of {} bytes (the body is cut short)",
                body.len()
            ));
        }
        // A compressed buffer starts with its size once decompressed
        // (-1: stored as is).
        let size = match compressed && length >= 8 {
            true => {
                let at = offset as usize;
                let declared = i64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
                if declared == -1 { length - 8 } else { declared }
            }
            false => length,
        };
        if size < 0 || size > limits.buffer_bytes {
            return Err(format!("a buffer of {size} bytes once decompressed (at most {} here)", limits.buffer_bytes));
        }
        total = total.saturating_add(size);
        if total > limits.message_bytes {
            return Err(format!("buffers of over {} bytes in one message", limits.message_bytes));
        }
    }
    Ok(())
}

/// Checks a schema for what arrow's conversion (`fb_to_schema`) panics on,
/// so that a crafted schema is refused naming the column at fault (the
/// conversion still runs under `catch_unwind`, for anything missed here).
/// Nesting is bounded by the flatbuffer verifier's depth limit.
fn check_schema(schema: arrow::ipc::Schema<'_>) -> Result<(), String> {
    let big_endian = schema.endianness() == arrow::ipc::Endianness::Big;
    for field in schema.fields().ok_or("a schema message without fields")?.iter() {
        check_field(field, big_endian)?;
    }
    Ok(())
}

/// One field of [`check_schema`] and its children.
fn check_field(field: arrow::ipc::Field<'_>, big_endian: bool) -> Result<(), String> {
    use arrow::ipc::{DateUnit, IntervalUnit, Precision, TimeUnit, Type, UnionMode};
    let name = field.name().unwrap_or_default();
    let bad = |what: &str| Err(format!("column {}: {what}", super::limits::excerpt(name)));
    let int_ok = |int: arrow::ipc::Int<'_>| matches!(int.bitWidth(), 8 | 16 | 32 | 64);
    if let Some(dictionary) = field.dictionary()
        && !dictionary.indexType().is_some_and(int_ok)
    {
        return bad("a dictionary whose index is not an 8, 16, 32 or 64-bit integer");
    }
    let children = field.children().map(|c| c.len());
    let ok = match field.type_type() {
        Type::Null
        | Type::Bool
        | Type::Binary
        | Type::BinaryView
        | Type::LargeBinary
        | Type::Utf8
        | Type::Utf8View
        | Type::LargeUtf8
        | Type::Struct_ => true,
        Type::Int => field.type_as_int().is_some_and(int_ok),
        Type::FixedSizeBinary => field.type_as_fixed_size_binary().is_some_and(|b| b.byteWidth() >= 0),
        Type::FloatingPoint => field
            .type_as_floating_point()
            .is_some_and(|f| matches!(f.precision(), Precision::HALF | Precision::SINGLE | Precision::DOUBLE)),
        Type::Date => field.type_as_date().is_some_and(|d| matches!(d.unit(), DateUnit::DAY | DateUnit::MILLISECOND)),
        Type::Time => field.type_as_time().is_some_and(|t| {
            matches!(
                (t.bitWidth(), t.unit()),
                (32, TimeUnit::SECOND | TimeUnit::MILLISECOND) | (64, TimeUnit::MICROSECOND | TimeUnit::NANOSECOND)
            )
        }),
        Type::Timestamp => field.type_as_timestamp().is_some_and(|t| (0..=3).contains(&t.unit().0)),
        Type::Duration => field.type_as_duration().is_some_and(|d| (0..=3).contains(&d.unit().0)),
        Type::Interval => field.type_as_interval().is_some_and(|i| {
            matches!(i.unit(), IntervalUnit::YEAR_MONTH | IntervalUnit::DAY_TIME | IntervalUnit::MONTH_DAY_NANO)
        }),
        Type::List | Type::LargeList | Type::ListView | Type::LargeListView => children == Some(1),
        Type::Map => children == Some(1) && field.type_as_map().is_some(),
        Type::FixedSizeList => {
            children == Some(1) && field.type_as_fixed_size_list().is_some_and(|l| l.listSize() >= 0)
        }
        Type::RunEndEncoded => children == Some(2),
        Type::Decimal => {
            !big_endian
                && field.type_as_decimal().is_some_and(|d| {
                    matches!(d.bitWidth(), 32 | 64 | 128 | 256)
                        && u8::try_from(d.precision()).is_ok()
                        && i8::try_from(d.scale()).is_ok()
                })
        }
        Type::Union => field.type_as_union().is_some_and(|u| {
            let fields = children.unwrap_or(0);
            matches!(u.mode(), UnionMode::Dense | UnionMode::Sparse)
                && match u.typeIds() {
                    // As arrow reads them: each id cast to i8, non-negative, unique.
                    Some(ids) => {
                        let mut seen = 0u128;
                        ids.len() == fields
                            && ids.iter().all(|id| {
                                let id = id as i8;
                                let fresh = id >= 0 && seen & (1 << id) == 0;
                                seen |= 1u128.checked_shl(id as u32).unwrap_or(0);
                                fresh
                            })
                    }
                    None => fields <= 128,
                }
        }),
        _ => false,
    };
    if !ok {
        return bad(&format!("type {:?}, declared in a way arrow cannot read", field.type_type()));
    }
    for child in field.children().iter().flat_map(|c| c.iter()) {
        check_field(child, big_endian)?;
    }
    Ok(())
}

/// Checks every message of an Arrow IPC stream (`bytes`, as
/// `StreamWriter` writes it) before it is decoded.
pub fn check_stream(bytes: &[u8], limits: IpcLimits) -> Result<(), String> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let end = at.checked_add(n).filter(|end| *end <= bytes.len()).ok_or("the stream is cut short")?;
        let out = &bytes[*at..end];
        *at = end;
        Ok(out)
    };
    while at < bytes.len() {
        let mut length = i32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
        if length == -1 {
            // The continuation marker, then the length.
            length = i32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
        }
        if length == 0 {
            return Ok(()); // end of stream
        }
        let length = usize::try_from(length).map_err(|_| format!("a message of {length} bytes"))?;
        let header = take(&mut at, length)?;
        let message = root_as_message(header).map_err(|e| format!("not an Arrow IPC message: {e}"))?;
        let body_length =
            usize::try_from(message.bodyLength()).map_err(|_| format!("a body of {} bytes", message.bodyLength()))?;
        let body = take(&mut at, body_length)?;
        check_message(header, body, limits)?;
    }
    Ok(())
}

/// An Arrow IPC stream read from `inner` a message at a time, each checked
/// ([`check_message`]) before the bytes reach arrow's `StreamReader`: a
/// message's header and body must lie within the `size` bytes the stream
/// has (so nothing is allocated beyond them) and declare nothing beyond the
/// limits. After the end-of-stream marker the rest passes through as is.
pub struct CheckedStream<R> {
    inner: R,
    limits: IpcLimits,
    /// Bytes of the stream not read from `inner` yet.
    left: u64,
    /// The checked message being handed out, and how much of it was.
    pending: Vec<u8>,
    at: usize,
    ended: bool,
}

impl<R: std::io::Read> CheckedStream<R> {
    /// Reads the stream of at most `size` bytes from `inner`.
    pub fn new(inner: R, size: u64, limits: IpcLimits) -> Self {
        CheckedStream { inner, limits, left: size, pending: Vec::new(), at: 0, ended: false }
    }

    /// Appends `n` bytes of `inner` to `pending`; false at a clean end of
    /// the input before any of them.
    fn take(&mut self, n: usize, what: &str) -> std::io::Result<bool> {
        if n as u64 > self.left {
            return Err(invalid(format!("{what} of {n} bytes, but only {} bytes are left in the file", self.left)));
        }
        let start = self.pending.len();
        self.pending.resize(start + n, 0);
        let mut filled = 0;
        while filled < n {
            match self.inner.read(&mut self.pending[start + filled..])? {
                0 if filled == 0 && start == 0 => return Ok(false),
                0 => {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{what} is cut short")));
                }
                k => filled += k,
            }
        }
        self.left -= n as u64;
        Ok(true)
    }

    /// Reads and checks the next message into `pending`.
    fn next_message(&mut self) -> std::io::Result<()> {
        self.pending.clear();
        self.at = 0;
        if !self.take(4, "a message length")? {
            self.ended = true; // no end-of-stream marker: arrow reads an end
            return Ok(());
        }
        let mut length = i32::from_le_bytes(self.pending[..4].try_into().expect("4 bytes"));
        if length == -1 {
            self.take(4, "a message length")?;
            length = i32::from_le_bytes(self.pending[4..8].try_into().expect("4 bytes"));
        }
        if length == 0 {
            self.ended = true;
            return Ok(());
        }
        let length = usize::try_from(length).map_err(|_| invalid(format!("a message of {length} bytes")))?;
        let header_at = self.pending.len();
        self.take(length, "a message header")?;
        let body_length = {
            let message = root_as_message(&self.pending[header_at..])
                .map_err(|e| invalid(format!("not an Arrow IPC message: {e}")))?;
            message.bodyLength()
        };
        let body_length =
            usize::try_from(body_length).map_err(|_| invalid(format!("a body of {body_length} bytes")))?;
        let body_at = self.pending.len();
        self.take(body_length, "a message body")?;
        check_message(&self.pending[header_at..body_at], &self.pending[body_at..], self.limits).map_err(invalid)
    }
}

fn invalid(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

impl<R: std::io::Read> std::io::Read for CheckedStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            if self.ended {
                return self.inner.read(buf);
            }
            self.next_message()?;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;

    fn stream(rows: usize) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from_iter_values(0..rows as i64)) as _),
            ("s", Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("v{i}")))) as _),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }

    #[test]
    fn well_formed_streams_pass_and_limits_hold() {
        check_stream(&stream(1), IpcLimits::PARAMETERS).unwrap();
        check_stream(&stream(1000), IpcLimits::UPLOAD).unwrap();
        let e = check_stream(&stream(2), IpcLimits::PARAMETERS).unwrap_err();
        assert!(e.contains("2 rows"), "{e}");
    }

    fn read_checked(bytes: &[u8]) -> Result<usize, arrow::error::ArrowError> {
        let checked = CheckedStream::new(std::io::Cursor::new(bytes), bytes.len() as u64, IpcLimits::STORED);
        let reader = arrow::ipc::reader::StreamReader::try_new(checked, None)?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?.iter().map(|b| b.num_rows()).sum())
    }

    #[test]
    fn checked_streams_read_as_arrow_reads_them() {
        assert_eq!(read_checked(&stream(1000)).unwrap(), 1000);
        // Bytes after the end-of-stream marker (a file's footer) pass through.
        let mut longer = stream(10);
        longer.extend_from_slice(b"footer");
        assert_eq!(read_checked(&longer).unwrap(), 10);
        // A body declared beyond the file is refused before it is allocated.
        let whole = stream(3);
        let schema_length = i32::from_le_bytes(whole[4..8].try_into().unwrap()) as usize;
        let batch_at = 8 + schema_length;
        let header_length = i32::from_le_bytes(whole[batch_at + 4..batch_at + 8].try_into().unwrap()) as usize;
        let header = &whole[batch_at + 8..batch_at + 8 + header_length];
        let body_length = root_as_message(header).unwrap().bodyLength();
        let found: Vec<usize> =
            header.windows(8).enumerate().filter(|(_, w)| *w == body_length.to_le_bytes()).map(|(i, _)| i).collect();
        assert_eq!(found.len(), 1, "the body length is written once in the header");
        let at = found[0];
        let mut huge = whole.clone();
        huge[batch_at + 8 + at..batch_at + 8 + at + 8].copy_from_slice(&(1i64 << 46).to_le_bytes());
        let e = read_checked(&huge).unwrap_err().to_string();
        assert!(e.contains("a message body of 70368744177664 bytes, but only"), "{e}");
        huge[batch_at + 8 + at..batch_at + 8 + at + 8].copy_from_slice(&(-8i64).to_le_bytes());
        assert!(read_checked(&huge).unwrap_err().to_string().contains("a body of -8 bytes"));
    }

    #[test]
    fn cut_and_mangled_streams_never_abort() {
        let whole = stream(100);
        for cut in [1, 5, 9, 100, whole.len() - 9, whole.len() - 20] {
            assert!(check_stream(&whole[..cut], IpcLimits::UPLOAD).is_err(), "cut at {cut}");
        }
        // Every single-byte change either passes the checks or is refused.
        // What passes may still fail to decode (arrow panics on, say, a
        // validity bitmap shorter than its column: callers decode under
        // `catch_unwind`), but never allocates beyond the limits: an
        // allocation failure would abort this test's process.
        for i in 0..whole.len() {
            for delta in [1u8, 0x80, 0xff] {
                let mut bytes = whole.clone();
                bytes[i] = bytes[i].wrapping_add(delta);
                let _ = std::panic::catch_unwind(|| read_checked(&bytes));
                if check_stream(&bytes, IpcLimits::UPLOAD).is_ok() {
                    let _ = std::panic::catch_unwind(|| {
                        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&bytes), None)?;
                        reader.collect::<Result<Vec<_>, _>>()
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, TimeUnit, UnionFields, UnionMode};
    use std::sync::Arc;

    /// The schema message of a stream of a schema holding most types.
    fn schema_message() -> Vec<u8> {
        let item = Arc::new(Field::new("item", DataType::Int32, true));
        let fields = vec![
            Field::new("i8", DataType::Int8, true),
            Field::new("u64", DataType::UInt64, true),
            Field::new("f16", DataType::Float16, true),
            Field::new("f64", DataType::Float64, true),
            Field::new("d32", DataType::Date32, true),
            Field::new("t64", DataType::Time64(TimeUnit::Nanosecond), true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
            Field::new("dur", DataType::Duration(TimeUnit::Second), true),
            Field::new("iv", DataType::Interval(IntervalUnit::MonthDayNano), true),
            Field::new("fsb", DataType::FixedSizeBinary(4), true),
            Field::new("dec", DataType::Decimal128(20, 3), true),
            Field::new("list", DataType::List(item.clone()), true),
            Field::new("fsl", DataType::FixedSizeList(item.clone(), 3), true),
            Field::new("st", DataType::Struct(vec![item.as_ref().clone()].into()), true),
            Field::new_dictionary("dict", DataType::Int16, DataType::Utf8, true),
            Field::new(
                "un",
                DataType::Union(
                    UnionFields::try_new([0, 5], [item.as_ref().clone(), Field::new("s", DataType::Utf8, true)])
                        .unwrap(),
                    UnionMode::Dense,
                ),
                true,
            ),
        ];
        let mut out = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &Schema::new(fields)).unwrap();
        w.finish().unwrap();
        drop(w);
        let length = i32::from_le_bytes(out[4..8].try_into().unwrap()) as usize;
        out[8..8 + length].to_vec()
    }

    fn conversion_panics(header: &[u8]) -> Option<bool> {
        let schema = root_as_message(header).ok()?.header_as_schema()?;
        check_schema(schema).ok()?;
        Some(std::panic::catch_unwind(|| arrow::ipc::convert::fb_to_schema(schema)).is_err())
    }

    #[test]
    fn schemas_arrow_would_panic_on_are_refused_first() {
        let header = schema_message();
        assert_eq!(conversion_panics(&header), Some(false));
        // Every single-byte change that the check lets through converts
        // without a panic (arrow converts schemas with unwraps and panics).
        for i in 0..header.len() {
            for delta in [1u8, 2, 0x10, 0x80, 0xff] {
                let mut bytes = header.clone();
                bytes[i] = bytes[i].wrapping_add(delta);
                assert_ne!(
                    conversion_panics(&bytes),
                    Some(true),
                    "byte {i} + {delta:#x} passed the check and panicked"
                );
            }
        }
    }

    #[test]
    fn an_int_of_bit_width_zero_names_its_column() {
        // A fuzzer's find (it panicked inside arrow before this check).
        let stream = include_bytes!("../../tests/fuzz/corpus/put/crash-ipc-int-bit-width-0");
        let e = check_stream(stream, IpcLimits::UPLOAD).unwrap_err();
        assert!(e.contains("column \"id\": type Int, declared in a way arrow cannot read"), "{e}");
    }
}
