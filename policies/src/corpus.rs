//! The decision corpus format: cases as data (policy, request, expected decision), run by the
//! native engine, by the engine compiled to wasm, and through real Envoy with the release filter.
//! The files live in `policies/tests/corpus/`.

use serde::{Deserialize, Serialize};

use crate::decision::Action;
use crate::request::{HttpRequest, VerifiedIdentity};
use crate::schema::Mode;

/// One corpus file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusFile {
    /// What the file covers.
    pub description: String,
    /// Policy file, relative to `policies/` (e.g. `examples/demo.json`).
    pub policy: String,
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// For a regression or evasion case: what it guards against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guards: Option<String>,
    pub request: CaseRequest,
    pub expect: Expect,
    /// Where Envoy itself changes the outcome before the filter sees the request (its own path
    /// normalization or rejection), what to expect through Envoy instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy: Option<EnvoyExpect>,
}

/// The request of a case.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    pub method: String,
    pub path: String,
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Headers as sent (names are lower-cased for the engine; sent verbatim through Envoy).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Verified identity: through Envoy, a token signed with the demo key carries these claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<CaseIdentity>,
    /// Through Envoy: an `Authorization` value sent instead of a valid token (natively: no
    /// verified identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_token: Option<String>,
    /// A JSON body (sent compact, with `content-type: application/json` unless headers set one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// A raw body, sent byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    /// Through Envoy: send the body chunked in pieces of this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<usize>,
}

/// Claims of the demo token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseIdentity {
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// The expected decision.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub action: Action,
    /// Local reply status; 0 when forwarded.
    #[serde(default)]
    pub status: u16,
    pub rule: String,
    #[serde(default)]
    pub mode: Mode,
}

/// The expected outcome through Envoy when it differs from the engine's.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvoyExpect {
    /// The HTTP status the client sees.
    pub status: u16,
    /// The deciding rule, when the filter decided; absent when Envoy refused on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why Envoy differs.
    pub why: String,
    /// The request reached the upstream before the refusal (a response the filter replaced).
    #[serde(default)]
    pub reaches_upstream: bool,
}

fn default_authority() -> String {
    "localhost".to_owned()
}

impl CaseRequest {
    /// The body bytes, if any.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match (&self.body, &self.body_text) {
            (Some(v), _) => Some(v.to_string().into_bytes()),
            (None, Some(t)) => Some(t.clone().into_bytes()),
            (None, None) => None,
        }
    }

    /// Headers as they go on the wire: the case's, plus `content-type: application/json` for a
    /// JSON body that sets none. (`content-length` and `host` are the transport's business.)
    pub fn wire_headers(&self) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if self.body.is_some() && !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            h.push(("content-type".into(), "application/json".into()));
        }
        h
    }

    /// The engine's view of this request, as the filter would build it.
    pub fn to_http_request(&self) -> HttpRequest {
        let body = self.body_bytes();
        let mut headers: Vec<(String, String)> =
            self.wire_headers().into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        if let Some(b) = &body
            && !headers.iter().any(|(k, _)| k == "content-length") && self.chunk_size.is_none() {
                headers.push(("content-length".into(), b.len().to_string()));
            }
        HttpRequest {
            method: self.method.clone(),
            authority: self.authority.clone(),
            path: self.path.clone(),
            headers,
            end_of_stream: body.is_none(),
            identity: match &self.identity {
                Some(i) if self.bad_token.is_none() => VerifiedIdentity {
                    jwt_agent: Some(i.agent.clone()),
                    jwt_user: i.user.clone(),
                    jwt_session: i.session.clone(),
                    peer_principal: None,
                },
                _ => VerifiedIdentity::default(),
            },
        }
    }
}
