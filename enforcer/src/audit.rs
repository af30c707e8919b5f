//! The audit log: `<data-dir>/audit.jsonl`, append-only and hash-chained, one record per line:
//!
//! ```json
//! {"seq":3,"prev":"<hash of record 2>","hash":"<sha256 hex>","record":{"kind":"receipt",...}}
//! ```
//!
//! `hash` is SHA-256 over the canonical JSON (object keys sorted, no whitespace) of
//! `{"prev":…,"record":…,"seq":…}`; the first record's `prev` is 64 zeros. Changing, removing,
//! reordering or inserting any line breaks the chain at that line, which [`verify`] reports.
//! (A chain proves order and integrity, not that its tail was not cut off; anchoring the latest
//! hash elsewhere, e.g. in the event log, is what would prove that.)
//!
//! Records (`record.kind`): `start` (what the kernel side is: enforcing or observe-only, and
//! why), `receipt` (what was done for a decision, with the decision and kernel times),
//! `observation` (refused connects the BPF map counted for a decision, later), `release`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// File name of the audit log inside the data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("audit log {path} is broken at line {}: {}; move it aside to start a new chain", .broken.line, .broken.reason)]
    Broken { path: PathBuf, broken: BrokenLink },
}

/// The first line where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// 1-based line number.
    pub line: u64,
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    /// Hash of the last record (GENESIS for an empty log).
    pub head: String,
    pub broken: Option<BrokenLink>,
}

/// Canonical JSON: object keys sorted, no insignificant whitespace, so the hash does not depend
/// on how a serializer orders fields.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of a record at `seq` after `prev`.
pub fn link_hash(seq: u64, prev: &str, record: &Value) -> String {
    let body = json!({ "seq": seq, "prev": prev, "record": record });
    hex(&Sha256::digest(canonical(&body).as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one line against the previous link; returns its (seq, hash, record).
fn check_line(line: &str, want_seq: u64, prev: &str) -> Result<(String, Value), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    if obj.len() != 4 {
        return Err("expected exactly the members seq, prev, hash, record".to_owned());
    }
    let seq = obj.get("seq").and_then(Value::as_u64).ok_or("no seq")?;
    let their_prev = obj.get("prev").and_then(Value::as_str).ok_or("no prev")?;
    let hash = obj.get("hash").and_then(Value::as_str).ok_or("no hash")?;
    let record = obj.get("record").ok_or("no record")?;
    if seq != want_seq {
        return Err(format!("seq is {seq}, expected {want_seq} (a record was removed, inserted or reordered)"));
    }
    if their_prev != prev {
        return Err(format!("prev {their_prev} is not the hash of the previous record ({prev})"));
    }
    let actual = link_hash(seq, prev, record);
    if actual != hash {
        return Err(format!("hash {hash} does not match the record's content (sha256 {actual}): the record was modified"));
    }
    Ok((actual, record.clone()))
}

/// Verifies the whole chain in `path`, stopping at the first broken link.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let io_err = |source| AuditError::Io { path: path.to_owned(), source };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Verified { records: 0, head: GENESIS.to_owned(), broken: None });
        }
        Err(e) => return Err(io_err(e)),
    };
    let mut head = GENESIS.to_owned();
    let mut records = 0u64;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err)?;
        let n = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(1);
        match check_line(&line, records.saturating_add(1), &head) {
            Ok((hash, _)) => {
                head = hash;
                records = records.saturating_add(1);
            }
            Err(reason) => return Ok(Verified { records, head, broken: Some(BrokenLink { line: n, reason }) }),
        }
    }
    Ok(Verified { records, head, broken: None })
}

/// Every record (the `record` members) of a valid chain that concerns `decision_id`.
pub fn records_for(path: &Path, decision_id: &str) -> Result<Vec<Value>, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(AuditError::Io { path: path.to_owned(), source }),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| AuditError::Io { path: path.to_owned(), source })?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        if v.pointer("/record/decision_id").and_then(Value::as_str) == Some(decision_id) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The decision and rule of the receipt that installed the quarantine counted under `tag`.
pub fn records_tagged(path: &Path, tag: u64) -> Option<(String, String)> {
    let file = File::open(path).ok()?;
    let want = format!("{tag:#018x}");
    BufReader::new(file).lines().map_while(Result::ok).find_map(|line| {
        let v: Value = serde_json::from_str(&line).ok()?;
        let r = v.get("record")?;
        (r.pointer("/quarantine/tag").and_then(Value::as_str) == Some(want.as_str())).then(|| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            (s("decision_id"), s("rule"))
        })
    })
}

