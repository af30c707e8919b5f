//! The engine's own rule ids: decisions that come from the engine's invariants rather than from a
//! rule of the document. Policy rule ids may not reuse them.

/// No verified agent identity where one is required (401).
pub const IDENTITY_REQUIRED: &str = "identity-required";
/// The JWT names one agent and the mTLS peer another (403).
pub const IDENTITY_CONFLICT: &str = "identity-conflict";
/// A security header appears more than once (400).
pub const DUPLICATE_HEADER: &str = "duplicate-header";
/// A header value the engine cannot interpret unambiguously (400).
pub const MALFORMED_HEADER: &str = "malformed-header";
/// The path is not canonical (400).
pub const MALFORMED_PATH: &str = "malformed-path";
/// A governed route that needs a body got none (400).
pub const BODY_REQUIRED: &str = "body-required";
/// The body is larger than `inspection.max_body_bytes` (413).
pub const BODY_TOO_LARGE: &str = "body-too-large";
/// `Content-Encoding` on a governed route (415).
pub const UNSUPPORTED_ENCODING: &str = "unsupported-encoding";
/// A content type the engine does not parse on a governed route (415).
pub const UNSUPPORTED_CONTENT_TYPE: &str = "unsupported-content-type";
/// The body is not strict JSON (400).
pub const MALFORMED_BODY: &str = "malformed-body";
/// The body is JSON but not a valid JSON-RPC request for the route's protocol (400).
pub const INVALID_JSONRPC: &str = "invalid-jsonrpc";
/// `Mcp-Method` / `Mcp-Name` headers disagree with the body (400).
pub const HEADER_BODY_MISMATCH: &str = "header-body-mismatch";
/// A governed body that could not be fully inspected, under `on_uninspectable` (403 or audit).
pub const UNINSPECTABLE: &str = "uninspectable";
/// An LLM request that is not a valid request of its provider's API (400).
pub const INVALID_LLM_REQUEST: &str = "invalid-llm-request";
/// A tool call (from a model) whose tool name is not a valid tool name (403).
pub const INVALID_TOOL_CALL: &str = "invalid-tool-call";
/// An MCP tool definition that changed since it was pinned (a rug pull).
pub const TOOL_DEFINITION_CHANGED: &str = "tool-definition-changed";
/// An MCP tool description with injection markers, credential lures, invisible or bidi characters.
pub const SUSPICIOUS_TOOL_DEFINITION: &str = "suspicious-tool-definition";
/// Tools removed from a `tools/list` answer because the caller may not call them.
pub const HIDDEN_TOOLS: &str = "hide-denied-tools";
/// A revoked user, session, trace or agent (403).
pub const REVOKED: &str = "revoked";
/// The shared rate-limit table stayed contended through every retry (429, fail closed).
pub const RATE_LIMIT_CONTENTION: &str = "rate-limit-contention";
/// No rule decided and `default_action` is `deny` (403).
pub const DEFAULT_DENY: &str = "default-deny";
/// No rule decided and `default_action` is `allow`.
pub const DEFAULT_ALLOW: &str = "default-allow";

/// Every built-in id.
pub const ALL: &[&str] = &[
    IDENTITY_REQUIRED,
    IDENTITY_CONFLICT,
    DUPLICATE_HEADER,
    MALFORMED_HEADER,
    MALFORMED_PATH,
    BODY_REQUIRED,
    BODY_TOO_LARGE,
    UNSUPPORTED_ENCODING,
    UNSUPPORTED_CONTENT_TYPE,
    MALFORMED_BODY,
    INVALID_JSONRPC,
    HEADER_BODY_MISMATCH,
    REVOKED,
    RATE_LIMIT_CONTENTION,
    UNINSPECTABLE,
    INVALID_LLM_REQUEST,
    INVALID_TOOL_CALL,
    TOOL_DEFINITION_CHANGED,
    SUSPICIOUS_TOOL_DEFINITION,
    HIDDEN_TOOLS,
    DEFAULT_DENY,
    DEFAULT_ALLOW,
];

/// Request headers whose duplicates make a request ambiguous: the host API returns only one of
/// them, and two components may each pick a different one.
pub const SECURITY_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "host",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "traceparent",
    "tracestate",
];
