//! An incremental Server-Sent Events parser that keeps the byte range of every event.
//!
//! Streamed LLM responses (OpenAI and Anthropic) are `text/event-stream` bodies. The filter sees
//! them in arbitrary chunks; this parser turns the bytes into events exactly as a client does, and
//! reports where in the stream each event's bytes lie, so that the filter can hold back, release
//! or drop exactly the frames of an event.
//!
//! Interpretation follows the WHATWG HTML Living Standard, §9.2.6 "Interpreting an event stream":
//!
//! - lines end with CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the
//!   next are one line ending);
//! - one UTF-8 byte-order mark at the start of the stream is skipped;
//! - a line starting with `:` is a comment;
//! - `field:value` with one leading space of the value stripped; a line without a colon is a field
//!   with an empty value;
//! - `data` lines append their value and a LF to the data buffer; `event` sets the type; `id` sets
//!   the id unless the value contains NUL; `retry` and unknown fields are ignored (we never
//!   reconnect);
//! - an empty line dispatches the event, unless the data buffer is empty; the final LF of the data
//!   buffer is removed.
//!
//! Deliberate departures, each stricter or more visible than a browser:
//!
//! - **Invalid UTF-8 is an error**, not U+FFFD: a filter that reads a replacement character where
//!   a client reads something else would judge a different text.
//! - **An event left open at the end of the stream is returned by [`SseParser::finish`]**, where
//!   the standard discards it. Line-oriented clients (the common `for line in body: if
//!   line.startswith("data: ")` loop) act on a `data:` line without waiting for the empty line, so
//!   those bytes must be judged like any other event, not waved through as "not an event".
//! - **Size is bounded**: an event's raw bytes (comments included, since the filter holds them back
//!   until the event is complete) may not exceed the limit; the parser never buffers more than that.
//!
//! Cost: every byte is looked at once (`feed` scans only the new chunk for line ends and appends
//! the unfinished tail to the line buffer), so feeding a stream one byte at a time stays linear.

use std::fmt;

/// Default bound on one event's raw bytes, comments and line ends included.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, `None` when absent or empty (a client then dispatches `message`).
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The value of the last `id` field inside this event's frame (`Some("")` when the frame
    /// resets it); not inherited from earlier events, unlike a browser's `lastEventId`.
    pub id: Option<String>,
    /// Absolute offset of the first byte of the event's frame: the first byte after the previous
    /// complete frame (an event, or a run of comments and empty lines that dispatched nothing).
    pub start: u64,
    /// Absolute offset one past the last byte of the empty line that dispatched the event,
    /// including its whole line ending (both bytes of a CRLF). Consecutive frames tile the stream.
    pub end: u64,
}

/// Why a stream is not an acceptable event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event's raw bytes exceed the limit (the frame starting at `start`).
    #[error("event starting at byte {start} exceeds {limit} bytes")]
    TooLarge { start: u64, limit: usize },
    /// A line is not valid UTF-8 (the line starting at `offset`).
    #[error("invalid UTF-8 in the line starting at byte {offset}")]
    InvalidUtf8 { offset: u64 },
}

/// The incremental parser: feed it chunks in stream order, then call [`SseParser::finish`] once.
pub struct SseParser {
    max_event_bytes: usize,
    /// Bytes consumed so far: the absolute offset of the next byte fed.
    offset: u64,
    /// The current line, without its line ending, not yet complete.
    line: Vec<u8>,
    /// Absolute offset of the first byte of `line`.
    line_start: u64,
    /// The previous byte was a CR ending a line: an LF next belongs to that line ending.
    after_cr: bool,
    /// An empty line ended by CR was seen; dispatch waits for the next byte to learn whether an LF
    /// completes its line ending, so that `end` is the same wherever the chunks are split.
    dispatch_pending: bool,
    /// No line has completed yet (a BOM is only skipped at the very start).
    at_stream_start: bool,
    frame_start: u64,
    data: String,
    event: String,
    id: Option<String>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SseParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseParser")
            .field("offset", &self.offset)
            .field("frame_start", &self.frame_start)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish_non_exhaustive()
    }
}

