//! The plugin configuration (Envoy's `configuration`, Istio's `pluginConfig`): the policy and how
//! to reach the enforcer. Strict: an unknown field or a bad policy refuses the configuration.

use interlock_policies::{Engine, PolicyError, PolicySummary, PreparedPolicy, ValidatedPolicy};
use serde::Deserialize;
use thiserror::Error;

use crate::events::Limits;

/// The plugin configuration as written. `P` is how the policy is read: compiled
/// ([`PreparedPolicy`]) or only validated ([`ValidatedPolicy`], same errors).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig<P = PreparedPolicy> {
    /// The policy document, inline. Read straight from the configuration bytes, its rules
    /// compiled as they are read: neither a JSON tree nor the whole typed form of a policy that
    /// may hold 100,000 rules is ever built.
    pub policy: P,
    /// Where decision events go.
    #[serde(default)]
    pub enforcer: EnforcerConfig,
    /// Hold a governed request's headers until its body is decided (default `true`). Needs
    /// Envoy's `allow_on_headers_stop_iteration: true` (Envoy >= 1.35); Istio's WasmPlugin cannot
    /// set it, so there set `false`: the headers then go upstream first and the body is still held
    /// until the decision; a refusal resets that upstream stream.
    #[serde(default = "default_true")]
    pub hold_headers: bool,
    /// What the filter writes to filter state for the access log: `combined` (default) one key,
    /// `wasm.interlock.decision` = `decision=<id> action=<a> rule=<r> mode=<m> agent=<agent>`;
    /// `full` also the five keys `wasm.interlock.decision_id`, `.action`, `.rule`, `.mode`,
    /// `.agent` (four more host calls per decision).
    #[serde(default)]
    pub access_log_state: AccessLogState,
}

/// See [`PluginConfig::access_log_state`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogState {
    #[default]
    Combined,
    Full,
}

fn default_true() -> bool {
    true
}

/// How the filter reaches the enforcer (through an Envoy cluster, with `dispatch_http_call`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforcerConfig {
    /// Envoy cluster name. Default `interlock_enforcer`.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// `:authority` of the calls. Default `interlock-enforcer`.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// How often buffered events are flushed, in milliseconds (50..=10000). Default 200.
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    /// Events a worker buffers while the enforcer is unreachable (1..=100000). Beyond it the
    /// oldest are dropped and counted in `interlock.events.dropped`. Default 10000.
    #[serde(default = "default_buffer")]
    pub max_buffered_events: usize,
    /// Bytes of serialized events a worker buffers (65536..=268435456), besides the batch being
    /// posted; whichever of this and `max_buffered_events` is reached first drops the oldest
    /// events, counted in `interlock.events.dropped` (an event larger than this on its own is
    /// dropped and counted too). Wasm linear memory never shrinks, so this is memory each
    /// worker keeps once it has filled. Default 4194304 (4 MiB: about 6,000 events of the demo
    /// policy, ~660 bytes each).
    #[serde(default = "default_buffer_bytes")]
    pub max_buffered_bytes: usize,
    /// Events per POST (1..=5000). Default 500.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Timeout of one POST in milliseconds. Default 2000.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Follow the enforcer's live state (policy updates, revocations) by long-polling
    /// `GET /v1/state`. Default `true`; `false` keeps the configuration's policy for good.
    #[serde(default = "default_true")]
    pub live: bool,
    /// How long one long poll waits for a change, in milliseconds (1000..=55000). Default 20000.
    #[serde(default = "default_wait")]
    pub state_wait_ms: u64,
}

impl EnforcerConfig {
    /// The bounds of the event queue.
    pub fn limits(&self) -> Limits {
        Limits { max_events: self.max_buffered_events, max_bytes: self.max_buffered_bytes, max_batch: self.max_batch }
    }
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        Self {
            cluster: default_cluster(),
            authority: default_authority(),
            flush_interval_ms: default_flush(),
            max_buffered_events: default_buffer(),
            max_buffered_bytes: default_buffer_bytes(),
            max_batch: default_batch(),
            timeout_ms: default_timeout(),
            live: true,
            state_wait_ms: default_wait(),
        }
    }
}

fn default_cluster() -> String {
    "interlock_enforcer".into()
}
fn default_authority() -> String {
    "interlock-enforcer".into()
}
fn default_flush() -> u64 {
    200
}
fn default_buffer() -> usize {
    10_000
}
fn default_buffer_bytes() -> usize {
    4 << 20
}
fn default_batch() -> usize {
    500
}
fn default_timeout() -> u64 {
    2_000
}
fn default_wait() -> u64 {
    20_000
}

