//! A cache of encoded DoGet streams. A ticket names a pinned revision, so
//! the messages it yields never change: a repeated read is sent from memory
//! without decoding Parquet or encoding IPC again (the server's "hot read").
//! The messages share the decoded Arrow buffers (see [`super::encode`]), so
//! recording costs no copy; sizes count the bytes the messages send, which
//! may be less than the buffers they keep alive when a batch was a slice of
//! a larger decoded buffer.
//!
//! Memory is bounded: cached streams and streams being recorded share one
//! byte budget, least recently used streams are evicted first, and a stream
//! larger than half the budget is simply not cached.

use super::encode::WireMessage;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The encoded messages of one DoGet, in order.
pub type Messages = Arc<Vec<WireMessage>>;

/// Encoded DoGet streams by ticket bytes.
#[derive(Debug)]
pub struct StreamCache {
    budget: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Vec<u8>, Entry>,
    /// Tickets being recorded: one recording per ticket at a time, so many
    /// clients reading the same new ticket at once do not each reserve a
    /// copy and crowd each other out of the budget.
    recording: HashSet<Vec<u8>>,
    /// Bytes of cached entries plus bytes reserved by recordings.
    used: u64,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    messages: Messages,
    bytes: u64,
    last_used: u64,
}

impl StreamCache {
    /// A cache holding at most `budget` bytes (0 disables it).
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(StreamCache { budget, state: Mutex::default() })
    }

    /// The cached messages of `ticket`, if any.
    pub fn get(&self, ticket: &[u8]) -> Option<Messages> {
        let mut state = self.state.lock().expect("stream cache poisoned");
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(ticket)?;
        entry.last_used = now;
        Some(entry.messages.clone())
    }

    /// Starts recording the stream of `ticket`; feed it every message, then
    /// call [`Recording::finish`] once the stream ended successfully.
    /// Dropping a recording (a failed or abandoned stream) caches nothing.
    /// A ticket already being recorded by another stream gets a recording
    /// that records nothing.
    pub fn record(self: &Arc<Self>, ticket: Vec<u8>) -> Recording {
        let first =
            self.budget > 0 && self.state.lock().expect("stream cache poisoned").recording.insert(ticket.clone());
        Recording { cache: self.clone(), ticket, messages: Vec::new(), reserved: 0, gave_up: !first, owns: first }
    }

    fn recording_ended(&self, ticket: &[u8]) {
        self.state.lock().expect("stream cache poisoned").recording.remove(ticket);
    }

    /// Reserves `bytes` of the budget, evicting least recently used entries
    /// if needed. False when even an empty cache could not hold them.
    fn reserve(&self, bytes: u64) -> bool {
        let mut state = self.state.lock().expect("stream cache poisoned");
        while state.used + bytes > self.budget {
            let Some(oldest) = state.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone()) else {
                return false;
            };
            let evicted = state.entries.remove(&oldest).expect("present");
            state.used -= evicted.bytes;
        }
        state.used += bytes;
        true
    }

    fn release(&self, bytes: u64) {
        let mut state = self.state.lock().expect("stream cache poisoned");
        state.used -= bytes;
    }

    fn insert(&self, ticket: Vec<u8>, messages: Vec<WireMessage>, bytes: u64) {
        let mut state = self.state.lock().expect("stream cache poisoned");
        state.clock += 1;
        let entry = Entry { messages: Arc::new(messages), bytes, last_used: state.clock };
        // The bytes were reserved while recording; a concurrent recording of
        // the same ticket may have won the race, then ours are released.
        if let Some(previous) = state.entries.insert(ticket, entry) {
            state.used -= previous.bytes;
        }
    }

    /// Bytes currently held or reserved.
    pub fn used(&self) -> u64 {
        self.state.lock().expect("stream cache poisoned").used
    }
}

/// A stream being recorded for the cache.
#[derive(Debug)]
pub struct Recording {
    cache: Arc<StreamCache>,
    ticket: Vec<u8>,
    messages: Vec<WireMessage>,
    reserved: u64,
    gave_up: bool,
    /// This recording holds the ticket's slot in `State::recording`.
    owns: bool,
}

