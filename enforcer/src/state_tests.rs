use super::*;
use crate::store::tests::TempDir;

const DOC_V1: &str = r#"{"version": "v1", "rules": [{"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}}]}"#;
const DOC_V2: &str = r#"{"version": "v2", "rules": [
    {"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}},
    {"id": "s", "effect": "deny", "http": {"methods": ["PUT"]}}]}"#;
const DOC_BAD: &str = r#"{"version": "v3", "rules": [{"id": "r", "effect": "maybe"}]}"#;

fn req(kind: RevocationKind, value: &str, ttl: Option<u64>) -> RevokeRequest {
    RevokeRequest::new(kind, value, ttl, None).unwrap()
}

fn decision(id: &str, kind: RevocationKind, value: &str, ttl: Option<u64>) -> DecisionRevoke {
    DecisionRevoke { decision_id: id.into(), rule: "cards".into(), kind, value: value.into(), ttl_secs: ttl }
}

fn files(dir: &Path) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (std::fs::read(dir.join(policy_store::POLICY_FILE)).ok(), std::fs::read(dir.join(REVOCATIONS_FILE)).ok())
}

#[tokio::test]
async fn policy_revocations_and_version_survive_a_restart() {
    let dir = TempDir::new("state-restart");
    let (state, rec) = LiveState::open(&dir.0).unwrap();
    assert_eq!((rec.version, rec.policy.clone(), rec.revocations_active), (0, None, 0));
    assert_eq!(state.snapshot().generation(), 0);

    let installed = state.install_policy(DOC_V1).await.unwrap();
    assert_eq!(installed, PolicyInstalled { generation: 1, version: 1, label: "v1".into(), rules: 1 });
    let installed = state.install_policy(DOC_V2).await.unwrap();
    assert_eq!((installed.generation, installed.version, installed.rules), (2, 2, 2));
    let (alice, outcome) = state.revoke(req(RevocationKind::User, "alice", None)).await.unwrap();
    assert_eq!(outcome, RevokeOutcome::Created);
    assert!(alice.id.starts_with("rv-") && alice.id.len() == 19, "{}", alice.id);
    assert_eq!(alice.source, "cli");
    state.revoke(req(RevocationKind::Session, "s-1", Some(3_600))).await.unwrap();
    state.revoke(req(RevocationKind::Trace, "t-1", None)).await.unwrap();
    let lifted = state.unrevoke(RevocationKind::Trace, "t-1".into()).await.unwrap();
    assert_eq!(lifted.value, "t-1");
    let before = state.snapshot();
    assert_eq!(before.version, 6);
    drop(state);

    let (state, rec) = LiveState::open(&dir.0).unwrap();
    assert_eq!((rec.version, rec.policy, rec.revocations_active), (6, Some((2, "v2".to_owned())), 2));
    assert_eq!(*state.snapshot(), *before);
    let now = now_unix_ms();
    // Which ones, not in which order: two revocations made in the same millisecond have no order.
    let mut active: Vec<_> = state.snapshot().active_revocations(now).map(|r| (r.value.clone(), r.kind)).collect();
    active.sort();
    assert_eq!(active, [("alice".to_owned(), RevocationKind::User), ("s-1".to_owned(), RevocationKind::Session)]);

    // The version keeps climbing from where it was, whichever file the next change writes.
    assert_eq!(state.install_policy(DOC_V1).await.unwrap().version, 7);
    drop(state);
    let (state, rec) = LiveState::open(&dir.0).unwrap();
    assert_eq!(rec.version, 7, "policy.json holds the newest stamp");
    assert_eq!(state.snapshot().generation(), 3);
    state.unrevoke(RevocationKind::User, "alice".into()).await.unwrap();
    drop(state);
    assert_eq!(LiveState::open(&dir.0).unwrap().1.version, 8);
}

#[tokio::test]
async fn a_rejected_push_changes_nothing_but_the_counter() {
    let dir = TempDir::new("state-reject");
    let (state, _) = LiveState::open(&dir.0).unwrap();
    state.install_policy(DOC_V1).await.unwrap();
    let mut rx = state.subscribe();
    rx.borrow_and_update();
    let (snapshot, on_disk) = (state.snapshot(), files(&dir.0));

    let err = state.install_policy(DOC_BAD).await.unwrap_err();
    let StateError::InvalidPolicy(e) = &err else { panic!("{err}") };
    assert_eq!(e.path(), "$.rules[0].effect");
    assert!(state.install_policy("not json").await.is_err());
    assert_eq!(state.policy_push_rejected(), 2);
    assert_eq!(state.snapshot(), snapshot);
    assert_eq!(files(&dir.0), on_disk);
    assert!(!rx.has_changed().unwrap(), "long polls are not woken");
}

