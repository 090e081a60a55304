//! What a Flight SQL client carries between calls: prepared-statement
//! handles and result tickets. Both are self-contained (no server state),
//! so any replica can redeem them; access is checked again on every use.

use crate::query::Error;
use arrow::array::RecordBatch;
use std::collections::BTreeMap;

/// The revisions a statement read, by the names it used.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pins {
    /// Schema name (`owner/name`, `owner/name@prefix`, `owner/name:tag`)
    /// -> `owner/name@<top hash>`.
    #[prost(btree_map = "string, string", tag = "1")]
    pub schemas: BTreeMap<String, String>,
    /// Table-function URI, as written -> the URI pinned to its top hash.
    #[prost(btree_map = "string, string", tag = "2")]
    pub uris: BTreeMap<String, String>,
}

impl Pins {
    /// Every `owner/name@<top hash>` read, sorted, without repeats.
    pub fn revisions(&self) -> Vec<String> {
        let mut out: Vec<String> = self.schemas.values().cloned().collect();
        for uri in self.uris.values() {
            if let Ok(u) = crate::query::DatasetUri::parse(uri)
                && let crate::registry::Revision::Hash(h) = &u.revision
            {
                out.push(format!("{}@{h}", u.package));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// A DoGet ticket of a statement's result: one output partition of the
/// statement planned with every revision pinned.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatementTicket {
    /// The statement as the client wrote it.
    #[prost(string, tag = "1")]
    pub sql: String,
    /// The revisions it reads.
    #[prost(message, optional, tag = "2")]
    pub pins: Option<Pins>,
    /// Bound parameters: one row, Arrow IPC stream (empty: none).
    #[prost(bytes = "vec", tag = "3")]
    pub parameters: Vec<u8>,
    /// The output partition this ticket reads.
    #[prost(uint32, tag = "4")]
    pub partition: u32,
    /// How many partitions the plan had (checked when redeemed).
    #[prost(uint32, tag = "5")]
    pub partitions: u32,
}

/// A prepared statement's handle: the statement and its bound parameters.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PreparedHandle {
    /// The statement as the client wrote it.
    #[prost(string, tag = "1")]
    pub sql: String,
    /// Bound parameters: one row, Arrow IPC stream (empty: none bound).
    #[prost(bytes = "vec", tag = "2")]
    pub parameters: Vec<u8>,
}

/// Encodes parameters (one row) as an Arrow IPC stream.
pub fn encode_parameters(batch: &RecordBatch) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, batch.schema().as_ref())
        .map_err(|e| Error::engine("encoding parameters", e))?;
    writer.write(batch).map_err(|e| Error::engine("encoding parameters", e))?;
    writer.finish().map_err(|e| Error::engine("encoding parameters", e))?;
    drop(writer);
    Ok(out)
}

/// Decodes parameters written by [`encode_parameters`] (`None` when empty).
pub fn decode_parameters(bytes: &[u8]) -> Result<Option<RecordBatch>, Error> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let bad = |e: arrow::error::ArrowError| Error::invalid(format!("bad parameters in the handle: {e}"));
    // A handle or ticket comes back from the client: its bytes are checked
    // before arrow trusts their headers.
    crate::query::ipc::check_stream(bytes, crate::query::ipc::IpcLimits::PARAMETERS)
        .map_err(|why| Error::invalid(format!("bad parameters in the handle: {why}")))?;
    // arrow reads a schema message with unwraps: an edited one panics.
    let decoded = std::panic::catch_unwind(|| {
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        reader.collect::<Result<Vec<RecordBatch>, _>>()
    });
    let batches = decoded
        .map_err(|_| Error::invalid("bad parameters in the handle: not a valid Arrow IPC stream"))?
        .map_err(bad)?;
    let schema = batches.first().map(|b| b.schema()).ok_or_else(|| Error::invalid("bad parameters: no batch"))?;
    let batch = arrow::compute::concat_batches(&schema, &batches).map_err(bad)?;
    Ok(Some(batch))
}