impl Recording {
    /// Records the next message (a cheap clone: the buffers are shared).
    pub fn push(&mut self, message: &WireMessage) {
        if self.gave_up {
            return;
        }
        let bytes = message.bytes();
        // One stream may take at most half the budget, so a huge read does
        // not flush everything else only to be dropped itself.
        if self.reserved + bytes <= self.cache.budget / 2 && self.cache.reserve(bytes) {
            self.reserved += bytes;
            self.messages.push(message.clone());
        } else {
            self.abandon();
        }
    }

    fn abandon(&mut self) {
        self.gave_up = true;
        self.messages = Vec::new();
        self.cache.release(std::mem::take(&mut self.reserved));
    }

    /// The stream ended successfully: cache it.
    pub fn finish(mut self) {
        if !self.gave_up {
            let (ticket, messages) = (self.ticket.clone(), std::mem::take(&mut self.messages));
            self.cache.insert(ticket, messages, std::mem::take(&mut self.reserved));
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if self.reserved > 0 {
            self.cache.release(self.reserved);
        }
        if self.owns {
            self.cache.recording_ended(&self.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(n: usize) -> WireMessage {
        WireMessage { body: vec![Bytes::from(vec![0u8; n])], ..Default::default() }
    }

    #[test]
    fn caches_finished_streams_only() {
        let cache = StreamCache::new(1000);
        let mut r = cache.record(b"a".to_vec());
        r.push(&msg(100));
        drop(r);
        assert!(cache.get(b"a").is_none());
        assert_eq!(cache.used(), 0);
        let mut r = cache.record(b"a".to_vec());
        r.push(&msg(100));
        r.push(&msg(50));
        r.finish();
        assert_eq!(cache.get(b"a").unwrap().len(), 2);
        assert_eq!(cache.used(), 150);
    }

    #[test]
    fn evicts_least_recently_used_and_bounds_memory() {
        let cache = StreamCache::new(1000);
        for key in [b"a", b"b", b"c"] {
            let mut r = cache.record(key.to_vec());
            r.push(&msg(400));
            r.finish();
        }
        // "a" was evicted to make room for "c".
        assert!(cache.get(b"a").is_none());
        assert!(cache.get(b"b").is_some() && cache.get(b"c").is_some());
        assert!(cache.used() <= 1000);
        // A stream larger than half the budget is not cached and leaves
        // nothing reserved (its first message may have evicted the oldest).
        let mut r = cache.record(b"big".to_vec());
        r.push(&msg(300));
        r.push(&msg(300));
        r.finish();
        assert!(cache.get(b"big").is_none());
        assert!(cache.get(b"c").is_some());
        assert!(cache.used() <= 800);
        // Same ticket recorded twice: counted once.
        let before = cache.used();
        for _ in 0..2 {
            let mut r = cache.record(b"c".to_vec());
            r.push(&msg(400));
            r.finish();
        }
        assert!(cache.used() <= before.max(800));
    }

    #[test]
    fn one_recording_per_ticket_at_a_time() {
        let cache = StreamCache::new(1000);
        let mut first = cache.record(b"a".to_vec());
        let mut second = cache.record(b"a".to_vec());
        first.push(&msg(100));
        second.push(&msg(100));
        assert_eq!(cache.used(), 100, "the second recording reserves nothing");
        second.finish();
        assert!(cache.get(b"a").is_none());
        first.finish();
        assert_eq!(cache.get(b"a").unwrap().len(), 1);
        // Once the first recording ended, the ticket may be recorded again.
        let mut again = cache.record(b"a".to_vec());
        again.push(&msg(10));
        assert_eq!(cache.used(), 110);
    }

    #[test]
    fn disabled_cache_records_nothing() {
        let cache = StreamCache::new(0);
        let mut r = cache.record(b"a".to_vec());
        r.push(&msg(1));
        r.finish();
        assert!(cache.get(b"a").is_none());
        assert_eq!(cache.used(), 0);
    }
}
