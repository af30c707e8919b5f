//! The live state the filters follow: the installed policy and the revocations, under one
//! monotonic `version`, durable in the data directory and served by long poll.
//!
//! `version` grows by one on every change a filter must see (policy push, revoke, unrevoke), is
//! written with the change, and survives restarts: a filter only takes a version greater than the
//! one it holds, so a version that went backwards would freeze every filter on stale state.
//! Expiry is not a change: answers leave expired revocations out by time, and the filters check
//! expiry against their own clock too.
//!
//! On disk (both written atomically, see [`crate::policy_store::atomic_write`]):
//! - `policy.json`: the policy document, its generation and the version it was installed at;
//! - `revocations.json`: `{"format":1,"version":V,"revocations":[...],"applied_decisions":[...]}`.
//!
//! Each change rewrites exactly one of the two, stamped with the new version, so the version at
//! start is the larger of the two stamps. `applied_decisions` remembers the decisions that already
//! revoked, so a batch of events sent twice revokes once.
//!
//! Concurrency: changes are serialised by one mutex held across the write and its fsync (they are
//! rare, and each must be durable before it is visible); readers never take it: they clone the
//! current [`Snapshot`] (an `Arc`) and the long polls wait on a `watch` of the version.

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use interlock_policies::PolicyError;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

use crate::policy_store::{self, FORMAT, InstalledPolicy, PersistError};
use crate::revocations::{Revocation, RevocationError, RevocationKind, RevocationTable, RevokeOutcome, RevokeRequest};

/// File name of the revocations inside the data directory.
pub const REVOCATIONS_FILE: &str = "revocations.json";
/// Decision ids remembered for idempotency. A re-sent batch arrives seconds after the first;
/// 10,000 decisions that revoked is far more than can happen in between.
pub const MAX_APPLIED_DECISIONS: usize = 10_000;

#[derive(Debug, Error)]
pub enum StateError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    #[error("invalid policy: {0}")]
    InvalidPolicy(PolicyError),
    #[error("cannot draw a random revocation id: {0}")]
    Random(io::Error),
    #[error("live state task failed: {0}")]
    Task(String),
    #[error("live state lock poisoned by an earlier failure")]
    Poisoned,
}

/// What filters are served: one consistent view at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: u64,
    pub policy: Option<InstalledPolicy>,
    /// Every stored revocation, oldest first; expired ones are filtered out when answering.
    pub revocations: Arc<Vec<Revocation>>,
}

impl Snapshot {
    /// The installed policy's generation, 0 when none is installed.
    pub fn generation(&self) -> u64 {
        self.policy.as_ref().map_or(0, |p| p.generation)
    }

    /// Revocations in force at `now_ms`, oldest first.
    pub fn active_revocations(&self, now_ms: u64) -> impl Iterator<Item = &Revocation> {
        self.revocations.iter().filter(move |r| r.is_active(now_ms))
    }
}

/// What a policy push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInstalled {
    pub generation: u64,
    pub version: u64,
    pub label: String,
    pub rules: usize,
}

/// A revocation a rule asked for when it denied a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRevoke {
    pub decision_id: String,
    pub rule: String,
    pub kind: RevocationKind,
    pub value: String,
    pub ttl_secs: Option<u64>,
}

/// What a decision's revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// A new revocation, or one lasting longer than the one it replaced.
    Revoked(Revocation),
    /// This decision already revoked (a batch sent again): nothing changed.
    AlreadyApplied,
    /// The principal was already revoked at least as long: kept as it was (a rule never shortens
    /// what an operator or an earlier decision set).
    AlreadyCovered(Revocation),
}

/// What was found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub version: u64,
    pub policy: Option<(u64, String)>,
    pub revocations_active: usize,
    pub revocations_file: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationsFile {
    format: u32,
    version: u64,
    revocations: Vec<Revocation>,
    applied_decisions: Vec<String>,
}

/// The live state. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct LiveState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    durable: Mutex<Durable>,
    current: RwLock<Arc<Snapshot>>,
    version: watch::Sender<u64>,
    policy_push_rejected: AtomicU64,
    decision_revocations_failed: AtomicU64,
}

