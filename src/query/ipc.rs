//! Checks of Arrow IPC messages a client sent, made before arrow decodes
//! them. arrow's reader trusts a message's header: a buffer reaching past
//! the body panics while slicing, and a compressed buffer's declared size is
//! allocated as declared (tens of gigabytes from a few bytes, which aborts
//! the process: no `catch_unwind` stops that). Uploads (DoPut) and the
//! parameters inside Flight SQL tickets and handles are checked here first;
//! what still cannot be decoded (a validity bitmap shorter than its column
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
    /// Uploads: batches of any size a message can carry (gRPC caps a
    /// message at 256 MiB; compressed buffers may inflate to 2 GiB, the
    /// most one Arrow buffer of 32-bit offsets addresses).
    pub const UPLOAD: IpcLimits = IpcLimits { rows: i32::MAX as i64, buffer_bytes: 2 << 30, message_bytes: 4 << 30 };
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
