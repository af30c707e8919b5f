//! Scanning a body or an event stream that arrives in chunks, so that a value split across two
//! chunks (or SSE frames) is still found, and found once.
//!
//! The scanner keeps the last [`StreamLimits::window`] bytes it has scanned (the carry) and scans
//! `carry + new bytes` each time. The carry is raw input, so an escape sequence, a UTF-8
//! character or a base64 run cut by a chunk boundary is whole again in the next scan. Offsets are
//! absolute stream offsets (`u64`).
//!
//! **Reported once.** A finding that lies entirely within the carry was already visible, with at
//! least as much context before it, in the previous scan, so it is skipped. A finding that reaches
//! into new bytes is reported unless it overlaps a finding of the same class reported earlier
//! (the same value seen again with more of it: an email whose domain continued in the next chunk,
//! a JWT whose signature did). This holds for every value whose identifying part (what the
//! detector needs to see to say "this is one") fits in the window: every bounded pattern (the
//! longest, an Anthropic key, is 108 bytes; an IBAN in print form 42), a JWT's header and the
//! start of its payload, a PEM header and 64 body characters. The default window is 1 KiB.
//!
//! **Bounded work.** New bytes are scanned once [`StreamLimits::step`] of them are pending (and
//! on [`StreamScanner::flush`] / [`StreamScanner::finish`]), so each input byte is scanned at most
//! `1 + window / step` times however small the chunks (1-byte chunks cost the same as 512-byte
//! ones). A caller that must decide on a frame before forwarding it calls `flush()` after pushing
//! it: one scan of at most `window + frame` bytes. [`StreamScanner::scanned_up_to`] says which
//! prefix of the stream has been inspected. The whole stream is capped at
//! [`StreamLimits::max_stream_bytes`].
//!
//! **At a chunk boundary** a value that ends exactly at the end of the bytes pushed so far is
//! reported at once, before the stream shows whether more of it follows; the cost is that a
//! longer token which merely starts like a secret may be reported when it is cut there. A filter
//! that forwards frames as they come must not wait for the next chunk to learn about a secret.

use std::ops::Range;

use super::{ClassCount, DataClass, Detector, Encoding, ScanError};

/// Window, step and total bound of a stream scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Bytes of already-scanned input kept and rescanned with the next bytes. At least the
    /// longest pattern's identifying part (see the module documentation).
    pub window: usize,
    /// Pending bytes that trigger a scan from `push`.
    pub step: usize,
    /// Largest stream accepted in total; beyond it every push fails with `TooLarge`.
    pub max_stream_bytes: u64,
}

impl StreamLimits {
    pub const DEFAULT_WINDOW: usize = 1024;
    pub const DEFAULT_STEP: usize = 512;
    pub const DEFAULT_MAX_STREAM_BYTES: u64 = 64 << 20;
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            window: Self::DEFAULT_WINDOW,
            step: Self::DEFAULT_STEP,
            max_stream_bytes: Self::DEFAULT_MAX_STREAM_BYTES,
        }
    }
}

/// A finding in a stream, at absolute stream offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFinding {
    pub class: DataClass,
    pub encoding: Encoding,
    pub range: Range<u64>,
}

impl Default for StreamScanner {
    fn default() -> Self {
        Self::new(StreamLimits::default())
    }
}

/// Largest slice of pending bytes scanned at once, so that one large chunk does not make one
/// large scan (and stays under the detector's input cap).
const MAX_BATCH: usize = 64 << 10;

/// The state of one stream's scan. Holds no reference to the [`Detector`]: pass it to each call,
/// so the scanner can live in a per-stream context while the detector lives in the root.
#[derive(Debug, Clone)]
pub struct StreamScanner {
    limits: StreamLimits,
    /// Carry followed by pending bytes.
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    buf_start: u64,
    /// Length of the scanned prefix of `buf` (the carry).
    scanned: usize,
    /// Findings reported that may still overlap the window, for de-duplication.
    recent: Vec<StreamFinding>,
    /// Findings reported so far per class (indexed like [`DataClass::ALL`]).
    counts: [u32; DataClass::ALL.len()],
    seen: u64,
    /// Bytes handed to the detector so far (carry rescans included): the work done.
    work: u64,
}