/// The writer: appends records to the chain, each made durable before `append` returns.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    seq: u64,
    head: String,
}

impl AuditLog {
    /// Opens `<dir>/audit.jsonl`, verifying the existing chain: a broken chain refuses to start
    /// (appending after a tampered record would bless it).
    pub fn open(dir: &Path) -> Result<Self, AuditError> {
        let path = dir.join(AUDIT_FILE);
        let io_err = |source| AuditError::Io { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let v = verify(&path)?;
        if let Some(broken) = v.broken {
            return Err(AuditError::Broken { path, broken });
        }
        let file = OpenOptions::new().append(true).create(true).open(&path).map_err(io_err)?;
        Ok(Self { path, file, seq: v.records, head: v.head })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and returns its seq and hash.
    pub fn append(&mut self, record: Value) -> Result<(u64, String), AuditError> {
        let seq = self.seq.saturating_add(1);
        let hash = link_hash(seq, &self.head, &record);
        let line = json!({ "seq": seq, "prev": self.head, "hash": hash, "record": record });
        let mut text = canonical(&line);
        text.push('\n');
        let io_err = |source| AuditError::Io { path: self.path.clone(), source };
        self.file.write_all(text.as_bytes()).map_err(io_err)?;
        self.file.sync_data().map_err(io_err)?;
        self.seq = seq;
        self.head = hash.clone();
        Ok((seq, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [true, null, {"y": "x", "c": 2}], "m": "é\n"}});
        assert_eq!(canonical(&v), r#"{"a":{"m":"é\n","z":[true,null,{"c":2,"y":"x"}]},"b":1}"#);
    }

    #[test]
    fn appends_verify_and_survive_a_reopen() {
        let dir = TempDir::new("audit-chain");
        let mut log = AuditLog::open(&dir.0).unwrap();
        log.append(json!({"kind": "receipt", "decision_id": "d1"})).unwrap();
        log.append(json!({"kind": "observation", "decision_id": "d1", "refused_connects": 3})).unwrap();
        drop(log);
        let mut log = AuditLog::open(&dir.0).unwrap();
        let (seq, _) = log.append(json!({"kind": "receipt", "decision_id": "d2"})).unwrap();
        assert_eq!(seq, 3);
        let v = verify(&dir.0.join(AUDIT_FILE)).unwrap();
        assert_eq!((v.records, v.broken), (3, None));
        let d1 = records_for(&dir.0.join(AUDIT_FILE), "d1").unwrap();
        assert_eq!(d1.len(), 2);
        assert_eq!(d1[1]["record"]["refused_connects"], 3);
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_broken_line() {
        let dir = TempDir::new("audit-tamper");
        let mut log = AuditLog::open(&dir.0).unwrap();
        for i in 0..4 {
            log.append(json!({"kind": "receipt", "decision_id": format!("d{i}"), "sockets_destroyed": 1})).unwrap();
        }
        let path = dir.0.join(AUDIT_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let check = |text: String, line: u64, why: &str| {
            std::fs::write(&path, text).unwrap();
            let v = verify(&path).unwrap();
            let broken = v.broken.unwrap_or_else(|| panic!("{why}: not detected"));
            assert_eq!(broken.line, line, "{why}: {}", broken.reason);
        };
        check(good.replacen("\"sockets_destroyed\":1", "\"sockets_destroyed\":0", 1), 1, "edited record");
        check(format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]), 2, "removed record");
        check(format!("{}\n{}\n{}\n{}\n", lines[1], lines[0], lines[2], lines[3]), 1, "reordered");
        check(format!("{}\n{}\nnot json\n", lines[0], lines[1]), 3, "garbage");
        // Recomputing the edited record's own hash does not help: the next link still breaks.
        let mut v: Value = serde_json::from_str(lines[1]).unwrap();
        v["record"]["sockets_destroyed"] = json!(9);
        let hash = link_hash(2, v["prev"].as_str().unwrap(), &v["record"]);
        v["hash"] = json!(hash);
        check(format!("{}\n{}\n{}\n{}\n", lines[0], canonical(&v), lines[2], lines[3]), 3, "rehashed record");
        // A broken chain refuses to be appended to.
        assert!(matches!(AuditLog::open(&dir.0), Err(AuditError::Broken { .. })));
    }
}
