//! The decision events a worker has not delivered yet, kept as the bytes that will be POSTed.
//!
//! Each event is serialized once, straight into the NDJSON body of the batch it will leave in
//! (one line per event, `\n` between lines, no trailing newline: what the enforcer's
//! `POST /v1/events` takes). Nothing is allocated per event and nothing is copied to assemble a
//! POST: a batch's buffer is handed to the host as it is, and once the enforcer has answered it
//! is cleared and reused for the next batch. The previous design kept one `String` per event and
//! joined up to `max_batch` of them for each POST; under load each worker's linear memory grew
//! by ~10 MB of them (bench/MEMORY.md), and linear memory never shrinks.
//!
//! Bounded twice: by events (`max_buffered_events`) and by bytes of serialized events
//! (`max_buffered_bytes`). Beyond either, the oldest events are dropped and counted (an urgent
//! event put in front drops the newest instead, and urgent events are dropped last): never
//! silently lost. The batch being posted is
//! held besides, until the enforcer answers; if it fails it goes back in front, oldest first.

use std::collections::VecDeque;

use serde::Serialize;

/// Most bytes of events in one batch. The enforcer refuses a body over 8 MiB
/// (`enforcer/src/api.rs`, `MAX_BATCH_BYTES`), and a refused batch would be retried for ever: a
/// batch takes no more events once it holds 1 MiB, so a POST stays far below that whatever
/// `max_batch` and the size of the events.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// The bounds of a queue, from the enforcer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most events buffered (`max_buffered_events`).
    pub max_events: usize,
    /// Most bytes of serialized events buffered (`max_buffered_bytes`).
    pub max_bytes: usize,
    /// Most events per batch (`max_batch`).
    pub max_batch: usize,
}

/// Events that leave in one POST: `count` NDJSON lines in `buf[start..]`. Lines before `start`
/// were dropped; the buffer is compacted when they are more than half of it.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    start: usize,
    count: usize,
    /// Only events asking the enforcer to act: more of them may join in front of the others.
    urgent: bool,
}

impl Batch {
    /// The POST body: one event per line.
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn bytes(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    fn is_full(&self, max_batch: usize) -> bool {
        self.count >= max_batch || self.bytes() >= MAX_BATCH_BYTES
    }

    /// Appends one line (the separator first unless it is the first line); returns the bytes
    /// added. `write` fills the line; when it fails, nothing is added.
    fn append(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool, max_line: usize) -> Option<usize> {
        let mark = self.buf.len();
        if self.count > 0 {
            self.buf.push(b'\n');
        }
        let line_at = self.buf.len();
        if !write(&mut self.buf) || self.buf.len().saturating_sub(line_at) > max_line {
            self.buf.truncate(mark);
            return None;
        }
        self.count = self.count.saturating_add(1);
        Some(self.buf.len().saturating_sub(mark))
    }

    /// Drops the oldest event; returns the bytes freed, `None` when it is the only one (the
    /// caller then drops the whole batch).
    fn drop_first(&mut self) -> Option<usize> {
        let at = self.body().iter().position(|&b| b == b'\n')?;
        let freed = at.saturating_add(1);
        self.start = self.start.saturating_add(freed);
        self.count = self.count.saturating_sub(1);
        // Dead lines cost memory the byte bound does not see: once they are half the buffer,
        // move the live ones down (each byte moves at most once per halving: amortized O(1)).
        if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Some(freed)
    }

    /// Drops the newest event; returns the bytes freed, `None` when it is the only one.
    fn drop_last(&mut self) -> Option<usize> {
        let body = self.body();
        let at = body.iter().rposition(|&b| b == b'\n')?;
        let freed = body.len().saturating_sub(at);
        self.buf.truncate(self.start.saturating_add(at));
        self.count = self.count.saturating_sub(1);
        Some(freed)
    }
}

/// Serialized events waiting for the enforcer, in batches of at most `max_batch` events.
#[derive(Debug, Default)]
pub struct EventQueue {
    pending: VecDeque<Batch>,
    /// Events in `pending`.
    events: usize,
    /// Bytes of `pending`'s bodies.
    bytes: usize,
    /// The buffer of the last batch the enforcer took, cleared, for the next batch.
    spare: Option<Vec<u8>>,
    /// The batch posted and not yet answered: (call token, batch).
    pub in_flight: Option<(u32, Batch)>,
    /// The last POST failed: batches leave on the root's tick only, not as soon as they fill,
    /// so an enforcer that is down is not asked again on every request.
    pub retrying: bool,
}

impl EventQueue {
    /// Serializes `event` at the back; returns how many events were dropped to stay within
    /// `limits` (the event itself when it alone is over `max_bytes` or cannot be serialized).
    pub fn push(&mut self, event: &impl Serialize, limits: Limits) -> u64 {
        self.push_with(|buf| serde_json::to_writer(buf, event).is_ok(), limits)
    }

