use super::*;

fn ev(event: Option<&str>, data: &str, id: Option<&str>, start: u64, end: u64) -> SseEvent {
    SseEvent { event: event.map(str::to_owned), data: data.to_owned(), id: id.map(str::to_owned), start, end }
}

/// The whole stream in one chunk, then finish.
fn parse_all(input: &[u8]) -> Result<Vec<SseEvent>, SseError> {
    let mut parser = SseParser::new();
    let mut events = parser.feed(input)?;
    events.extend(parser.finish()?);
    Ok(events)
}

fn parse_chunks(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(parser.feed(chunk)?);
    }
    events.extend(parser.finish()?);
    Ok(events)
}

#[test]
fn interprets_fields_as_the_standard_says() {
    let cases: &[(&str, &[u8], Vec<SseEvent>)] = &[
        ("one data line", b"data: hi\n\n", vec![ev(None, "hi", None, 0, 10)]),
        ("event type and id", b"event: ping\nid: 7\ndata: x\n\n", vec![ev(Some("ping"), "x", Some("7"), 0, 27)]),
        ("multi-line data joined with LF", b"data: a\ndata: b\n\n", vec![ev(None, "a\nb", None, 0, 17)]),
        ("only one leading space stripped", b"data:  two\n\n", vec![ev(None, " two", None, 0, 12)]),
        ("no space after the colon", b"data:x\n\n", vec![ev(None, "x", None, 0, 8)]),
        ("field without colon is empty value", b"data\n\n", vec![ev(None, "", None, 0, 6)]),
        ("data with empty value then text", b"data\ndata: y\n\n", vec![ev(None, "\ny", None, 0, 14)]),
        ("comment lines ignored", b": keep-alive\ndata: z\n\n", vec![ev(None, "z", None, 0, 22)]),
        ("comment-only frame dispatches nothing", b": ping\n\ndata: z\n\n", vec![ev(None, "z", None, 8, 17)]),
        ("event without data dispatches nothing", b"event: e\n\ndata: z\n\n", vec![ev(None, "z", None, 10, 19)]),
        ("empty event name is message", b"event:\ndata: z\n\n", vec![ev(None, "z", None, 0, 16)]),
        ("unknown fields and retry ignored", b"foo: bar\nretry: 10\ndata: z\n\n", vec![ev(None, "z", None, 0, 28)]),
        ("id with NUL ignored", b"id: a\0b\ndata: z\n\n", vec![ev(None, "z", None, 0, 17)]),
        ("empty id kept as reset", b"id\ndata: z\n\n", vec![ev(None, "z", Some(""), 0, 12)]),
        ("value keeps colons", b"data: a:b: c\n\n", vec![ev(None, "a:b: c", None, 0, 14)]),
        ("CRLF line ends", b"data: a\r\ndata: b\r\n\r\n", vec![ev(None, "a\nb", None, 0, 20)]),
        ("CR line ends", b"data: a\rdata: b\r\rdata: c\r\r", vec![ev(None, "a\nb", None, 0, 17), ev(None, "c", None, 17, 26)]),
        ("mixed line ends", b"data: a\r\ndata: b\n\r\n", vec![ev(None, "a\nb", None, 0, 19)]),
        ("BOM at stream start skipped", b"\xEF\xBB\xBFdata: a\n\n", vec![ev(None, "a", None, 0, 12)]),
        ("BOM then field name only", b"\xEF\xBB\xBFdata\n\n", vec![ev(None, "", None, 0, 9)]),
        ("blank lines between events", b"data: a\n\n\n\ndata: b\n\n", vec![ev(None, "a", None, 0, 9), ev(None, "b", None, 11, 20)]),
        ("unicode data", "data: caf\u{e9} \u{1F600}\n\n".as_bytes(), vec![ev(None, "caf\u{e9} \u{1F600}", None, 0, 18)]),
        ("open event at end returned", b"data: a\n\ndata: [DONE]\n", vec![ev(None, "a", None, 0, 9), ev(None, "[DONE]", None, 9, 22)]),
        ("unfinished last line returned", b"data: [DONE]", vec![ev(None, "[DONE]", None, 0, 12)]),
        ("empty stream", b"", vec![]),
        ("only comments", b": hi\n: there\n", vec![]),
    ];
    for (name, input, want) in cases {
        assert_eq!(&parse_all(input).unwrap(), want, "case {name}");
    }
}

#[test]
fn a_second_bom_is_data() {
    // Only the stream's first bytes may be a BOM; later it is part of a field name.
    let events = parse_all(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n").unwrap();
    assert_eq!(events, vec![ev(None, "a", None, 0, 9)]);
}

#[test]
fn frames_tile_the_stream() {
    let input = b": open\n\nevent: a\ndata: 1\n\n: ping\n\ndata: 2\r\n\r\nid: 3\n\ndata: 4\n\n";
    let mut parser = SseParser::new();
    let events = parser.feed(input).unwrap();
    assert_eq!(events.len(), 3);
    for event in &events {
        let raw = &input[event.start as usize..event.end as usize];
        let reparsed = parse_all(raw).unwrap();
        assert_eq!(reparsed.len(), 1, "event bytes {:?} hold exactly one event", String::from_utf8_lossy(raw));
        assert_eq!(reparsed[0].data, event.data);
    }
    assert_eq!(parser.pending_start(), input.len() as u64);
    assert_eq!(parser.consumed(), input.len() as u64);
}

#[test]
fn pending_start_marks_the_unfinished_frame() {
    let mut parser = SseParser::new();
    assert!(parser.feed(b"data: a\n\ndata: b").unwrap().len() == 1);
    assert_eq!(parser.pending_start(), 9);
    assert!(parser.feed(b"\n").unwrap().is_empty());
    assert_eq!(parser.pending_start(), 9);
    assert_eq!(parser.feed(b"\n").unwrap(), vec![ev(None, "b", None, 9, 18)]);
    assert_eq!(parser.pending_start(), 18);
}

#[test]
fn cr_at_chunk_end_and_lf_at_next_start_are_one_line_end() {
    let events = parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]).unwrap();
    assert_eq!(events, vec![ev(None, "a\nb", None, 0, 20)]);
    // A lone CR ending the blank line is dispatched when the next byte shows no LF follows.
    let mut parser = SseParser::new();
    assert!(parser.feed(b"data: a\r\r").unwrap().is_empty());
    assert_eq!(parser.feed(b"d").unwrap(), vec![ev(None, "a", None, 0, 9)]);
    // ... or when the stream ends.
    let mut parser = SseParser::new();
    assert!(parser.feed(b"data: a\n\r").unwrap().is_empty());
    assert_eq!(parser.finish().unwrap(), vec![ev(None, "a", None, 0, 9)]);
}