impl StreamScanner {
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            limits: StreamLimits { step: limits.step.max(1), ..limits },
            buf: Vec::new(),
            buf_start: 0,
            scanned: 0,
            recent: Vec::new(),
            counts: [0; DataClass::ALL.len()],
            seen: 0,
            work: 0,
        }
    }

    /// Adds a chunk; scans if at least `step` bytes are pending. Returns the new findings.
    pub fn push(&mut self, detector: &Detector, chunk: &[u8]) -> Result<Vec<StreamFinding>, ScanError> {
        let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        let total = self.seen.saturating_add(len);
        if total > self.limits.max_stream_bytes {
            return Err(ScanError::TooLarge {
                len: usize::try_from(total).unwrap_or(usize::MAX),
                max: usize::try_from(self.limits.max_stream_bytes).unwrap_or(usize::MAX),
            });
        }
        self.seen = total;
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while self.pending() >= self.limits.step {
            self.scan_batch(detector, &mut out);
        }
        Ok(out)
    }

    /// Scans every pending byte now.
    pub fn flush(&mut self, detector: &Detector) -> Result<Vec<StreamFinding>, ScanError> {
        let mut out = Vec::new();
        while self.pending() > 0 {
            self.scan_batch(detector, &mut out);
        }
        Ok(out)
    }

    /// End of stream: scans what is pending. The scanner can still report its summary.
    pub fn finish(&mut self, detector: &Detector) -> Result<Vec<StreamFinding>, ScanError> {
        self.flush(detector)
    }

    /// Stream offset up to which every byte has been scanned.
    pub fn scanned_up_to(&self) -> u64 {
        self.buf_start.saturating_add(u64::try_from(self.scanned).unwrap_or(u64::MAX))
    }

    /// Bytes pushed so far.
    pub fn bytes_seen(&self) -> u64 {
        self.seen
    }

    /// Bytes handed to the detector so far, carry rescans included: at most
    /// `(1 + window / step)` times [`Self::bytes_seen`] when only `push` and `finish` are used.
    pub fn bytes_scanned(&self) -> u64 {
        self.work
    }

    /// Class and count of everything reported on this stream so far.
    pub fn summary(&self) -> Vec<ClassCount> {
        DataClass::ALL
            .into_iter()
            .zip(self.counts)
            .filter(|(_, n)| *n > 0)
            .map(|(class, count)| ClassCount { class, count })
            .collect()
    }

    fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.scanned)
    }

    /// Scans the carry and up to `MAX_BATCH` pending bytes, reports, and keeps the new carry.
    fn scan_batch(&mut self, detector: &Detector, out: &mut Vec<StreamFinding>) {
        let carry = self.scanned;
        let end = carry.saturating_add(self.pending().min(MAX_BATCH));
        let Some(region) = self.buf.get(..end) else {
            // Unreachable (end <= buf.len()); stop rather than loop.
            self.scanned = self.buf.len();
            return;
        };
        let mut found = Vec::new();
        // A region over the detector's cap would be refused; MAX_BATCH + window stays far below
        // it with any sensible limits, and the scan below cannot fail otherwise.
        if detector.check_len(region.len()).is_ok() {
            detector.scan_layer(region, true, &mut found);
        }
        self.work = self.work.saturating_add(u64::try_from(region.len()).unwrap_or(u64::MAX));
        let base = self.buf_start;
        let abs = |x: usize| base.saturating_add(u64::try_from(x).unwrap_or(u64::MAX));
        let carry_end = abs(carry);
        // Only findings of earlier scans count as seen: within one scan the detector has merged
        // overlaps already, and base64 findings share their run's range on purpose.
        let prior = self.recent.len();
        for f in found {
            let range = abs(f.range.start)..abs(f.range.end);
            if range.end <= carry_end {
                continue;
            }
            let seen_before = self.recent.get_mut(..prior).and_then(|earlier| {
                earlier
                    .iter_mut()
                    .find(|r| r.class == f.class && r.range.start < range.end && range.start < r.range.end)
            });
            if let Some(r) = seen_before {
                // Remember the longer extent so a third sighting still overlaps.
                r.range.end = r.range.end.max(range.end);
                continue;
            }
            let finding = StreamFinding { class: f.class, encoding: f.encoding, range };
            if let Some(n) = self.counts.get_mut(f.class as usize) {
                *n = n.saturating_add(1);
            }
            self.recent.push(finding.clone());
            out.push(finding);
        }
        // Keep the last `window` scanned bytes as the carry.
        let drop = end.saturating_sub(self.limits.window);
        self.buf.drain(..drop);
        self.buf_start = abs(drop);
        self.scanned = end - drop;
        let window_start = self.buf_start;
        self.recent.retain(|r| r.range.end > window_start);
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