/// Why a configuration is refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("plugin configuration is missing")]
    Missing,
    #[error("plugin configuration: {path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("plugin configuration: $.enforcer.{field}: {value} is out of range {range}")]
    OutOfRange { field: &'static str, value: u64, range: &'static str },
    #[error("plugin configuration: policy: {0}")]
    Policy(#[from] PolicyError),
}

/// A validated configuration with its compiled engine (or, from [`validate`], only what its
/// policy is: `E` = [`PolicySummary`]).
pub struct Loaded<E = Engine> {
    pub engine: E,
    pub enforcer: EnforcerConfig,
    pub hold_headers: bool,
    pub access_log_state: AccessLogState,
}

/// Parses and validates the configuration bytes and compiles the policy.
pub fn load(bytes: Option<&[u8]>) -> Result<Loaded, ConfigError> {
    let (cfg, policy) = read::<PreparedPolicy>(bytes)?;
    // Compiled by the same validation `interlock check` uses (duplicate keys were refused by the
    // strict check, which covers the policy too). The document is consumed as it compiles.
    let engine = Engine::from_prepared(policy)?;
    Ok(Loaded { engine, enforcer: cfg.enforcer, hold_headers: cfg.hold_headers, access_log_state: cfg.access_log_state })
}

/// What [`load`] does, keeping no compiled policy: the same checks in the same order, so the same
/// configurations are refused with the same errors (for a VM that will not decide, issue 7).
pub fn validate(bytes: Option<&[u8]>) -> Result<Loaded<PolicySummary>, ConfigError> {
    let (cfg, policy) = read::<ValidatedPolicy>(bytes)?;
    let engine = policy.check()?;
    Ok(Loaded { engine, enforcer: cfg.enforcer, hold_headers: cfg.hold_headers, access_log_state: cfg.access_log_state })
}

/// Reads the configuration and checks everything but the policy's cross-checks; returns the rest
/// of the configuration and the policy as read.
fn read<P: serde::de::DeserializeOwned>(bytes: Option<&[u8]>) -> Result<(PluginConfig<()>, P), ConfigError> {
    let bytes = bytes.filter(|b| !b.is_empty()).ok_or(ConfigError::Missing)?;
    // Strict first: serde would silently keep the last of two duplicate keys, inside the policy
    // as anywhere else. The check builds nothing (wasm memory keeps its peak for good, in every
    // VM), then the typed configuration, policy included, is read from the same bytes once.
    interlock_policies::json::check_strict(bytes, 64).map_err(|e| ConfigError::Malformed { path: "$".into(), reason: e.to_string() })?;
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let cfg: PluginConfig<P> = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.inner().to_string();
        // Errors inside the policy read as `interlock check` reports them: `$.rules[0].id`.
        match path.strip_prefix("policy") {
            Some("") => ConfigError::Policy(PolicyError::Malformed { path: "$".into(), reason }),
            Some(rest) if rest.starts_with('.') || rest.starts_with('[') => {
                ConfigError::Policy(PolicyError::Malformed { path: format!("${rest}"), reason })
            }
            _ => ConfigError::Malformed { path: format!("$.{path}"), reason },
        }
    })?;
    let e = &cfg.enforcer;
    let check = |field, value: u64, lo: u64, hi: u64, range| {
        if value < lo || value > hi { Err(ConfigError::OutOfRange { field, value, range }) } else { Ok(()) }
    };
    check("flush_interval_ms", e.flush_interval_ms, 50, 10_000, "50..=10000")?;
    check("max_buffered_events", e.max_buffered_events as u64, 1, 100_000, "1..=100000")?;
    check("max_buffered_bytes", e.max_buffered_bytes as u64, 1 << 16, 1 << 28, "65536..=268435456")?;
    check("max_batch", e.max_batch as u64, 1, 5_000, "1..=5000")?;
    check("timeout_ms", e.timeout_ms, 100, 60_000, "100..=60000")?;
    check("state_wait_ms", e.state_wait_ms, 1_000, 55_000, "1000..=55000")?;
    let PluginConfig { policy, enforcer, hold_headers, access_log_state } = cfg;
    Ok((PluginConfig { policy: (), enforcer, hold_headers, access_log_state }, policy))
}
