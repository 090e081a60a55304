//! Parameters bound to a prepared statement (a Flight SQL DoPut): they
//! travel inside the statement's handle, so any replica can execute it.

use super::{SqlFlight, read_only};
use crate::sql::{PreparedHandle, ticket};
use arrow::array::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::FlightDescriptor;
use arrow_flight::sql::{Any, Command, CommandPreparedStatementQuery, DoPutPreparedStatementResult};
use prost::Message;
use tonic::Status;

/// Batches of parameters accepted in one bind.
const MAX_PARAMETER_BATCHES: usize = 16;
/// Largest bound parameters (their Arrow IPC encoding): every result ticket
/// of an execution carries them, and a ticket must fit in a DoGet request
/// (4 MiB, with the statement, up to 1 MiB, and the revisions it pins).
pub(super) const MAX_PARAMETER_BYTES: usize = 1 << 20;

impl SqlFlight {
    /// A Flight SQL DoPut: parameters bound to a prepared statement; every
    /// update is refused (read-only). Answers the result's `app_metadata`.
    pub async fn put(
        &self,
        descriptor: &FlightDescriptor,
        flight: impl futures::Stream<Item = Result<FlightData, arrow_flight::error::FlightError>> + Send + 'static,
    ) -> Result<Vec<u8>, Status> {
        let any = Any::decode(descriptor.cmd.as_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        match Command::try_from(any).map_err(|e| Status::invalid_argument(e.to_string()))? {
            Command::CommandPreparedStatementQuery(query) => {
                let what = "the bound parameters";
                let flight = super::super::put::checked_ipc(flight, what.into());
                let mut stream = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(flight);
                let mut batches = Vec::new();
                while let Some(batch) = super::super::put::next_batch(&mut stream, what).await? {
                    if batches.len() == MAX_PARAMETER_BATCHES {
                        return Err(Status::invalid_argument("bind one row of parameters per execution"));
                    }
                    batches.push(batch);
                }
                self.bind(query, batches).await
            }
            other => Err(read_only(&format!("{} (an update)", other.type_url()))),
        }
    }

    /// Binds parameters to a prepared statement (DoPut): answers the
    /// handle that carries them.
    pub async fn bind(
        &self,
        query: CommandPreparedStatementQuery,
        batches: Vec<RecordBatch>,
    ) -> Result<Vec<u8>, Status> {
        let handle = open_handle(&query.prepared_statement_handle)?;
        let parameters = match batches.first() {
            None => Vec::new(),
            Some(first) => {
                let batch = arrow::compute::concat_batches(&first.schema(), &batches)
                    .map_err(|e| Status::invalid_argument(format!("the bound parameters: {e}")))?;
                checked_parameters(&batch)?
            }
        };
        let handle = PreparedHandle { sql: handle.sql, parameters };
        let result = DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.encode_to_vec().into()) };
        Ok(result.encode_to_vec())
    }
}

/// Encodes bound parameters, refusing what no execution could use: one
/// row is bound per execution, and its encoding must fit in the tickets
/// that carry it ([`MAX_PARAMETER_BYTES`]).
fn checked_parameters(batch: &RecordBatch) -> Result<Vec<u8>, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "the bound parameters: bind one row of parameters per execution; got {} rows",
            batch.num_rows()
        )));
    }
    let encoded = ticket::encode_parameters(batch)?;
    if encoded.len() > MAX_PARAMETER_BYTES {
        return Err(Status::invalid_argument(format!(
            "the bound parameters are {} bytes encoded; at most {MAX_PARAMETER_BYTES} are accepted (every result \
             ticket carries them, and a ticket must fit in a DoGet request): write large values into the statement's \
             tables instead",
            encoded.len()
        )));
    }
    Ok(encoded)
}

/// A prepared-statement handle decoded.
pub(super) fn open_handle(bytes: &[u8]) -> Result<PreparedHandle, Status> {
    PreparedHandle::decode(bytes).map_err(|e| Status::invalid_argument(format!("not a Sheaf prepared statement: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use std::sync::Arc;

    fn strings(values: Vec<String>) -> RecordBatch {
        RecordBatch::try_from_iter([("a", Arc::new(StringArray::from(values)) as _)]).unwrap()
    }

    #[test]
    fn parameters_are_one_row_within_a_ticket() {
        checked_parameters(&strings(vec!["x".into()])).unwrap();
        let e = checked_parameters(&strings(vec!["x".into(), "y".into()])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("one row") && e.message().contains("2 rows"), "{e}");
        let e = checked_parameters(&strings(vec![])).unwrap_err();
        assert!(e.message().contains("0 rows"), "{e}");
        let e = checked_parameters(&strings(vec!["x".repeat(MAX_PARAMETER_BYTES)])).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("bytes encoded"), "{e}");
    }
}
