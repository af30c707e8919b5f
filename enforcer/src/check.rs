//! `interlock check`: compiles a policy file with the same engine the filter runs, so a policy
//! that passes here is one the filter accepts.

use std::path::{Path, PathBuf};

use interlock_policies::{Engine, PolicyError};
use thiserror::Error;

/// A policy that compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub version: String,
    pub rules: usize,
}

#[derive(Debug, Error)]
pub enum CheckError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// Displays as `FILE: invalid policy: <json path>: <reason>`.
    #[error("{}: invalid policy: {source}", path.display())]
    Invalid { path: PathBuf, source: PolicyError },
}

/// Reads and compiles the policy at `path`.
pub fn check_file(path: &Path) -> Result<CheckReport, CheckError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::Read { path: path.to_owned(), source })?;
    let engine = Engine::from_json(&text).map_err(|source| CheckError::Invalid { path: path.to_owned(), source })?;
    Ok(CheckReport { version: engine.version().to_owned(), rules: engine.rule_count() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn reports_version_and_rule_count_or_the_json_path() {
        let dir = TempDir::new("check");
        let good = dir.0.join("good.json");
        std::fs::write(
            &good,
            r#"{"version": "v7", "rules": [{"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}}]}"#,
        )
        .unwrap();
        assert_eq!(check_file(&good).unwrap(), CheckReport { version: "v7".into(), rules: 1 });

        let bad = dir.0.join("bad.json");
        std::fs::write(&bad, r#"{"version": "x", "rules": [{"id": "r", "effect": "maybe"}]}"#).unwrap();
        let err = check_file(&bad).unwrap_err();
        let CheckError::Invalid { source, .. } = &err else { panic!("{err}") };
        assert_eq!(source.path(), "$.rules[0].effect");
        assert!(
            err.to_string().starts_with(&format!("{}: invalid policy: $.rules[0].effect: ", bad.display())),
            "{err}"
        );

        let missing = dir.0.join("missing.json");
        assert!(matches!(check_file(&missing), Err(CheckError::Read { .. })));
    }
}
