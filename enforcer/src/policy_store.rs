//! The installed policy document on disk, and the atomic file write the live state uses.
//!
//! `<data-dir>/policy.json` holds the document the filters run, with its generation and the state
//! version at which it was installed:
//!
//! ```json
//! {"format":1,"version":12,"generation":3,"installed_unix_ms":1718000000000,"policy":{...}}
//! ```
//!
//! Every document stored went through [`interlock_policies::Engine::from_json`], the filter's own
//! compiler, and is compiled again when loaded: a file that does not parse or a policy this engine
//! refuses stops the enforcer with an error naming the file, instead of serving filters a policy
//! they would reject (or silently serving none).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use interlock_policies::{Engine, PolicyError};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// File name of the installed policy inside the data directory.
pub const POLICY_FILE: &str = "policy.json";
/// Largest policy document accepted (`PUT /v1/policy` answers 413 beyond).
pub const MAX_POLICY_BYTES: usize = 32 * 1024 * 1024;
/// Version of the layout of the files this module and [`crate::state`] write.
pub const FORMAT: u32 = 1;

/// Why a state file cannot be read or written.
#[derive(Debug, Error)]
pub enum PersistError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is corrupt: {reason}; the enforcer will not start without it (restore it from a backup, or move it aside to start without what it held)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} holds a policy this engine refuses ({source}); move it aside and push a valid policy")]
    InvalidStoredPolicy { path: PathBuf, source: PolicyError },
    #[error("cannot encode {path}: {source}")]
    Encode { path: PathBuf, source: serde_json::Error },
}

/// A policy that compiled: what the filters are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPolicy {
    /// 1 for the first policy installed, +1 per push.
    pub generation: u64,
    /// The document's `version`.
    pub label: String,
    /// Rules the engine compiled (document rules and agent grants).
    pub rules: usize,
    /// The document as compact JSON, served as is (never re-serialised per answer).
    pub json: Arc<str>,
    pub installed_unix_ms: u64,
}

/// A document that compiled, before it is given a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPolicy {
    pub label: String,
    pub rules: usize,
    pub json: Arc<str>,
}

/// Compiles `text` with the filter's engine; on success returns it in compact form.
pub fn validate(text: &str) -> Result<ValidPolicy, PolicyError> {
    let engine = Engine::from_json(text)?;
    // The engine accepted it, so it is one JSON object without duplicate keys: re-encoding it
    // compactly loses nothing the engine reads.
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| PolicyError::Malformed { path: "$".to_owned(), reason: e.to_string() })?;
    Ok(ValidPolicy { label: engine.version().to_owned(), rules: engine.rule_count(), json: Arc::from(doc.to_string()) })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    format: u32,
    version: u64,
    generation: u64,
    installed_unix_ms: u64,
    policy: Value,
}

/// Reads the installed policy and the state version it was installed at; `None` when no policy
/// was ever installed.
pub fn load(dir: &Path) -> Result<Option<(InstalledPolicy, u64)>, PersistError> {
    let path = dir.join(POLICY_FILE);
    let Some(bytes) = read_if_exists(&path)? else {
        return Ok(None);
    };
    let corrupt = |reason: String| PersistError::Corrupt { path: path.clone(), reason };
    let file: PolicyFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!("format {} is not {FORMAT}, the one this enforcer writes", file.format)));
    }
    if file.generation == 0 {
        return Err(corrupt("generation 0 (the first installed policy is generation 1)".to_owned()));
    }
    let valid =
        validate(&file.policy.to_string()).map_err(|source| PersistError::InvalidStoredPolicy { path: path.clone(), source })?;
    let policy = InstalledPolicy {
        generation: file.generation,
        label: valid.label,
        rules: valid.rules,
        json: valid.json,
        installed_unix_ms: file.installed_unix_ms,
    };
    Ok(Some((policy, file.version)))
}

/// Writes the installed policy atomically.
pub fn save(dir: &Path, policy: &InstalledPolicy, version: u64) -> Result<(), PersistError> {
    // Assembled by hand so a 32 MiB document is not parsed back into a `Value` to be written.
    let text = format!(
        "{{\"format\":{FORMAT},\"version\":{version},\"generation\":{},\"installed_unix_ms\":{},\"policy\":{}}}\n",
        policy.generation, policy.installed_unix_ms, policy.json
    );
    atomic_write(dir, POLICY_FILE, text.as_bytes())
}

/// Reads a whole file, `None` when it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Read { path: path.to_owned(), source }),
    }
}

/// The temporary file [`atomic_write`] writes `name` through.
pub(crate) fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp"))
}

/// Replaces `dir/name` with `bytes` so that a crash at any point leaves either the old file or the
/// new one, whole: write a temporary file, fsync it, rename it over the old one, fsync the
/// directory (the rename is only durable once the directory is). A leftover temporary file is a
/// write that never happened; the next write replaces it.
pub fn atomic_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), PersistError> {
    let path = dir.join(name);
    let tmp = temp_path(dir, name);
    let write_err = |source| PersistError::Write { path: path.clone(), source };
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        // Best effort: a stale temporary file is harmless, the old file is still whole.
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    const DOC: &str = r#"{"version": "v7", "rules": [{"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}}]}"#;

    #[test]
    fn a_saved_policy_loads_back_compiled() {
        let dir = TempDir::new("policy-store");
        assert_eq!(load(&dir.0).unwrap(), None);
        let valid = validate(DOC).unwrap();
        assert_eq!((valid.label.as_str(), valid.rules), ("v7", 1));
        assert!(!valid.json.contains(' '), "compact: {}", valid.json);
        let installed =
            InstalledPolicy { generation: 3, label: valid.label, rules: valid.rules, json: valid.json, installed_unix_ms: 9 };
        save(&dir.0, &installed, 12).unwrap();
        assert_eq!(load(&dir.0).unwrap(), Some((installed, 12)));
        assert!(!temp_path(&dir.0, POLICY_FILE).exists());
    }

    #[test]
    fn damaged_files_refuse_to_load_naming_the_file() {
        let dir = TempDir::new("policy-store-bad");
        let path = dir.0.join(POLICY_FILE);
        let valid = validate(DOC).unwrap();
        let installed =
            InstalledPolicy { generation: 1, label: valid.label, rules: valid.rules, json: valid.json, installed_unix_ms: 0 };
        save(&dir.0, &installed, 1).unwrap();
        let whole = std::fs::read_to_string(&path).unwrap();

        for (name, text) in [
            ("torn", whole.get(..whole.len() / 2).unwrap().to_owned()),
            ("empty", String::new()),
            ("unknown member", whole.replace("\"format\":1", "\"format\":1,\"extra\":0")),
            ("other format", whole.replace("\"format\":1", "\"format\":2")),
            ("generation 0", whole.replace("\"generation\":1", "\"generation\":0")),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = load(&dir.0).unwrap_err();
            assert!(matches!(err, PersistError::Corrupt { .. }), "{name}: {err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{name}: {err}");
        }
        std::fs::write(&path, whole.replace("\"effect\":\"deny\"", "\"effect\":\"maybe\"")).unwrap();
        let err = load(&dir.0).unwrap_err();
        assert!(matches!(&err, PersistError::InvalidStoredPolicy { source, .. } if source.path() == "$.rules[0].effect"), "{err}");
    }
}