#[test]
fn seeding_installs_only_when_no_policy_is_stored() {
    let dir = TempDir::new("state-seed");
    let (state, _) = LiveState::open(&dir.0).unwrap();
    assert!(matches!(state.seed_policy(DOC_BAD), Err(StateError::InvalidPolicy(_))));
    assert_eq!(state.snapshot().version, 0);
    let seeded = state.seed_policy(DOC_V1).unwrap().unwrap();
    assert_eq!((seeded.generation, seeded.version, seeded.label.as_str()), (1, 1, "v1"));
    drop(state);
    let (state, _) = LiveState::open(&dir.0).unwrap();
    assert_eq!(state.seed_policy(DOC_V2).unwrap(), None, "a stored policy wins over the seed");
    assert_eq!(state.snapshot().policy.as_ref().map(|p| p.label.as_str()), Some("v1"));
    // An invalid seed is refused even when it would not be used: the operator asked for it.
    assert!(state.seed_policy(DOC_BAD).is_err());
}

#[tokio::test]
async fn damaged_state_files_refuse_to_start() {
    let dir = TempDir::new("state-corrupt");
    let (state, _) = LiveState::open(&dir.0).unwrap();
    state.revoke(req(RevocationKind::User, "alice", None)).await.unwrap();
    state.install_policy(DOC_V1).await.unwrap();
    drop(state);
    let path = dir.0.join(REVOCATIONS_FILE);
    let whole = std::fs::read_to_string(&path).unwrap();

    // A temporary file left by a crash mid-write is not the state: the old file is.
    std::fs::write(policy_store::temp_path(&dir.0, REVOCATIONS_FILE), b"{\"half").unwrap();
    assert_eq!(LiveState::open(&dir.0).unwrap().1.revocations_active, 1);

    let dup = {
        let mut v: serde_json::Value = serde_json::from_str(&whole).unwrap();
        let first = v["revocations"][0].clone();
        v["revocations"].as_array_mut().unwrap().push(first);
        v.to_string()
    };
    for (name, text) in [
        ("torn", whole.get(..whole.len() - 10).unwrap().to_owned()),
        ("zeros", "\0".repeat(whole.len())),
        ("unknown kind", whole.replace("\"kind\":\"user\"", "\"kind\":\"tenant\"")),
        ("principal twice", dup),
        ("other format", whole.replace("\"format\":1", "\"format\":9")),
    ] {
        std::fs::write(&path, &text).unwrap();
        let err = LiveState::open(&dir.0).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Persist(PersistError::Corrupt { .. })), "{name}: {msg}");
        assert!(msg.contains(&path.display().to_string()) && msg.contains("will not start"), "{name}: {msg}");
    }
    std::fs::write(&path, &whole).unwrap();
    std::fs::write(dir.0.join(policy_store::POLICY_FILE), b"{").unwrap();
    assert!(LiveState::open(&dir.0).is_err(), "a corrupt policy file refuses too");
}