const SAMPLE: &[u8] = b"\xEF\xBB\xBF: hello\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping\n\n\
data: line one\rdata:line two\r\rid: 9\nevent: x\ndata\n\ndata: caf\xC3\xA9 \xF0\x9F\x98\x80\n\n\
data: tail\r\n\r\ndata: open";

#[test]
fn every_split_gives_the_same_events() {
    let whole = parse_all(SAMPLE).unwrap();
    assert_eq!(whole.len(), 6);
    for at in 0..=SAMPLE.len() {
        let (a, b) = SAMPLE.split_at(at);
        assert_eq!(parse_chunks(&[a, b]).unwrap(), whole, "split at {at}");
    }
    for i in 0..=SAMPLE.len() {
        for j in i..=SAMPLE.len() {
            let parts = [&SAMPLE[..i], &SAMPLE[i..j], &SAMPLE[j..]];
            assert_eq!(parse_chunks(&parts).unwrap(), whole, "split at {i} and {j}");
        }
    }
    let bytes: Vec<&[u8]> = SAMPLE.chunks(1).collect();
    assert_eq!(parse_chunks(&bytes).unwrap(), whole, "one byte at a time");
}

#[test]
fn invalid_utf8_is_refused() {
    let cases: &[(&str, &[u8], u64)] = &[
        ("lone continuation byte", b"data: \x80\n\n", 0),
        ("truncated sequence before LF", b"data: ok\n\ndata: \xC3\n\n", 10),
        ("overlong encoding", b"data: \xC0\xAF\n\n", 0),
        ("surrogate encoded", b"data: \xED\xA0\x80\n\n", 0),
        ("in a comment", b": \xFF\n", 0),
        ("after CRLF", b"data: a\r\n\xFF\n", 9),
        ("unfinished line at end", b"data: \xE2\x82", 0),
    ];
    for (name, input, offset) in cases {
        assert_eq!(parse_all(input), Err(SseError::InvalidUtf8 { offset: *offset }), "case {name}");
    }
}

#[test]
fn event_size_is_bounded() {
    let mut parser = SseParser::with_max_event_bytes(16);
    // Exactly at the limit is fine.
    assert_eq!(parser.feed(b"data: 01234567\n\n\n").unwrap().len(), 1);
    // One more byte is not, whether in one chunk or byte by byte.
    let mut parser = SseParser::with_max_event_bytes(16);
    assert_eq!(parser.feed(b"data: 012345678\n\n"), Err(SseError::TooLarge { start: 0, limit: 16 }));
    let mut parser = SseParser::with_max_event_bytes(16);
    let mut result = Ok(Vec::new());
    for byte in b"data: a\n\ndata: 012345678\n\n".chunks(1) {
        result = parser.feed(byte);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(SseError::TooLarge { start: 9, limit: 16 }));
    // An endless line never buffers more than the limit.
    let mut parser = SseParser::with_max_event_bytes(1024);
    assert!(matches!(parser.feed(&vec![b'x'; 1 << 20]), Err(SseError::TooLarge { .. })));
    assert!(parser.line.capacity() <= 1024);
    // Comments count: the filter holds them back with the event.
    let mut parser = SseParser::with_max_event_bytes(64);
    let comments = b": keep-alive\n".repeat(10);
    assert!(matches!(parser.feed(&comments), Err(SseError::TooLarge { .. })));
    // Many small events are fine whatever the total.
    let mut parser = SseParser::with_max_event_bytes(64);
    assert_eq!(parser.feed(&b"data: x\n\n".repeat(1000)).unwrap().len(), 1000);
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn one_megabyte_byte_by_byte_is_linear() {
    // 1 MiB of 100-byte events fed one byte at a time: a parser that rescans its buffer on every
    // feed would do ~10^11 steps here and never finish in time.
    let line = format!("data: {}\n\n", "y".repeat(92));
    let stream = line.repeat((1 << 20) / line.len());
    let started = std::time::Instant::now();
    let mut parser = SseParser::new();
    let mut count = 0usize;
    for byte in stream.as_bytes().chunks(1) {
        count += parser.feed(byte).unwrap().len();
    }
    count += parser.finish().unwrap().len();
    assert_eq!(count, stream.len() / line.len());
    // One event spanning (almost) the whole limit, byte by byte.
    let big = format!("data: {}\n\n", "z".repeat(DEFAULT_MAX_EVENT_BYTES - 8));
    let mut parser = SseParser::new();
    let mut events = Vec::new();
    for byte in big.as_bytes().chunks(1) {
        events.extend(parser.feed(byte).unwrap());
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data.len(), DEFAULT_MAX_EVENT_BYTES - 8);
    let elapsed = started.elapsed();
    assert!(elapsed.as_secs() < 20, "2 MiB byte by byte took {elapsed:?}");
}
