//! The host-neutral view of a request: what the proxy saw, before the engine interprets any of it.
//! The filter fills it from Envoy; tests fill it from corpus files.

use serde::{Deserialize, Serialize};

/// A request's headers phase as the host reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// `:method`.
    pub method: String,
    /// `:authority` (host, maybe with a port).
    pub authority: String,
    /// `:path` exactly as the router will see it (after Envoy's own normalization), query included.
    pub path: String,
    /// Every request header, names in lower case, duplicates kept as separate entries, pseudo
    /// headers excluded. The engine counts duplicates of security headers from this list.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// True when the headers end the stream (no body follows).
    #[serde(default)]
    pub end_of_stream: bool,
    /// Identity from verified sources only.
    #[serde(default)]
    pub identity: VerifiedIdentity,
}

/// Identity facts the host verified. Never filled from request headers a client controls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedIdentity {
    /// The agent claim of a JWT that `jwt_authn` verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_agent: Option<String>,
    /// The user claim of that JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_user: Option<String>,
    /// The session claim of that JWT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_session: Option<String>,
    /// The mTLS peer principal (URI SAN) of the downstream connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_principal: Option<String>,
}

impl HttpRequest {
    /// Values of every header named `name` (lower case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}
