//! Validation of an event batch as the filter POSTs it: newline-delimited JSON, one
//! [`DecisionEvent`] per line. Pure, so every rule about what is accepted is tested without a
//! server.

use interlock_policies::DecisionEvent;
use serde::Serialize;

/// Errors listed in a reply; `rejected` still counts them all. Bounds the reply to a batch of
/// garbage (8 MiB of one-byte lines would otherwise list millions).
pub const MAX_REPORTED_ERRORS: usize = 100;

/// One rejected line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// 1-based line number in the body (blank lines count, so it matches the sender's).
    pub line: usize,
    pub error: String,
}

/// A batch split into valid events and per-line errors.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<DecisionEvent>,
    pub rejected: usize,
    pub errors: Vec<LineError>,
}

/// What the API answers to a POST, with 200 or (nothing accepted) 400.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<LineError>,
}

impl Batch {
    pub fn report(&self) -> BatchReport {
        BatchReport { accepted: self.events.len(), rejected: self.rejected, errors: self.errors.clone() }
    }
}

/// Splits `body` into lines and validates each. Blank lines (a trailing newline, `\r\n` line
/// ends) are skipped rather than rejected: they carry no event to lose.
pub fn parse_batch(body: &[u8]) -> Batch {
    let mut batch = Batch::default();
    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_event(line) {
            Ok(event) => batch.events.push(event),
            Err(error) => {
                batch.rejected = batch.rejected.saturating_add(1);
                if batch.errors.len() < MAX_REPORTED_ERRORS {
                    batch.errors.push(LineError { line: index.saturating_add(1), error });
                }
            }
        }
    }
    batch
}

fn parse_event(line: &[u8]) -> Result<DecisionEvent, String> {
    let event: DecisionEvent = serde_json::from_slice(line).map_err(|e| format!("not a decision event: {e}"))?;
    // The decision id is how a decision is looked up and joined with the access log and the
    // local reply; an event without one could never be found again.
    if event.decision_id.trim().is_empty() {
        return Err("decision_id is empty".to_owned());
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::event;

    fn line(id: &str) -> String {
        serde_json::to_string(&event(id)).unwrap()
    }

    #[test]
    fn mixed_valid_and_invalid_lines() {
        let mut missing_rule = serde_json::to_value(event("x")).unwrap();
        missing_rule.as_object_mut().unwrap().remove("rule");
        let mut bad_action = serde_json::to_value(event("y")).unwrap();
        bad_action["action"] = "maybe".into();
        let body = [
            line("a"),
            "not json".to_owned(),
            String::new(),
            missing_rule.to_string(),
            line("b"),
            bad_action.to_string(),
            line("").replace("\"decision_id\":\"\"", "\"decision_id\":\"  \""),
            format!("{}{}", line("c"), line("d")),
            format!("{}\r", line("e")),
        ]
        .join("\n");

        let batch = parse_batch(body.as_bytes());
        let accepted: Vec<_> = batch.events.iter().map(|e| e.decision_id.as_str()).collect();
        assert_eq!(accepted, ["a", "b", "e"]);
        assert_eq!(batch.rejected, 5);
        let lines: Vec<_> = batch.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4, 6, 7, 8]);
        assert!(batch.errors[1].error.contains("missing field `rule`"), "{}", batch.errors[1].error);
        assert!(batch.errors[2].error.contains("maybe"), "{}", batch.errors[2].error);
        assert_eq!(batch.errors[3].error, "decision_id is empty");
        assert!(batch.errors[4].error.contains("trailing characters"), "{}", batch.errors[4].error);
        let report = batch.report();
        assert_eq!((report.accepted, report.rejected), (3, 5));
    }

    #[test]
    fn empty_and_blank_bodies_have_no_events() {
        for body in ["", "\n", "\n\r\n  \n"] {
            let batch = parse_batch(body.as_bytes());
            assert_eq!((batch.events.len(), batch.rejected), (0, 0), "{body:?}");
        }
    }

    #[test]
    fn reported_errors_are_bounded_but_all_are_counted() {
        let body = "x\n".repeat(MAX_REPORTED_ERRORS + 50);
        let batch = parse_batch(body.as_bytes());
        assert_eq!(batch.rejected, MAX_REPORTED_ERRORS + 50);
        assert_eq!(batch.errors.len(), MAX_REPORTED_ERRORS);
    }

    #[test]
    fn invalid_utf8_is_rejected_not_fatal() {
        let body = [line("a").into_bytes(), b"\n\xff\xfe\n".to_vec(), line("b").into_bytes()].concat();
        let batch = parse_batch(&body);
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2]);
    }
}
