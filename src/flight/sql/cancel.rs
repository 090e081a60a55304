//! CancelFlightInfo: running statement streams by ticket, and the stream
//! wrapper that ends one with CANCELLED (never a silent end).

use crate::auth::{Access, Principal};
use crate::sql::StatementTicket;
use arrow::array::RecordBatch;
use arrow_flight::sql::{Any, TicketStatementQuery};
use arrow_flight::{CancelStatus, FlightInfo};
use futures::stream::{self, BoxStream, StreamExt};
use prost::Message;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Running statement streams by ticket, so CancelFlightInfo can stop them.
#[derive(Default)]
pub struct Cancels {
    running: Mutex<HashMap<Vec<u8>, Vec<(u64, tokio::sync::watch::Sender<bool>)>>>,
    next: AtomicU64,
}

/// Removes a stream from [`Cancels`] when it ends.
pub struct Registered {
    cancels: Arc<Cancels>,
    ticket: Vec<u8>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut running = self.cancels.running.lock().expect("cancels poisoned");
        if let Some(list) = running.get_mut(&self.ticket) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                running.remove(&self.ticket);
            }
        }
    }
}

impl Cancels {
    pub(super) fn register(self: &Arc<Self>, ticket: Vec<u8>) -> (Registered, tokio::sync::watch::Receiver<bool>) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.running.lock().expect("cancels poisoned").entry(ticket.clone()).or_default().push((id, tx));
        (Registered { cancels: self.clone(), ticket, id }, rx)
    }

    /// Cancels the streams of these tickets that `may_cancel` allows; how
    /// many there were. A ticket it refuses counts as not running, so the
    /// caller learns nothing of it.
    fn cancel(&self, tickets: impl IntoIterator<Item = Vec<u8>>, may_cancel: impl Fn(&[u8]) -> bool) -> usize {
        let running = self.running.lock().expect("cancels poisoned");
        let mut cancelled = 0;
        for ticket in tickets {
            let Some(streams) = running.get(&ticket) else { continue };
            if !may_cancel(&ticket) {
                continue;
            }
            for (_, tx) in streams {
                let _ = tx.send(true);
                cancelled += 1;
            }
        }
        cancelled
    }

    /// Cancels the queries of a FlightInfo's endpoints whose tickets
    /// `may_cancel` allows (the others are answered as unknown ones are).
    pub(super) fn cancel_info(&self, info: &FlightInfo, may_cancel: impl Fn(&[u8]) -> bool) -> CancelStatus {
        let tickets = info.endpoint.iter().filter_map(|e| e.ticket.as_ref()).map(|t| t.ticket.to_vec());
        match self.cancel(tickets, may_cancel) {
            0 => CancelStatus::NotCancellable,
            _ => CancelStatus::Cancelled,
        }
    }
}

/// Ends `batches` with an error (never a silent end) once cancelled.
pub(super) fn until_cancelled(
    batches: BoxStream<'static, Result<RecordBatch, crate::query::Error>>,
    cancelled: tokio::sync::watch::Receiver<bool>,
    guard: Registered,
) -> BoxStream<'static, Result<RecordBatch, crate::query::Error>> {
    stream::unfold(Some((batches, cancelled, guard)), |state| async move {
        let (mut batches, mut cancelled, guard) = state?;
        let next = tokio::select! {
            biased;
            _ = cancelled.wait_for(|c| *c) => None,
            next = batches.next() => Some(next),
        };
        match next {
            None => {
                Some((Err(crate::query::Error::Cancelled("the query was cancelled (CancelFlightInfo)".into())), None))
            }
            Some(None) => None,
            Some(Some(Err(e))) => Some((Err(e), None)),
            Some(Some(Ok(b))) => Some((Ok(b), Some((batches, cancelled, guard)))),
        }
    })
    .boxed()
}

/// Whether `principal` may read every package of `revisions`
/// (`owner/name@<top hash>`).
pub(super) fn may_read_all(principal: &Principal, revisions: &[String]) -> bool {
    revisions.iter().all(|r| principal.may(Access::Read, r.split_once('@').map_or(r.as_str(), |(package, _)| package)))
}

/// Whether `principal` may cancel the statement of a result ticket: only
/// one who may read every package it reads may (anyone else could stop
/// another caller's query, and learn that it runs).
pub(super) fn may_cancel(principal: &Principal, ticket: &[u8]) -> bool {
    let Ok(any) = Any::decode(ticket) else { return false };
    let Ok(Some(query)) = any.unpack::<TicketStatementQuery>() else { return false };
    let Ok(statement) = StatementTicket::decode(query.statement_handle.as_ref()) else { return false };
    let revisions = statement.pins.as_ref().map(|p| p.revisions()).unwrap_or_default();
    may_read_all(principal, &revisions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::{FlightEndpoint, Ticket};

    fn info(tickets: &[&[u8]]) -> FlightInfo {
        let endpoints = tickets.iter().map(|t| FlightEndpoint::new().with_ticket(Ticket::new(t.to_vec())));
        FlightInfo::new().with_endpoints(endpoints.collect())
    }

    #[test]
    fn only_allowed_tickets_are_cancelled() {
        let cancels = Arc::new(Cancels::default());
        let (_a, a) = cancels.register(b"a".to_vec());
        let (_b, b) = cancels.register(b"b".to_vec());
        // Refused: answered as an unknown ticket is, nothing cancelled.
        assert_eq!(cancels.cancel_info(&info(&[b"a"]), |_| false), CancelStatus::NotCancellable);
        assert_eq!(cancels.cancel_info(&info(&[b"nope"]), |_| true), CancelStatus::NotCancellable);
        assert!(!*a.borrow());
        assert_eq!(cancels.cancel_info(&info(&[b"a", b"b"]), |t| t == b"b"), CancelStatus::Cancelled);
        assert!(!*a.borrow());
        assert!(*b.borrow());
    }
}