#[tokio::test]
async fn a_decision_revokes_once_and_never_shortens() {
    let dir = TempDir::new("state-decision");
    let (state, _) = LiveState::open(&dir.0).unwrap();
    let out = state.revoke_for_decision(decision("d-1", RevocationKind::Session, "s-1", Some(300))).await.unwrap();
    let DecisionOutcome::Revoked(r) = out else { panic!("{out:?}") };
    assert_eq!((r.source.as_str(), r.reason.as_deref()), ("decision:d-1", Some("rule cards")));
    assert_eq!(r.expires_unix_ms.map(|e| e - r.created_unix_ms), Some(300_000));
    assert_eq!(state.snapshot().version, 1);

    // The same batch again: nothing, not even a version bump; also after a restart.
    let again = state.revoke_for_decision(decision("d-1", RevocationKind::Session, "s-1", Some(300))).await.unwrap();
    assert_eq!(again, DecisionOutcome::AlreadyApplied);
    drop(state);
    let (state, _) = LiveState::open(&dir.0).unwrap();
    let again = state.revoke_for_decision(decision("d-1", RevocationKind::Session, "s-1", Some(300))).await.unwrap();
    assert_eq!(again, DecisionOutcome::AlreadyApplied);
    // Even once lifted, the old decision does not come back.
    state.unrevoke(RevocationKind::Session, "s-1".into()).await.unwrap();
    let again = state.revoke_for_decision(decision("d-1", RevocationKind::Session, "s-1", Some(300))).await.unwrap();
    assert_eq!(again, DecisionOutcome::AlreadyApplied);
    assert_eq!(state.snapshot().version, 2);

    // An operator's revocation until lifted is not shortened by a rule's 60 s.
    state.revoke(req(RevocationKind::User, "alice", None)).await.unwrap();
    let out = state.revoke_for_decision(decision("d-2", RevocationKind::User, "alice", Some(60))).await.unwrap();
    assert!(matches!(out, DecisionOutcome::AlreadyCovered(ref r) if r.source == "cli"), "{out:?}");
    assert_eq!(state.snapshot().version, 3);
    // A longer one extends.
    state.revoke(req(RevocationKind::Agent, "bot", Some(10))).await.unwrap();
    let out = state.revoke_for_decision(decision("d-3", RevocationKind::Agent, "bot", None)).await.unwrap();
    assert!(matches!(out, DecisionOutcome::Revoked(ref r) if r.expires_unix_ms.is_none()), "{out:?}");
    assert_eq!(state.snapshot().version, 5);

    let bad = state.revoke_for_decision(decision("d-4", RevocationKind::User, "", None)).await.unwrap_err();
    assert!(matches!(bad, StateError::Revocation(RevocationError::InvalidField { field: "value", .. })), "{bad}");
    assert_eq!(state.decision_revocations_failed(), 1);
}

#[test]
fn applied_decisions_are_bounded() {
    let dir = TempDir::new("state-applied");
    let (state, _) = LiveState::open(&dir.0).unwrap();
    state.inner.revoke_blocking(req(RevocationKind::User, "u", None), "cli".into(), 1).unwrap();
    state.inner.lock().unwrap().applied_cap = 50;
    // Every one of these is covered by the revocation above, so only the applied list grows.
    for i in 0..55 {
        let out = state.inner.decision_blocking(decision(&format!("d-{i}"), RevocationKind::User, "u", Some(1)), 2).unwrap();
        assert!(matches!(out, DecisionOutcome::AlreadyCovered(_)));
    }
    let durable = state.inner.lock().unwrap();
    assert_eq!((durable.applied.len(), durable.applied_set.len()), (50, 50));
    assert_eq!(durable.applied.front().map(String::as_str), Some("d-5"));
    assert!(!durable.applied_set.contains("d-4") && durable.applied_set.contains("d-54"));
    drop(durable);
    // What is remembered is what was written.
    drop(state);
    let (state, _) = LiveState::open(&dir.0).unwrap();
    assert_eq!(state.inner.lock().unwrap().applied.len(), 50);
}

#[test]
fn expired_revocations_leave_answers_without_a_version_bump() {
    let dir = TempDir::new("state-expiry");
    let (state, _) = LiveState::open(&dir.0).unwrap();
    let (r, _) = state.inner.revoke_blocking(req(RevocationKind::User, "u", Some(1)), "cli".into(), 1_000).unwrap();
    assert_eq!(r.expires_unix_ms, Some(2_000));
    let snapshot = state.snapshot();
    assert_eq!(snapshot.active_revocations(1_999).count(), 1);
    assert_eq!(snapshot.active_revocations(2_000).count(), 0);
    // Revoking it again once expired is a new revocation, and the expired entry is pruned.
    let (_, outcome) = state.inner.revoke_blocking(req(RevocationKind::User, "u", None), "cli".into(), 3_000).unwrap();
    assert_eq!(outcome, RevokeOutcome::Created);
    assert_eq!(state.snapshot().revocations.len(), 1);
    assert_eq!(state.snapshot().version, 2);
}

#[tokio::test]
async fn a_change_wakes_subscribers_after_the_snapshot_holds_it() {
    let dir = TempDir::new("state-watch");
    let (state, _) = LiveState::open(&dir.0).unwrap();
    let mut rx = state.subscribe();
    let reader = state.clone();
    let waiter = tokio::spawn(async move {
        let v = *rx.wait_for(|&v| v != 0).await.unwrap();
        (v, reader.snapshot().active_revocations(now_unix_ms()).count())
    });
    state.revoke(req(RevocationKind::Agent, "rogue", None)).await.unwrap();
    assert_eq!(waiter.await.unwrap(), (1, 1));
}