#[derive(Debug)]
struct Durable {
    version: u64,
    policy: Option<InstalledPolicy>,
    table: RevocationTable,
    applied: VecDeque<String>,
    applied_set: HashSet<String>,
    /// [`MAX_APPLIED_DECISIONS`]; a field so a test can reach the bound without 10,000 fsyncs.
    applied_cap: usize,
}

impl Durable {
    fn snapshot(&self) -> Snapshot {
        let mut list: Vec<Revocation> = self.table.all().cloned().collect();
        list.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Snapshot { version: self.version, policy: self.policy.clone(), revocations: Arc::new(list) }
    }

    fn revocations_json(&self, version: u64) -> Result<Vec<u8>, serde_json::Error> {
        let file = RevocationsFile {
            format: FORMAT,
            version,
            revocations: self.table.all().cloned().collect(),
            applied_decisions: self.applied.iter().cloned().collect(),
        };
        let mut bytes = serde_json::to_vec(&file)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

impl LiveState {
    /// Loads the state from `dir` (creating it if needed). Blocking. A file that cannot be read
    /// back whole is an error naming it: starting without a revocation it held would re-admit a
    /// principal an operator shut out.
    pub fn open(dir: &Path) -> Result<(Self, Recovered), StateError> {
        std::fs::create_dir_all(dir).map_err(|source| PersistError::Write { path: dir.to_owned(), source })?;
        let policy = policy_store::load(dir)?;
        let path = dir.join(REVOCATIONS_FILE);
        let (file_version, table, applied) = match policy_store::read_if_exists(&path)? {
            None => (0, RevocationTable::default(), VecDeque::new()),
            Some(bytes) => {
                let corrupt = |reason: String| PersistError::Corrupt { path: path.clone(), reason };
                let file: RevocationsFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                if file.format != FORMAT {
                    return Err(corrupt(format!("format {} is not {FORMAT}", file.format)).into());
                }
                let table = RevocationTable::from_list(file.revocations).map_err(corrupt)?;
                (file.version, table, VecDeque::from(file.applied_decisions))
            }
        };
        let version = file_version.max(policy.as_ref().map_or(0, |(_, v)| *v));
        let policy = policy.map(|(p, _)| p);
        let applied_set = applied.iter().cloned().collect();
        let durable = Durable { version, policy, table, applied, applied_set, applied_cap: MAX_APPLIED_DECISIONS };
        let recovered = Recovered {
            version,
            policy: durable.policy.as_ref().map(|p| (p.generation, p.label.clone())),
            revocations_active: durable.table.active_count(now_unix_ms()),
            revocations_file: path,
        };
        let state = Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                current: RwLock::new(Arc::new(durable.snapshot())),
                durable: Mutex::new(durable),
                version: watch::Sender::new(version),
                policy_push_rejected: AtomicU64::new(0),
                decision_revocations_failed: AtomicU64::new(0),
            }),
        };
        Ok((state, recovered))
    }

    /// The current state. Never waits for a change being written.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.inner.current.read() {
            Ok(current) => Arc::clone(&current),
            // Only a panic while swapping an Arc can poison this; the Arc inside is still whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The version, for long polls: `wait_for(|v| *v != known)`.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// Policy pushes refused as invalid since start.
    pub fn policy_push_rejected(&self) -> u64 {
        self.inner.policy_push_rejected.load(Ordering::Relaxed)
    }

    /// Counts a push refused before it reached [`Self::install_policy`] (a body over the limit).
    pub fn count_rejected_push(&self) {
        self.inner.policy_push_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Revocations that rules asked for and that could not be recorded, since start.
    pub fn decision_revocations_failed(&self) -> u64 {
        self.inner.decision_revocations_failed.load(Ordering::Relaxed)
    }

    /// Installs `text` as generation 1 when no policy is stored yet (`serve --policy`); `None`
    /// when one is, leaving it alone. Blocking.
    pub fn seed_policy(&self, text: &str) -> Result<Option<PolicyInstalled>, StateError> {
        let valid = policy_store::validate(text).map_err(StateError::InvalidPolicy)?;
        self.inner.install_blocking(valid, true, now_unix_ms())
    }

    /// `PUT /v1/policy`: compiles `text` with the filter's engine and installs it as the next
    /// generation. An invalid policy changes nothing but the `policy_push_rejected` counter.
    pub async fn install_policy(&self, body: impl Into<Vec<u8>>) -> Result<PolicyInstalled, StateError> {
        let inner = Arc::clone(&self.inner);
        let body = body.into();
        blocking(move || {
            let text = match String::from_utf8(body) {
                Ok(text) => text,
                Err(e) => {
                    inner.policy_push_rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(StateError::InvalidPolicy(PolicyError::Malformed {
                        path: "$".to_owned(),
                        reason: format!("the document is not UTF-8: {e}"),
                    }));
                }
            };
            let valid = match policy_store::validate(&text) {
                Ok(valid) => valid,
                Err(e) => {
                    inner.policy_push_rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(StateError::InvalidPolicy(e));
                }
            };
            let installed = inner.install_blocking(valid, false, now_unix_ms())?;
            installed.ok_or(StateError::Task("policy install skipped".to_owned()))
        })
        .await
    }

    /// `POST /v1/revocations` (`source` "cli").
    pub async fn revoke(&self, req: RevokeRequest) -> Result<(Revocation, RevokeOutcome), StateError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.revoke_blocking(req, "cli".to_owned(), now_unix_ms())).await
    }

    /// `DELETE /v1/revocations/{kind}/{value}`.
    pub async fn unrevoke(&self, kind: RevocationKind, value: String) -> Result<Revocation, StateError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.unrevoke_blocking(kind, &value, now_unix_ms())).await
    }

    /// A rule's revocation, from an enforced deny event. Idempotent per decision id.
    pub async fn revoke_for_decision(&self, d: DecisionRevoke) -> Result<DecisionOutcome, StateError> {
        let inner = Arc::clone(&self.inner);
        let result = blocking(move || inner.decision_blocking(d, now_unix_ms())).await;
        if result.is_err() {
            self.inner.decision_revocations_failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StateError::Task(e.to_string()))?
}