impl SseParser {
    /// A parser with [`DEFAULT_MAX_EVENT_BYTES`].
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that refuses any event whose raw bytes exceed `max_event_bytes`.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            offset: 0,
            line: Vec::new(),
            line_start: 0,
            after_cr: false,
            dispatch_pending: false,
            at_stream_start: true,
            frame_start: 0,
            data: String::new(),
            event: String::new(),
            id: None,
        }
    }

    /// Bytes fed so far.
    pub fn consumed(&self) -> u64 {
        self.offset
    }

    /// Offset of the first byte that does not yet belong to a complete frame. Everything before it
    /// has been returned as events or was comments and empty lines that dispatch nothing.
    pub fn pending_start(&self) -> u64 {
        self.frame_start
    }

    /// Parses the next chunk of the stream and returns the events it completes, in order.
    ///
    /// After an error the parser's state is unspecified: the stream is to be refused.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        let mut rest = chunk;
        loop {
            if self.after_cr {
                let Some((&first, tail)) = rest.split_first() else { break };
                self.after_cr = false;
                if first == b'\n' {
                    rest = tail;
                    self.advance(1);
                }
                self.line_start = self.offset;
                if self.dispatch_pending {
                    self.dispatch_pending = false;
                    self.dispatch(&mut events);
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.extend_line(rest)?;
                    break;
                }
                Some(at) => {
                    let (head, tail) = rest.split_at(at);
                    let Some((&ending, tail)) = tail.split_first() else { break };
                    self.extend_line(head)?;
                    self.advance(1);
                    self.check_size()?;
                    rest = tail;
                    let blank = self.end_line()?;
                    if ending == b'\r' {
                        self.after_cr = true;
                        self.dispatch_pending = blank;
                    } else if blank {
                        self.dispatch(&mut events);
                    }
                    self.line_start = self.offset;
                }
            }
        }
        Ok(events)
    }

    /// Ends the stream: dispatches an event whose empty line ended with a lone CR, and returns an
    /// event left open (fields without the closing empty line, or an unfinished last line) as if
    /// it had been closed (see the module documentation for why).
    pub fn finish(&mut self) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        if self.after_cr {
            self.after_cr = false;
            if self.dispatch_pending {
                self.dispatch_pending = false;
                self.dispatch(&mut events);
            }
        }
        if !self.line.is_empty() {
            self.end_line()?;
        }
        self.dispatch(&mut events);
        self.line_start = self.offset;
        Ok(events)
    }

    fn advance(&mut self, n: usize) {
        self.offset = self.offset.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Appends to the current line, refusing first if the frame would outgrow the limit, so that
    /// no more than the limit is ever buffered.
    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        self.advance(bytes.len());
        self.check_size()?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn check_size(&self) -> Result<(), SseError> {
        let size = self.offset.saturating_sub(self.frame_start);
        if size > u64::try_from(self.max_event_bytes).unwrap_or(u64::MAX) {
            return Err(SseError::TooLarge { start: self.frame_start, limit: self.max_event_bytes });
        }
        Ok(())
    }

    /// Interprets the completed line in `self.line`; returns whether it was empty.
    fn end_line(&mut self) -> Result<bool, SseError> {
        let mut bytes = std::mem::take(&mut self.line);
        if self.at_stream_start {
            self.at_stream_start = false;
            if bytes.starts_with(BOM) {
                bytes.drain(..BOM.len());
            }
        }
        let blank = bytes.is_empty();
        let line = std::str::from_utf8(&bytes).map_err(|_| SseError::InvalidUtf8 { offset: self.line_start })?;
        if !blank && !line.starts_with(':') {
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line, ""),
            };
            match field {
                "data" => {
                    self.data.push_str(value);
                    self.data.push('\n');
                }
                "event" => value.clone_into(&mut self.event),
                "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
                _ => {}
            }
        }
        // Keep the allocation for the next line.
        bytes.clear();
        self.line = bytes;
        Ok(blank)
    }

    /// The frame ends at the current offset: emit its event if its data buffer is not empty, and
    /// start the next frame either way.
    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let end = self.offset;
        let event = std::mem::take(&mut self.event);
        let id = self.id.take();
        if !self.data.is_empty() {
            let mut data = std::mem::take(&mut self.data);
            if data.ends_with('\n') {
                data.pop();
            }
            events.push(SseEvent {
                event: (!event.is_empty()).then_some(event),
                data,
                id,
                start: self.frame_start,
                end,
            });
        }
        self.frame_start = end;
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
