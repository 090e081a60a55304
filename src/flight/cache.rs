//! A cache of encoded DoGet streams. A ticket names a pinned revision, so
//! the messages it yields never change: a repeated read is sent from memory
//! without decoding Parquet or encoding IPC again (the server's "hot read").
//! A stream is recorded as it is sent, sharing the decoded Arrow buffers
//! (see [`super::encode`]), so the read that records copies nothing. At its
//! first hit (a stream read again is likely read again; one never read again
//! never pays for it) it is made contiguous in the background, one stream at a time
//! ([`super::grpc::contiguous`]: each message copied once into one buffer
//! with its gRPC head): a repeated read then writes each message to the
//! socket at once rather than Arrow buffer by Arrow buffer, which is what
//! brings repeated reads to the pyarrow in-memory server's speed
//! (`benches/flight_read.py`), and the bytes the cache counts become the
//! bytes it holds (no decoded buffer kept alive by a slice of it). The copy
//! needs room in the budget next to the stream while it is made; without
//! room the stream stays as recorded.
//!
//! Memory is bounded: cached streams and streams being recorded share one
//! byte budget, least recently used streams are evicted first, and a stream
//! larger than half the budget is simply not cached.
//!
//! A ticket is recorded from its `min_reads`-th read on (2 by default, as
//! nginx's `proxy_cache_min_uses`): a table read once (a notebook's look, an
//! export) neither evicts what is read again nor pays for being kept. Keeping
//! a stream is not free: its buffers stay allocated, so the next batches are
//! decoded into fresh memory, and a first read that records costs about a
//! fifth more (page faults; `benches/flight_read.py`). The reads counted are
//! remembered for the last [`SEEN_TICKETS`] tickets, by a keyed hash.
//!
//! Reads of one ticket coalesce: while a stream of a ticket is being
//! recorded, another read of it waits for the recording and is sent from
//! the cache once it is there (many workers starting on the same data
//! decode it once, not once each). It waits only while the recording makes
//! progress: when the recording stalls (its client stopped reading) for
//! [`STALL`], gives up (the stream is too large to cache) or fails, the
//! waiting read executes the ticket itself.

use super::encode::WireMessage;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a read waits for a recording of its ticket that records
/// nothing new before it reads on its own.
pub const STALL: Duration = Duration::from_secs(2);

/// Tickets whose reads are counted towards `min_reads` (the least recently
/// read are forgotten first; a few dozen bytes each).
pub const SEEN_TICKETS: usize = 1 << 16;

/// The encoded messages of one DoGet, in order.
pub type Messages = Arc<Vec<WireMessage>>;

/// Encoded DoGet streams by ticket bytes.
#[derive(Debug)]
pub struct StreamCache {
    budget: u64,
    /// The read of a ticket from which on it is recorded (1: the first).
    min_reads: u32,
    /// Keys the hashes of [`State::seen`].
    hasher: RandomState,
    state: Mutex<State>,
    /// One stream is made contiguous at a time.
    compacting: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug)]
struct State {
    entries: HashMap<Vec<u8>, Entry>,
    /// Reads so far of recently read tickets not cached (by keyed hash; a
    /// collision only records a ticket one read early).
    seen: quick_cache::unsync::Cache<u64, u32>,
    /// Tickets being recorded, and their progress: one recording per
    /// ticket at a time, so many clients reading the same new ticket at once
    /// do not each reserve a copy and crowd each other out of the budget;
    /// the others wait for it ([`StreamCache::lookup`]).
    recording: HashMap<Vec<u8>, watch::Receiver<Progress>>,
    /// Bytes of cached entries plus bytes reserved by recordings and by
    /// contiguous copies being made.
    used: u64,
    clock: u64,
}

/// How far a recording has got; its sender is dropped when it ends.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// When it started or last recorded a message.
    at: Instant,
    gave_up: bool,
}

impl Progress {
    fn new() -> Self {
        Progress { at: Instant::now(), gave_up: false }
    }
}

/// When a ticket's stream starts being kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// From its `min_reads`-th read on: for streams about as large as the
    /// work of producing them (a table's rows).
    Repeated,
    /// From its first read: for answers much smaller than the work behind
    /// them (a SQL statement's aggregates).
    First,
}

