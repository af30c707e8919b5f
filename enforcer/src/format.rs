//! How `interlock events` shows a record to a person: one line per decision.

use interlock_policies::DecisionEvent;
use serde::Serialize;

use crate::store::StoredEvent;

/// `time id action[ status] mode rule=R agent/user/session METHOD authority+path [calls=...] seq=N`
///
/// Missing identity parts print as `-`, so columns stay in place and a missing user is visible.
pub fn human_line(record: &StoredEvent) -> String {
    let e: &DecisionEvent = &record.event;
    let id = &e.identity;
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut line = format!("{} {} {}", rfc3339_utc_ms(e.time_unix_ms), e.decision_id, e.action.as_str());
    if e.status != 0 {
        line.push_str(&format!(" {}", e.status));
    }
    line.push_str(&format!(
        " {} rule={} {}/{}/{} {} {}{}",
        serde_name(&e.mode),
        e.rule,
        dash(&id.agent),
        dash(&id.user),
        dash(&id.session),
        e.request.method,
        e.request.authority,
        e.request.path.as_deref().unwrap_or(""),
    ));
    if !e.request.calls.is_empty() {
        let calls: Vec<String> = e
            .request
            .calls
            .iter()
            .map(|c| match &c.tool {
                Some(tool) => format!("{}:{tool}", c.method),
                None => c.method.clone(),
            })
            .collect();
        line.push_str(&format!(" calls={}", calls.join(",")));
    }
    line.push_str(&format!(" seq={}", record.seq));
    line
}

/// The name an enum has on the wire (`"shadow"`), so the line uses the words the log uses.
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
pub fn rfc3339_utc_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01; Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>), for non-negative
/// days only, which is all a u64 timestamp can be.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::event;

    #[test]
    fn formats_utc_timestamps() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_718_000_000_123, "2024-06-10T06:13:20.123Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339_utc_ms(ms), want);
        }
    }

    #[test]
    fn one_line_per_event() {
        let mut e = event("d-1");
        let record = StoredEvent { seq: 7, received_unix_ms: 0, event: e.clone() };
        assert_eq!(
            human_line(&record),
            "2024-06-10T06:13:20.000Z d-1 deny 403 enforce rule=deny-admin triage-bot/alice/s1 GET crm.local/api/admin/x seq=7"
        );

        e = serde_json::from_value(serde_json::json!({
            "decision_id": "d-2", "time_unix_ms": 0, "policy_version": "v1", "rule": "no-config",
            "action": "deny", "status": 0, "mode": "shadow", "reason": "r", "allowed_by": "triage-grants",
            "identity": {"agent": "triage-bot"},
            "request": {"method": "POST", "authority": "mcp.local", "path": "/mcp",
                        "calls": [{"method": "tools/call", "tool": "read_file", "has_id": true},
                                  {"method": "notifications/initialized", "has_id": false}]},
            "worker": "n/1"
        }))
        .unwrap();
        let record = StoredEvent { seq: 8, received_unix_ms: 0, event: e };
        assert_eq!(
            human_line(&record),
            "1970-01-01T00:00:00.000Z d-2 deny shadow rule=no-config triage-bot/-/- POST mcp.local/mcp calls=tools/call:read_file,notifications/initialized seq=8"
        );
    }
}