impl Inner {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Durable>, StateError> {
        self.durable.lock().map_err(|_| StateError::Poisoned)
    }

    /// Makes a committed change visible: new snapshot first, then the version long polls wait on.
    fn publish(&self, durable: &Durable) {
        let snapshot = Arc::new(durable.snapshot());
        match self.current.write() {
            Ok(mut current) => *current = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        self.version.send_replace(durable.version);
    }

    fn install_blocking(
        &self,
        valid: policy_store::ValidPolicy,
        only_if_none: bool,
        now_ms: u64,
    ) -> Result<Option<PolicyInstalled>, StateError> {
        let mut durable = self.lock()?;
        if only_if_none && durable.policy.is_some() {
            return Ok(None);
        }
        let generation = durable.policy.as_ref().map_or(0, |p| p.generation).saturating_add(1);
        let version = durable.version.saturating_add(1);
        let policy = InstalledPolicy {
            generation,
            label: valid.label,
            rules: valid.rules,
            json: valid.json,
            installed_unix_ms: now_ms,
        };
        policy_store::save(&self.dir, &policy, version)?;
        let installed = PolicyInstalled { generation, version, label: policy.label.clone(), rules: policy.rules };
        durable.policy = Some(policy);
        durable.version = version;
        self.publish(&durable);
        Ok(Some(installed))
    }

    /// Writes the revocations file at `version`; the caller undoes its change on error.
    fn save_revocations(&self, durable: &Durable, version: u64) -> Result<(), StateError> {
        let path = self.dir.join(REVOCATIONS_FILE);
        let bytes = durable.revocations_json(version).map_err(|source| PersistError::Encode { path, source })?;
        policy_store::atomic_write(&self.dir, REVOCATIONS_FILE, &bytes)?;
        Ok(())
    }

    fn revoke_blocking(
        &self,
        req: RevokeRequest,
        source: String,
        now_ms: u64,
    ) -> Result<(Revocation, RevokeOutcome), StateError> {
        let revocation = Revocation {
            id: random_id()?,
            kind: req.kind,
            value: req.value.clone(),
            reason: req.reason.clone(),
            created_unix_ms: now_ms,
            expires_unix_ms: req.expires_at(now_ms),
            source,
        };
        let mut durable = self.lock()?;
        durable.table.prune(now_ms);
        let (outcome, previous) = durable.table.insert(revocation.clone(), now_ms)?;
        let version = durable.version.saturating_add(1);
        if let Err(e) = self.save_revocations(&durable, version) {
            durable.table.restore(req.kind, &req.value, previous);
            return Err(e);
        }
        durable.version = version;
        self.publish(&durable);
        Ok((revocation, outcome))
    }

    fn unrevoke_blocking(&self, kind: RevocationKind, value: &str, now_ms: u64) -> Result<Revocation, StateError> {
        let mut durable = self.lock()?;
        let removed = durable.table.remove(kind, value, now_ms)?;
        let version = durable.version.saturating_add(1);
        if let Err(e) = self.save_revocations(&durable, version) {
            durable.table.restore(kind, value, Some(removed));
            return Err(e);
        }
        durable.version = version;
        self.publish(&durable);
        Ok(removed)
    }

    fn decision_blocking(&self, d: DecisionRevoke, now_ms: u64) -> Result<DecisionOutcome, StateError> {
        let req = RevokeRequest::new(d.kind, d.value, d.ttl_secs, Some(format!("rule {}", d.rule)))?;
        let mut durable = self.lock()?;
        if durable.applied_set.contains(&d.decision_id) {
            return Ok(DecisionOutcome::AlreadyApplied);
        }
        let expires = req.expires_at(now_ms);
        let covering = durable.table.get_active(req.kind, &req.value, now_ms).filter(|r| match (r.expires_unix_ms, expires) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(old), Some(new)) => old >= new,
        });
        let covering = covering.cloned();