/// What [`StreamCache::lookup`] found for a ticket.
#[derive(Debug)]
pub enum Lookup {
    /// The ticket's messages, cached.
    Hit(Messages),
    /// Not cached: execute the ticket, feeding the recording.
    Miss(Recording),
}

#[derive(Debug)]
struct Entry {
    messages: Messages,
    bytes: u64,
    last_used: u64,
    /// Set once the entry was handed to [`StreamCache::make_contiguous`].
    compacted: bool,
}

impl StreamCache {
    /// A cache holding at most `budget` bytes (0 disables it) that records
    /// a ticket from its `min_reads`-th read on (0 and 1: from the first).
    pub fn new(budget: u64, min_reads: u32) -> Arc<Self> {
        let state = State {
            entries: HashMap::new(),
            seen: quick_cache::unsync::Cache::new(SEEN_TICKETS),
            recording: HashMap::new(),
            used: 0,
            clock: 0,
        };
        Arc::new(StreamCache {
            budget,
            min_reads: min_reads.max(1),
            hasher: RandomState::new(),
            state: Mutex::new(state),
            compacting: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// Counts a read of `ticket`, which is not cached nor being recorded:
    /// whether this read records it.
    fn admit(&self, state: &mut State, ticket: &[u8], admission: Admission) -> bool {
        if self.min_reads <= 1 || admission == Admission::First {
            return true;
        }
        let key = self.hasher.hash_one(ticket);
        let reads = state.seen.get(&key).copied().unwrap_or(0).saturating_add(1);
        // Kept after admission too: a ticket evicted from the cache after
        // it was read again is recorded again at its next read.
        state.seen.insert(key, reads);
        reads >= self.min_reads
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

    /// The cached messages of `ticket`, or a recording to feed while
    /// executing it (one that records nothing when `admission` says this
    /// read is too early). While another read records the same ticket,
    /// waits for it (see the module's documentation) and answers from the
    /// cache.
    pub async fn lookup(self: &Arc<Self>, ticket: &[u8], admission: Admission) -> Lookup {
        loop {
            let mut progress = {
                let mut state = self.state.lock().expect("stream cache poisoned");
                state.clock += 1;
                let now = state.clock;
                if let Some(entry) = state.entries.get_mut(ticket) {
                    entry.last_used = now;
                    let messages = entry.messages.clone();
                    if !std::mem::replace(&mut entry.compacted, true) {
                        let bytes = entry.bytes;
                        drop(state);
                        self.make_contiguous(ticket.to_vec(), messages.clone(), bytes);
                    }
                    return Lookup::Hit(messages);
                }
                if self.budget == 0 {
                    return Lookup::Miss(self.recording(ticket.to_vec(), None));
                }
                let recording = state.recording.get(ticket).cloned();
                match recording {
                    Some(progress) => progress,
                    None if !self.admit(&mut state, ticket, admission) => {
                        return Lookup::Miss(self.recording(ticket.to_vec(), None));
                    }
                    None => {
                        let (sender, receiver) = watch::channel(Progress::new());
                        state.recording.insert(ticket.to_vec(), receiver);
                        return Lookup::Miss(self.recording(ticket.to_vec(), Some(sender)));
                    }
                }
            };
            // Another read records this ticket: wait while it progresses
            // (one that already gave up or stalled is not waited for).
            let now = *progress.borrow_and_update();
            if now.gave_up || now.at.elapsed() >= STALL {
                return Lookup::Miss(self.recording(ticket.to_vec(), None));
            }
            loop {
                match tokio::time::timeout(STALL, progress.changed()).await {
                    // It recorded more; unless it gave up, keep waiting.
                    Ok(Ok(())) if !progress.borrow_and_update().gave_up => continue,
                    // It ended: cached now, or the ticket is free to record.
                    Ok(Err(_)) => break,
                    // It gave up or stalled: read alone.
                    _ => return Lookup::Miss(self.recording(ticket.to_vec(), None)),
                }
            }
        }
    }

    /// Starts recording the stream of `ticket`; feed it every message, then
    /// call [`Recording::finish`] once the stream ended successfully.
    /// Dropping a recording (a failed or abandoned stream) caches nothing.
    /// A ticket already being recorded by another stream gets a recording
    /// that records nothing.
    pub fn record(self: &Arc<Self>, ticket: Vec<u8>) -> Recording {
        let mut state = self.state.lock().expect("stream cache poisoned");
        if self.budget == 0 || state.recording.contains_key(&ticket) {
            drop(state);
            return self.recording(ticket, None);
        }
        let (sender, receiver) = watch::channel(Progress::new());
        state.recording.insert(ticket.clone(), receiver);
        drop(state);
        self.recording(ticket, Some(sender))
    }

    /// A recording of `ticket`: it records when it holds the ticket's slot
    /// (`progress`), else records nothing.
    fn recording(self: &Arc<Self>, ticket: Vec<u8>, progress: Option<watch::Sender<Progress>>) -> Recording {
        let gave_up = progress.is_none();
        Recording { cache: self.clone(), ticket, messages: Vec::new(), reserved: 0, gave_up, progress }
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
            crate::metrics::CACHE_BYTES.add(-(evicted.bytes as i64));
            crate::metrics::CACHE_EVICTIONS.add(1);
        }
        state.used += bytes;
        crate::metrics::CACHE_BYTES.add(bytes as i64);
        true
    }

    fn release(&self, bytes: u64) {
        let mut state = self.state.lock().expect("stream cache poisoned");
        state.used -= bytes;
        crate::metrics::CACHE_BYTES.add(-(bytes as i64));
    }

    fn insert(&self, ticket: Vec<u8>, messages: Messages, bytes: u64) {
        let mut state = self.state.lock().expect("stream cache poisoned");
        state.clock += 1;
        let entry = Entry { messages, bytes, last_used: state.clock, compacted: false };
        // The bytes were reserved while recording; a concurrent recording of
        // the same ticket may have won the race, then ours are released.
        if let Some(previous) = state.entries.insert(ticket, entry) {
            state.used -= previous.bytes;
            crate::metrics::CACHE_BYTES.add(-(previous.bytes as i64));
        }
    }

    /// Makes the cached stream `messages` of `ticket` contiguous in the
    /// background, one stream at a time. Outside a tokio runtime, or without
    /// room in the budget for the copy next to it when its turn comes (no
    /// entry is evicted for a copy), it stays as recorded. The copy replaces
    /// the entry only if the entry still holds `messages`; reads already
    /// sending them finish with them.
    fn make_contiguous(self: &Arc<Self>, ticket: Vec<u8>, messages: Messages, bytes: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let cache = self.clone();
        runtime.spawn(async move {
            let Ok(_turn) = cache.compacting.clone().acquire_owned().await else { return };
            {
                let mut state = cache.state.lock().expect("stream cache poisoned");
                let current = state.entries.get(&ticket).is_some_and(|e| Arc::ptr_eq(&e.messages, &messages));
                if !current || state.used + bytes > cache.budget {
                    return;
                }
                state.used += bytes;
                crate::metrics::CACHE_BYTES.add(bytes as i64);
            }
            let copy = {
                let messages = messages.clone();
                tokio::task::spawn_blocking(move || {
                    messages.iter().map(super::grpc::contiguous).collect::<Result<Vec<_>, _>>()
                })
                .await
            };
            if let Ok(Ok(copy)) = copy {
                let mut state = cache.state.lock().expect("stream cache poisoned");
                if let Some(entry) = state.entries.get_mut(&ticket).filter(|e| Arc::ptr_eq(&e.messages, &messages)) {
                    entry.messages = Arc::new(copy);
                }
            }
            cache.release(bytes);
        });
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
    /// Set when this recording holds the ticket's slot in
    /// `State::recording`: tells the reads waiting for it how it goes.
    progress: Option<watch::Sender<Progress>>,
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
            if let Some(progress) = &self.progress {
                progress.send_modify(|p| p.at = Instant::now());
            }
        } else {
            self.abandon();
        }
    }

    fn abandon(&mut self) {
        self.gave_up = true;
        self.messages = Vec::new();
        self.cache.release(std::mem::take(&mut self.reserved));
        if let Some(progress) = &self.progress {
            progress.send_modify(|p| p.gave_up = true);
        }
    }

    /// The stream ended successfully: cache it.
    pub fn finish(mut self) {
        if !self.gave_up {
            let (ticket, messages) = (self.ticket.clone(), Arc::new(std::mem::take(&mut self.messages)));
            self.cache.insert(ticket, messages, std::mem::take(&mut self.reserved));
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if self.reserved > 0 {
            self.cache.release(self.reserved);
        }
        if let Some(progress) = self.progress.take() {
            // The slot is free before the reads waiting for this recording
            // wake (when its sender is dropped); a finished stream is in the
            // cache before either.
            self.cache.recording_ended(&self.ticket);
            drop(progress);
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
        let cache = StreamCache::new(1000, 1);
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
        let cache = StreamCache::new(1000, 1);
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
        let cache = StreamCache::new(1000, 1);
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

    fn hit(lookup: Lookup) -> Option<usize> {
        match lookup {
            Lookup::Hit(messages) => Some(messages.len()),
            Lookup::Miss(_) => None,
        }
    }

    #[tokio::test]
    async fn a_read_of_a_ticket_being_recorded_waits_for_it_and_is_sent_from_the_cache() {
        let cache = StreamCache::new(1000, 1);
        let Lookup::Miss(mut first) = cache.lookup(b"a", Admission::Repeated).await else {
            panic!("nothing is cached yet")
        };
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { hit(cache.lookup(b"a", Admission::Repeated).await) }
        });
        for _ in 0..3 {
            tokio::task::yield_now().await;
            first.push(&msg(10));
        }
        first.finish();
        assert_eq!(waiter.await.unwrap(), Some(3), "the waiting read got the recorded stream");
    }

    #[tokio::test]
    async fn a_waiting_read_records_itself_when_the_recording_fails_and_reads_alone_when_it_gives_up() {
        let cache = StreamCache::new(1000, 1);
        let Lookup::Miss(mut first) = cache.lookup(b"a", Admission::Repeated).await else {
            panic!("nothing is cached yet")
        };
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.lookup(b"a", Admission::Repeated).await }
        });
        tokio::task::yield_now().await;
        first.push(&msg(10));
        drop(first); // the stream failed
        let Lookup::Miss(mut second) = waiter.await.unwrap() else { panic!("nothing was cached") };
        // The waiting read took the ticket's slot: it records.
        second.push(&msg(10));
        assert_eq!(cache.used(), 10);
        // A read waiting for a recording that gives up (too large) reads alone.
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.lookup(b"a", Admission::Repeated).await }
        });
        tokio::task::yield_now().await;
        second.push(&msg(600));
        let Lookup::Miss(mut alone) = waiter.await.unwrap() else { panic!("nothing was cached") };
        alone.push(&msg(10));
        assert_eq!(cache.used(), 0, "neither records any more");
        // A read arriving after the recording gave up does not wait for it.
        let late = futures::FutureExt::now_or_never(cache.lookup(b"a", Admission::Repeated))
            .expect("answered without waiting");
        let Lookup::Miss(mut late) = late else { panic!("nothing was cached") };
        late.push(&msg(10));
        assert_eq!(cache.used(), 0);
        drop(second);
    }

    #[tokio::test]
    async fn a_waiting_read_stops_waiting_for_a_stalled_recording() {
        let cache = StreamCache::new(1000, 1);
        let Lookup::Miss(_stalled) = cache.lookup(b"a", Admission::Repeated).await else {
            panic!("nothing is cached yet")
        };
        let started = std::time::Instant::now();
        let Lookup::Miss(mut alone) = cache.lookup(b"a", Admission::Repeated).await else {
            panic!("nothing was cached")
        };
        assert!(started.elapsed() >= STALL);
        alone.push(&msg(10));
        assert_eq!(cache.used(), 0, "the stalled recording keeps the slot; this read records nothing");
    }

    /// Waits (a bounded while) until the cached stream of `ticket` is contiguous.
    async fn contiguous_soon(cache: &Arc<StreamCache>, ticket: &[u8]) -> bool {
        for _ in 0..500 {
            if cache.get(ticket).is_some_and(|m| m.iter().all(|m| m.framed.is_some())) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    fn hit_now(lookup: Lookup) {
        assert!(matches!(lookup, Lookup::Hit(_)), "a cached ticket is a hit");
    }

    #[tokio::test]
    async fn a_cached_stream_is_made_contiguous_at_its_first_hit() {
        let cache = StreamCache::new(1000, 1);
        let body = |n: usize, fill: u8| vec![Bytes::from(vec![fill; n / 2]), Bytes::from(vec![fill + 1; n - n / 2])];
        let mut r = cache.record(b"a".to_vec());
        r.push(&WireMessage { data_header: Bytes::from_static(b"head"), body: body(100, 1), ..Default::default() });
        r.push(&WireMessage { body: body(50, 3), ..Default::default() });
        r.finish();
        let as_recorded = cache.get(b"a").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(cache.get(b"a").unwrap().iter().all(|m| m.framed.is_none()), "not before it is read again");
        hit_now(cache.lookup(b"a", Admission::Repeated).await);
        assert!(contiguous_soon(&cache, b"a").await);
        let kept = cache.get(b"a").unwrap();
        for (old, new) in as_recorded.iter().zip(kept.iter()) {
            // The same message, in one buffer: what the wire gets is unchanged.
            assert_eq!(new.body.len(), 1);
            assert_eq!(new.body[0].to_vec(), old.body.concat());
            assert_eq!(new.data_header, old.data_header);
            let mut wire = super::super::grpc::frame(old).unwrap().to_vec();
            old.body.iter().for_each(|p| wire.extend_from_slice(p));
            assert_eq!(new.framed.as_ref().unwrap().to_vec(), wire);
        }
        assert_eq!(cache.used(), 154, "the copy's room is released once it replaced the stream");

        // Without room for a copy next to it, a stream stays as recorded.
        let mut r = cache.record(b"b".to_vec());
        r.push(&WireMessage { body: body(300, 5), ..Default::default() });
        r.finish();
        hit_now(cache.lookup(b"b", Admission::Repeated).await);
        assert!(contiguous_soon(&cache, b"b").await, "room for b's copy (454 + 300 of 1000)");
        let mut r = cache.record(b"c".to_vec());
        r.push(&WireMessage { body: body(480, 7), ..Default::default() });
        r.finish();
        hit_now(cache.lookup(b"c", Admission::Repeated).await);
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let c = cache.get(b"c").expect("c is cached");
        assert!(c.iter().all(|m| m.framed.is_none()), "no room for c's copy (934 + 480 of 1000): kept as recorded");
        assert_eq!(cache.used(), 934);
    }

    #[tokio::test]
    async fn a_ticket_is_kept_from_its_min_reads_th_read_on() {
        let cache = StreamCache::new(1000, 2);
        let Lookup::Miss(mut first) = cache.lookup(b"a", Admission::Repeated).await else {
            panic!("nothing is cached yet")
        };
        first.push(&msg(10));
        first.finish();
        assert_eq!(cache.used(), 0, "a first read is not kept");
        // Another ticket's first read does not count for this one.
        let Lookup::Miss(mut other) = cache.lookup(b"b", Admission::Repeated).await else {
            panic!("nothing is cached yet")
        };
        other.push(&msg(10));
        other.finish();
        let Lookup::Miss(mut second) = cache.lookup(b"a", Admission::Repeated).await else {
            panic!("not kept after one read")
        };
        // Reads of the ticket while its second read records wait for it.
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { hit(cache.lookup(b"a", Admission::Repeated).await) }
        });
        tokio::task::yield_now().await;
        second.push(&msg(10));
        second.push(&msg(10));
        second.finish();
        assert_eq!(waiter.await.unwrap(), Some(2), "the waiting read got the recorded stream");
        assert_eq!(hit(cache.lookup(b"a", Admission::Repeated).await), Some(2));
        assert!(cache.get(b"b").is_none());
        // Evicted after it was read again, a ticket is recorded at its next read.
        for key in [b"c", b"d"] {
            let mut r = cache.record(key.to_vec());
            r.push(&msg(495));
            r.finish();
        }
        assert!(cache.get(b"a").is_none(), "evicted");
        let Lookup::Miss(mut again) = cache.lookup(b"a", Admission::Repeated).await else { panic!("evicted") };
        again.push(&msg(10));
        again.finish();
        assert_eq!(hit(cache.lookup(b"a", Admission::Repeated).await), Some(1));
        // An answer admitted at its first read is kept from it.
        let Lookup::Miss(mut answer) = cache.lookup(b"sql", Admission::First).await else { panic!("not cached") };
        answer.push(&msg(5));
        answer.finish();
        assert_eq!(hit(cache.lookup(b"sql", Admission::First).await), Some(1));
    }

    #[test]
    fn disabled_cache_records_nothing() {
        let cache = StreamCache::new(0, 1);
        let mut r = cache.record(b"a".to_vec());
        r.push(&msg(1));
        r.finish();
        assert!(cache.get(b"a").is_none());
        assert_eq!(cache.used(), 0);
    }
}
