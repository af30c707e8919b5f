//! Streams: values split at every byte position are found exactly once; tiny chunks cost
//! bounded work; the stream cap holds.

use super::*;
use crate::detect::test_samples::*;

fn detector() -> Detector {
    Detector::new().unwrap()
}

/// Every finding of a stream fed as `chunks`, with `flush` after each chunk or not.
fn run(d: &Detector, limits: StreamLimits, chunks: &[&[u8]], flush_each: bool) -> Vec<StreamFinding> {
    let mut s = StreamScanner::new(limits);
    let mut out = Vec::new();
    for c in chunks {
        out.extend(s.push(d, c).unwrap());
        if flush_each {
            out.extend(s.flush(d).unwrap());
        }
    }
    out.extend(s.finish(d).unwrap());
    assert_eq!(s.scanned_up_to(), s.bytes_seen());
    out
}

/// Values of every kind, each as it would appear in a streamed body.
fn samples() -> Vec<(&'static str, DataClass, String)> {
    let mut r = Rng::new(101);
    let key = aws_key(&mut r);
    vec![
        ("aws", DataClass::AwsAccessKey, key.clone()),
        ("aws json-escaped", DataClass::AwsAccessKey, format!(r"\u0041{}", &key[1..])),
        ("aws zero-width", DataClass::AwsAccessKey, key.chars().flat_map(|c| [c, '\u{200B}']).collect()),
        ("aws base64", DataClass::AwsAccessKey, b64(&format!("id={key}"))),
        ("anthropic", DataClass::AnthropicApiKey, anthropic_key(&mut r)),
        ("github fine-grained", DataClass::GithubToken, github_pat(&mut r)),
        ("jwt", DataClass::Jwt, jwt(&mut r)),
        ("pem escaped", DataClass::PrivateKey, pem_key(&mut r, "\\n")),
        ("card", DataClass::PaymentCard, "4111 1111 1111 1111".into()),
        ("iban", DataClass::Iban, iban(&mut r, "DE", 22)),
        ("ssn", DataClass::UsSsn, "536-22-4875".into()),
        ("email", DataClass::Email, "jane.doe@mail.example.com".into()),
    ]
}

#[test]
fn a_value_split_at_every_byte_is_found_exactly_once() {
    let d = detector();
    let mut r = Rng::new(5);
    for (name, class, value) in samples() {
        let text = format!("{{\"delta\":\"{} {value} {}\"}}", r.prose(40), r.prose(40));
        let bytes = text.as_bytes();
        let at = text.find(&value).unwrap() as u64;
        for limits in [
            // A scan at every push: the split is seen at the boundary itself.
            StreamLimits { step: 1, ..StreamLimits::default() },
            StreamLimits::default(),
            // The smallest window that holds the longest identifying part.
            StreamLimits { window: 256, step: 1, ..StreamLimits::default() },
        ] {
            for split in 0..=bytes.len() {
                let (a, b) = bytes.split_at(split);
                let found = run(&d, limits, &[a, b], false);
                let of_class: Vec<_> = found.iter().filter(|f| f.class == class).collect();
                assert_eq!(of_class.len(), 1, "{name}: split at {split} with {limits:?}: {found:?}");
                assert!(of_class[0].range.start <= at + 1 && of_class[0].range.end >= at + 10, "{name} at {split}");
                assert_eq!(found.len(), 1, "{name}: split at {split}: nothing else: {found:?}");
            }
        }
    }
}

#[test]
fn a_value_fed_one_byte_per_flush_is_found_once() {
    let d = detector();
    for (name, class, value) in samples() {
        let text = format!("prefix text {value} suffix text");
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        let found = run(&d, StreamLimits::default(), &chunks, true);
        assert_eq!(found.iter().map(|f| f.class).collect::<Vec<_>>(), vec![class], "{name}");
    }
}

#[test]
fn findings_in_different_chunks_are_all_counted() {
    let d = detector();
    let mut r = Rng::new(6);
    let cards: Vec<String> = (0..5).map(|_| card(&mut r, "4", 16)).collect();
    let frames: Vec<String> = cards.iter().map(|c| format!("data: {{\"text\":\"card {c}\"}}\n\n")).collect();
    let chunks: Vec<&[u8]> = frames.iter().map(|f| f.as_bytes()).collect();
    let mut s = StreamScanner::default();
    for c in &chunks {
        s.push(&d, c).unwrap();
        s.flush(&d).unwrap();
    }
    assert_eq!(s.summary(), vec![ClassCount { class: DataClass::PaymentCard, count: 5 }]);
}

#[test]
fn one_megabyte_in_one_byte_chunks_is_bounded_work() {
    let d = detector();
    let mut r = Rng::new(8);
    let text: Vec<u8> = (0..1 << 20).map(|_| b' ' + (r.next_u64() % 95) as u8).collect();
    let mut s = StreamScanner::default();
    let start = std::time::Instant::now();
    for b in text.chunks(1) {
        s.push(&d, b).unwrap();
    }
    s.finish(&d).unwrap();
    let limits = StreamLimits::default();
    // Each byte is scanned at most 1 + window/step times.
    let bound = (1 + limits.window / limits.step) as u64 * (1 << 20) + limits.window as u64;
    assert!(s.bytes_scanned() <= bound, "{} > {bound}", s.bytes_scanned());
    assert!(start.elapsed() < std::time::Duration::from_secs(60), "{:?}", start.elapsed());
}

#[test]
fn stream_cap_is_enforced() {
    let d = detector();
    let mut s = StreamScanner::new(StreamLimits { max_stream_bytes: 100, ..StreamLimits::default() });
    assert!(s.push(&d, &[b'a'; 100]).is_ok());
    assert_eq!(s.push(&d, b"b"), Err(ScanError::TooLarge { len: 101, max: 100 }));
}

#[test]
fn a_long_chunk_is_scanned_in_batches_without_losing_values() {
    let d = detector();
    let mut r = Rng::new(10);
    let key = aws_key(&mut r);
    // Values on both sides of every 64 KiB batch boundary.
    let mut text = String::new();
    let mut count = 0;
    while text.len() < 300_000 {
        text.push_str(&{ let n = r.below(5_000) + 60_000; r.prose(n) });
        text.push(' ');
        text.push_str(&key);
        text.push(' ');
        count += 1;
    }
    let found = run(&d, StreamLimits::default(), &[text.as_bytes()], false);
    assert_eq!(found.len(), count);
    for f in &found {
        assert_eq!(&text[f.range.start as usize..f.range.end as usize], key);
    }
}