        // Remember the decision with the change (or, when nothing changes, alone), so that a
        // re-sent batch finds it even after the covering revocation is lifted.
        durable.applied.push_back(d.decision_id.clone());
        durable.applied_set.insert(d.decision_id.clone());
        let evicted = if durable.applied.len() > durable.applied_cap { durable.applied.pop_front() } else { None };
        if let Some(old) = &evicted {
            durable.applied_set.remove(old);
        }
        let undo_applied = |durable: &mut Durable| {
            durable.applied.pop_back();
            durable.applied_set.remove(&d.decision_id);
            if let Some(old) = evicted.clone() {
                durable.applied_set.insert(old.clone());
                durable.applied.push_front(old);
            }
        };

        if let Some(existing) = covering {
            // Not a change filters see: the file is written at the current version.
            let version = durable.version;
            if let Err(e) = self.save_revocations(&durable, version) {
                undo_applied(&mut durable);
                return Err(e);
            }
            return Ok(DecisionOutcome::AlreadyCovered(existing));
        }

        let revocation = Revocation {
            id: random_id()?,
            kind: req.kind,
            value: req.value.clone(),
            reason: req.reason.clone(),
            created_unix_ms: now_ms,
            expires_unix_ms: expires,
            source: format!("decision:{}", d.decision_id),
        };
        durable.table.prune(now_ms);
        let previous = match durable.table.insert(revocation.clone(), now_ms) {
            Ok((_, previous)) => previous,
            Err(e) => {
                undo_applied(&mut durable);
                return Err(e.into());
            }
        };
        let version = durable.version.saturating_add(1);
        if let Err(e) = self.save_revocations(&durable, version) {
            durable.table.restore(req.kind, &req.value, previous);
            undo_applied(&mut durable);
            return Err(e);
        }
        durable.version = version;
        self.publish(&durable);
        Ok(DecisionOutcome::Revoked(revocation))
    }
}

/// `rv-` and 16 random hex digits.
fn random_id() -> Result<String, StateError> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(StateError::Random)?;
    Ok(format!("rv-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    // A clock before 1970 is a broken host; 0 keeps revocations in force rather than failing.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
