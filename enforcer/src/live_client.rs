//! What `interlock policy push|show`, `revoke`, `unrevoke` and `revocations` do against the
//! enforcer API ([`crate::live_api`]), and how revocations are shown to people.

use serde::Deserialize;
use serde_json::Value;

use crate::client::{ClientError, Enforcer, ok_json};
use crate::revocations::{Revocation, RevocationKind, RevokeRequest};

/// The answer to `PUT /v1/policy`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PolicyPushed {
    pub generation: u64,
    pub version: u64,
    pub policy_version: String,
    pub rules: usize,
}

/// The answer to `GET /v1/policy`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CurrentPolicy {
    pub generation: u64,
    pub policy_version: String,
    pub policy: Value,
}

#[derive(Deserialize)]
struct Removed {
    removed: Revocation,
}

#[derive(Deserialize)]
struct RevocationList {
    revocations: Vec<Revocation>,
}

/// `PUT /v1/policy` with the document as read from the file.
pub async fn push_policy(enforcer: &Enforcer, document: &[u8]) -> Result<PolicyPushed, ClientError> {
    ok_json(enforcer.request("PUT", "/v1/policy", Some(document)).await?)
}

/// `GET /v1/policy`; `None` when no policy is installed.
pub async fn current_policy(enforcer: &Enforcer) -> Result<Option<CurrentPolicy>, ClientError> {
    let resp = enforcer.request("GET", "/v1/policy", None).await?;
    if resp.status == 404 {
        return Ok(None);
    }
    ok_json(resp).map(Some)
}

/// `POST /v1/revocations`.
pub async fn revoke(enforcer: &Enforcer, req: &RevokeRequest) -> Result<Revocation, ClientError> {
    let mut body = serde_json::Map::new();
    body.insert("kind".into(), req.kind.as_str().into());
    body.insert("value".into(), req.value.as_str().into());
    if let Some(ttl) = req.ttl_secs {
        body.insert("ttl_secs".into(), ttl.into());
    }
    if let Some(reason) = &req.reason {
        body.insert("reason".into(), reason.as_str().into());
    }
    let body = Value::Object(body).to_string();
    ok_json(enforcer.request("POST", "/v1/revocations", Some(body.as_bytes())).await?)
}

/// `DELETE /v1/revocations/{kind}/{value}`; `None` when it was not revoked.
pub async fn unrevoke(enforcer: &Enforcer, kind: RevocationKind, value: &str) -> Result<Option<Revocation>, ClientError> {
    let path = format!("/v1/revocations/{kind}/{}", percent_encode(value));
    let resp = enforcer.request("DELETE", &path, None).await?;
    if resp.status == 404 {
        return Ok(None);
    }
    ok_json::<Removed>(resp).map(|r| Some(r.removed))
}

/// `GET /v1/revocations`: the active ones, oldest first.
pub async fn revocations(enforcer: &Enforcer) -> Result<Vec<Revocation>, ClientError> {
    ok_json::<RevocationList>(enforcer.request("GET", "/v1/revocations", None).await?).map(|l| l.revocations)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any value (a `/`, a `%`,
/// a space, UTF-8) is one path segment that the server decodes back exactly.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A duration in seconds as people read it: `45s`, `4m 59s`, `2h 5m`, `3d 4h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// One revocation on one line, as `interlock revoke` prints it.
pub fn human_revocation(r: &Revocation, now_ms: u64) -> String {
    let mut line = format!("revoked {} {:?} ({}), {}", r.kind, r.value, r.id, expires_in(r, now_ms));
    if let Some(reason) = &r.reason {
        line.push_str(&format!(", reason {reason:?}"));
    }
    line
}

fn expires_in(r: &Revocation, now_ms: u64) -> String {
    match r.expires_unix_ms {
        None => "until lifted".to_owned(),
        Some(e) if e <= now_ms => "expired".to_owned(),
        // Rounded up: "1s" until the last millisecond, never "0s" while still in force.
        Some(e) => format!("expires in {}", human_duration((e - now_ms).div_ceil(1_000))),
    }
}

/// The `interlock revocations` table: kind, value, expires in, reason, source.
pub fn revocations_table(list: &[Revocation], now_ms: u64) -> String {
    let header = ["KIND", "VALUE", "EXPIRES IN", "REASON", "SOURCE"].map(str::to_owned);
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|r| {
            let expires = match r.expires_unix_ms {
                None => "never".to_owned(),
                Some(e) if e <= now_ms => "expired".to_owned(),
                Some(e) => human_duration((e - now_ms).div_ceil(1_000)),
            };
            [r.kind.to_string(), r.value.clone(), expires, r.reason.clone().unwrap_or_else(|| "-".to_owned()), r.source.clone()]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_one_path_segment() {
        assert_eq!(percent_encode("alice"), "alice");
        assert_eq!(percent_encode("a/b c%d"), "a%2Fb%20c%25d");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        for (secs, text) in [(0, "0s"), (45, "45s"), (299, "4m 59s"), (7_500, "2h 5m"), (277_200, "3d 5h")] {
            assert_eq!(human_duration(secs), text);
        }
    }

    #[test]
    fn the_table_lines_up() {
        let r = |kind, value: &str, expires, reason: Option<&str>| Revocation {
            id: "rv-0000000000000001".into(),
            kind,
            value: value.into(),
            reason: reason.map(Into::into),
            created_unix_ms: 0,
            expires_unix_ms: expires,
            source: "cli".into(),
        };
        let table = revocations_table(
            &[
                r(RevocationKind::User, "alice", None, Some("left the company")),
                r(RevocationKind::Session, "s-1234567", Some(300_500), None),
            ],
            1_000,
        );
        assert_eq!(
            table,
            "KIND     VALUE      EXPIRES IN  REASON            SOURCE\n\
             user     alice      never       left the company  cli\n\
             session  s-1234567  5m 0s       -                 cli\n"
        );
        assert_eq!(
            human_revocation(&r(RevocationKind::Session, "s", Some(61_000), Some("x")), 1_000),
            "revoked session \"s\" (rv-0000000000000001), expires in 1m 0s, reason \"x\""
        );
    }
}