    /// [`push`](Self::push) for an event that writes its own JSON line into the batch (`write`
    /// appends it and says whether it could; a line it half wrote is cut off again).
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool, limits: Limits) -> u64 {
        // Never into a batch of urgent events: they stay a batch of their own, dropped last.
        if self.pending.back().is_none_or(|b| b.urgent || b.is_full(limits.max_batch)) {
            let batch = self.new_batch(false);
            self.pending.push_back(batch);
        }
        let Some(back) = self.pending.back_mut() else { return 1 };
        let added = back.append(write, limits.max_bytes);
        let Some(added) = added else {
            if back.is_empty() {
                self.pop_back();
            }
            return 1;
        };
        self.added(added);
        self.trim(limits, false)
    }

    /// Queues an already serialized event ahead of the others (it asks the enforcer to act);
    /// returns how many events were dropped, the newest first, to stay within `limits`.
    pub fn push_front(&mut self, line: &[u8], limits: Limits) -> u64 {
        if !self.pending.front().is_some_and(|b| b.urgent && !b.is_full(limits.max_batch)) {
            let batch = self.new_batch(true);
            self.pending.push_front(batch);
        }
        let Some(front) = self.pending.front_mut() else { return 1 };
        let write = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(line);
            !line.is_empty()
        };
        let Some(added) = front.append(write, limits.max_bytes) else {
            if front.is_empty() {
                self.pop_front();
            }
            return 1;
        };
        self.added(added);
        self.trim(limits, true)
    }

    /// Puts an unanswered batch back in front, its events oldest first; returns how many events
    /// were dropped (the oldest) to stay within `limits`.
    pub fn requeue(&mut self, batch: Batch, limits: Limits) -> u64 {
        if batch.is_empty() {
            self.recycle(batch);
            return 0;
        }
        self.events = self.events.saturating_add(batch.count);
        self.bytes = self.bytes.saturating_add(batch.bytes());
        self.pending.push_front(batch);
        self.trim(limits, false)
    }

    /// The next batch to POST, oldest events first.
    pub fn take_batch(&mut self) -> Option<Batch> {
        let batch = self.pending.pop_front()?;
        self.events = self.events.saturating_sub(batch.count);
        self.bytes = self.bytes.saturating_sub(batch.bytes());
        Some(batch)
    }

    /// Keeps a delivered batch's buffer for the next batch.
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.buf.clear();
        // One spare is enough: a batch is taken as soon as it is full. The larger is kept, so
        // the next batch grows its buffer less often.
        if self.spare.as_ref().is_none_or(|s| s.capacity() < batch.buf.capacity()) {
            self.spare = Some(batch.buf);
        }
    }

    /// Events waiting (the batch in flight not included).
    pub fn len(&self) -> usize {
        self.events
    }

    /// Bytes of serialized events waiting (the batch in flight not included).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Whether a batch should leave now rather than on the next tick: a full batch waits, an
    /// urgent event waits, or half the byte bound is used (with a bound smaller than a batch,
    /// batches never fill).
    pub fn ready(&self, limits: Limits) -> bool {
        self.pending.len() > 1
            || self.pending.front().is_some_and(|b| b.urgent || b.is_full(limits.max_batch))
            || self.bytes >= limits.max_bytes / 2
    }

    /// Whether a stream that just queued an event should have the root flush at once: a batch
    /// is [`ready`](Self::ready), none is in flight (its answer sends the next one) and the
    /// enforcer took the last one.
    pub fn wants_flush(&self, limits: Limits) -> bool {
        self.in_flight.is_none() && !self.retrying && self.ready(limits)
    }

    fn new_batch(&mut self, urgent: bool) -> Batch {
        Batch { buf: self.spare.take().unwrap_or_default(), start: 0, count: 0, urgent }
    }

    fn added(&mut self, bytes: usize) {
        self.events = self.events.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Drops events until within `limits`: the oldest, or with `newest` the newest. Urgent
    /// events (in front) are dropped last: the oldest dropped is the oldest that is not urgent.
    fn trim(&mut self, limits: Limits, newest: bool) -> u64 {
        let mut dropped = 0;
        while self.events > limits.max_events || self.bytes > limits.max_bytes {
            let at = if newest { self.pending.len().saturating_sub(1) } else { self.pending.iter().position(|b| !b.urgent).unwrap_or(0) };
            let Some(batch) = self.pending.get_mut(at) else { break };
            match if newest { batch.drop_last() } else { batch.drop_first() } {
                Some(freed) => {
                    self.events = self.events.saturating_sub(1);
                    self.bytes = self.bytes.saturating_sub(freed);
                }
                // Its only event: the whole batch goes.
                None => {
                    if let Some(b) = self.pending.remove(at) {
                        self.events = self.events.saturating_sub(b.count);
                        self.bytes = self.bytes.saturating_sub(b.bytes());
                        self.recycle(b);
                    }
                }
            }
            dropped += 1;
        }
        dropped
    }

    fn pop_front(&mut self) {
        if let Some(b) = self.take_batch() {
            self.recycle(b);
        }
    }

    fn pop_back(&mut self) {
        if let Some(b) = self.pending.pop_back() {
            self.events = self.events.saturating_sub(b.count);
            self.bytes = self.bytes.saturating_sub(b.bytes());
            self.recycle(b);
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
