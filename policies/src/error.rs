//! Why a policy document is refused. Every error names the JSON path of what is wrong and, where
//! there is one, the offending value.

use thiserror::Error;

/// A policy that cannot be compiled. `path` is a JSONPath-like location (`$.rules[2].http.paths[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// The text is not JSON, or does not have the document's shape (unknown field, wrong type).
    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },
    /// A field has a value the engine refuses.
    #[error("{path}: invalid value {value}: {reason}")]
    InvalidValue { path: String, value: String, reason: String },
    /// Two rules share an id.
    #[error("{path}: duplicate rule id {id:?} (first used at {first})")]
    DuplicateRuleId { path: String, id: String, first: String },
    /// A field reserved for a capability this engine version does not enforce.
    #[error("{path}: not supported by this version of the Interlock engine ({what}); remove it rather than run a policy that is only half enforced")]
    Unsupported { path: String, what: &'static str },
}

impl PolicyError {
    /// The JSON path of the error.
    pub fn path(&self) -> &str {
        match self {
            Self::Malformed { path, .. }
            | Self::InvalidValue { path, .. }
            | Self::DuplicateRuleId { path, .. }
            | Self::Unsupported { path, .. } => path,
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, value: impl std::fmt::Debug, reason: impl Into<String>) -> Self {
        Self::InvalidValue { path: path.into(), value: format!("{value:?}"), reason: reason.into() }
    }
}
