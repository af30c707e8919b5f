use std::time::Instant;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::client::{Enforcer, HttpResponse};
use crate::state::LiveState;
use crate::store::EventStore;
use crate::store::tests::TempDir;

const DOC_V1: &str = r#"{"version": "v1", "rules": [{"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}}]}"#;
const DOC_V2: &str = r#"{"version": "v2", "rules": [
    {"id": "r", "effect": "deny", "http": {"methods": ["DELETE"]}},
    {"id": "s", "effect": "deny", "http": {"methods": ["PUT"]}}]}"#;

struct Running {
    client: Enforcer,
    live: LiveState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

async fn start(name: &str) -> Running {
    let dir = TempDir::new(name);
    let (store, _) = EventStore::open(&dir.0, 100).unwrap();
    let (live, _) = LiveState::open(&dir.0).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = crate::auth::AdminToken::random().unwrap();
    let server = tokio::spawn(crate::api::serve(listener, store, live.clone(), admin.clone(), async move {
        let _ = stopped.await;
    }));
    let client = Enforcer::parse(&format!("http://{addr}")).unwrap().with_admin_token(Some(admin));
    Running { client, live, stop: Some(stop), server, _dir: dir }
}

impl Running {
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let r: HttpResponse = self.client.request(method, path, body.map(str::as_bytes)).await.unwrap();
        (r.status, serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&r.body))))
    }
}

fn deny_event(id: &str, revoke: Value, identity: Value) -> String {
    let mut e = json!({
        "decision_id": id,
        "time_unix_ms": 1_718_000_000_000u64,
        "policy_version": "demo-1",
        "rule": "block-card-dump",
        "action": "deny",
        "status": 403,
        "mode": "enforce",
        "reason": "five card numbers",
        "identity": identity,
        "request": {"method": "GET", "authority": "crm.local", "path": "/api/customers"},
        "worker": "node/0"
    });
    if !revoke.is_null() {
        e["revoke"] = revoke;
    }
    e.to_string() + "\n"
}

#[tokio::test]
async fn policy_push_get_and_rejection() {
    let s = start("live-policy").await;
    assert_eq!(s.call("GET", "/v1/policy", None).await, (404, json!({"error": "no policy installed"})));

    let (status, body) = s.call("PUT", "/v1/policy", Some(DOC_V1)).await;
    assert_eq!((status, body), (200, json!({"generation": 1, "version": 1, "policy_version": "v1", "rules": 1})));
    let (status, body) = s.call("GET", "/v1/policy", None).await;
    assert_eq!(status, 200);
    assert_eq!((body["generation"].as_u64(), body["policy_version"].as_str()), (Some(1), Some("v1")));
    assert_eq!(body["policy"], serde_json::from_str::<Value>(DOC_V1).unwrap());

    let (status, body) = s.call("PUT", "/v1/policy", Some(r#"{"version":"x","rules":[{"id":"r","effect":"maybe"}]}"#)).await;
    assert_eq!(status, 400);
    assert_eq!(body["path"], "$.rules[0].effect");
    assert!(body["error"].as_str().unwrap().starts_with("$.rules[0].effect: "), "{body}");
    let (status, body) = s.call("PUT", "/v1/policy", Some("{nope")).await;
    assert_eq!(status, 400);
    assert!(body["path"].as_str().unwrap().starts_with('$'), "{body}");

    let (_, status) = s.call("GET", "/v1/status", None).await;
    assert_eq!(
        status,
        json!({"version": 1, "policy_generation": 1, "policy_version": "v1", "policy_push_rejected": 2,
               "revocations_active": 0, "events_received": 0, "decision_revocations_failed": 0})
    );

    // Over the cap: 413, counted, nothing changes.
    let huge = format!("{{\"version\":\"big\",\"rules\":[],\"x\":\"{}\"}}", "a".repeat(crate::policy_store::MAX_POLICY_BYTES));
    let r = s.client.request("PUT", "/v1/policy", Some(huge.as_bytes())).await.unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(s.live.policy_push_rejected(), 3);
    assert_eq!(s.live.snapshot().version, 1);
}

#[tokio::test]
async fn revoke_list_and_lift() {
    let s = start("live-revoke").await;
    let (status, r) = s.call("POST", "/v1/revocations", Some(r#"{"kind":"user","value":"a/b c","reason":"test"}"#)).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!((r["kind"].as_str(), r["value"].as_str(), r["source"].as_str()), (Some("user"), Some("a/b c"), Some("cli")));
    assert!(r["expires_unix_ms"].is_null());
    let (status, again) =
        s.call("POST", "/v1/revocations", Some(r#"{"kind":"user","value":"a/b c","ttl_secs":60}"#)).await;
    assert_eq!(status, 200, "replacing is 200");
    assert_eq!(again["expires_unix_ms"].as_u64().unwrap() - again["created_unix_ms"].as_u64().unwrap(), 60_000);
    assert!(again.get("reason").is_none());
    // The list is ordered by creation time in milliseconds (ties by random id): create the next
    // one in a later millisecond so the expected order is the only one.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.call("POST", "/v1/revocations", Some(r#"{"kind":"session","value":"s-1"}"#)).await;

    let (_, list) = s.call("GET", "/v1/revocations", None).await;
    let values: Vec<&str> = list["revocations"].as_array().unwrap().iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["a/b c", "s-1"]);

    for (body, field) in [
        (r#"{"kind":"tenant","value":"x"}"#, "kind"),
        (r#"{"kind":"user","value":""}"#, "value"),
        (r#"{"kind":"user","value":"x","ttl_secs":0}"#, "ttl_secs"),
    ] {
        let (status, b) = s.call("POST", "/v1/revocations", Some(body)).await;
        assert_eq!(status, 400, "{body}");
        assert!(b["error"].as_str().unwrap().starts_with(&format!("{field}: ")), "{b}");
    }

    let (status, b) = s.call("DELETE", "/v1/revocations/user/a%2Fb%20c", None).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["removed"]["id"], again["id"]);
    let (status, b) = s.call("DELETE", "/v1/revocations/user/a%2Fb%20c", None).await;
    assert_eq!(status, 404);
    assert!(b["error"].as_str().unwrap().contains("not revoked"));
    let (status, _) = s.call("DELETE", "/v1/revocations/tenant/x", None).await;
    assert_eq!(status, 400);
    assert_eq!(s.live.snapshot().version, 4);
}

#[tokio::test]
async fn the_long_poll_answers_at_once_on_a_new_version_and_wakes_on_a_revoke() {
    let s = start("live-poll").await;
    s.call("PUT", "/v1/policy", Some(DOC_V1)).await;

    // Behind: answers at once with the whole state.
    let (_, b) = s.call("GET", "/v1/state", None).await;
    assert_eq!((b["version"].as_u64(), b["policy_generation"].as_u64()), (Some(1), Some(1)));
    assert_eq!(b["policy"]["version"], "v1");
    assert_eq!(b["revocations"], json!([]));
    assert!(b["now_unix_ms"].as_u64().unwrap() > 0);

    // Up to date and nothing changes: waits wait_ms, then the same version without the policy.
    let t = Instant::now();
    let (_, b) = s.call("GET", "/v1/state?version=1&policy_generation=1&wait_ms=300", None).await;
    assert!(t.elapsed().as_millis() >= 290, "{:?}", t.elapsed());
    assert_eq!(b["version"], 1);
    assert!(b.get("policy").is_none(), "{b}");

    // A revoke while waiting wakes the poll well before its wait is over.
    let client = s.client.clone();
    let poll = tokio::spawn(async move {
        let t = Instant::now();
        let r = client.request("GET", "/v1/state?version=1&policy_generation=1&wait_ms=20000", None).await.unwrap();
        (t.elapsed(), serde_json::from_slice::<Value>(&r.body).unwrap())
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.call("POST", "/v1/revocations", Some(r#"{"kind":"agent","value":"rogue"}"#)).await;
    let (took, b) = poll.await.unwrap();
    assert!(took.as_millis() < 5_000, "{took:?}");
    assert_eq!(b["version"], 2);
    assert!(b.get("policy").is_none(), "the generation did not change");
    assert_eq!(b["revocations"][0]["value"], "rogue");

    // A push wakes it too and carries the new document.
    let client = s.client.clone();
    let poll = tokio::spawn(async move {
        let r = client.request("GET", "/v1/state?version=2&policy_generation=1&wait_ms=20000", None).await.unwrap();
        serde_json::from_slice::<Value>(&r.body).unwrap()
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.call("PUT", "/v1/policy", Some(DOC_V2)).await;
    let b = poll.await.unwrap();
    assert_eq!((b["version"].as_u64(), b["policy_generation"].as_u64()), (Some(3), Some(2)));
    assert_eq!(b["policy"]["version"], "v2");

    // A caller ahead of the enforcer waits too, rather than polling in a loop.
    let t = Instant::now();
    let (_, b) = s.call("GET", "/v1/state?version=99&policy_generation=2&wait_ms=200", None).await;
    assert!(t.elapsed().as_millis() >= 190, "{:?}", t.elapsed());
    assert_eq!(b["version"], 3);

    let (status, b) = s.call("GET", "/v1/state?verison=1", None).await;
    assert_eq!(status, 400, "{b}");
}

#[tokio::test]
async fn without_a_policy_the_state_has_generation_0_and_no_policy() {
    let s = start("live-nopolicy").await;
    let (_, b) = s.call("GET", "/v1/state?version=0&wait_ms=0", None).await;
    assert_eq!((b["version"].as_u64(), b["policy_generation"].as_u64()), (Some(0), Some(0)));
    assert!(b.get("policy").is_none());
}

#[tokio::test]
async fn shutdown_cuts_a_long_poll_short() {
    let mut s = start("live-shutdown").await;
    let client = s.client.clone();
    let poll = tokio::spawn(async move { client.request("GET", "/v1/state?wait_ms=30000", None).await.unwrap().status });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let t = Instant::now();
    s.stop.take().unwrap().send(()).unwrap();
    assert_eq!(poll.await.unwrap(), 200);
    (&mut s.server).await.unwrap().unwrap();
    assert!(t.elapsed().as_secs() < 5);
}

#[tokio::test]
async fn an_enforced_deny_that_revokes_records_it_once() {
    let s = start("live-event").await;
    let identity = json!({"agent": "triage-bot", "user": "alice", "session": "s-9"});
    let batch = deny_event("d-1", json!({"principal": "session", "ttl_secs": 300}), identity.clone())
        + &deny_event("d-2", json!({"principal": "trace"}), identity.clone())
        + &deny_event("d-3", Value::Null, identity.clone());
    let (status, b) = s.call("POST", "/v1/events", Some(&batch)).await;
    assert_eq!((status, b["accepted"].as_u64()), (200, Some(3)));
    let (_, list) = s.call("GET", "/v1/revocations", None).await;
    let list = list["revocations"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "no trace id in the event: nothing to revoke; d-3 does not revoke");
    assert_eq!(
        (list[0]["kind"].as_str(), list[0]["value"].as_str(), list[0]["source"].as_str(), list[0]["reason"].as_str()),
        (Some("session"), Some("s-9"), Some("decision:d-1"), Some("rule block-card-dump"))
    );
    assert_eq!(s.live.snapshot().version, 1);

    // The same batch again: stored again (the log is the filter's word), revoked once.
    let (status, _) = s.call("POST", "/v1/events", Some(&batch)).await;
    assert_eq!(status, 200);
    assert_eq!(s.live.snapshot().version, 1);
    assert_eq!(s.live.snapshot().revocations.len(), 1);

    // Shadow mode and allows never revoke.
    let shadow = deny_event("d-4", json!({"principal": "user"}), identity.clone()).replace("\"enforce\"", "\"shadow\"");
    let allow = deny_event("d-5", json!({"principal": "user"}), identity).replace("\"deny\"", "\"allow\"");
    s.call("POST", "/v1/events", Some(&(shadow + &allow))).await;
    assert_eq!(s.live.snapshot().version, 1);
    let (_, status) = s.call("GET", "/v1/status", None).await;
    assert_eq!((status["events_received"].as_u64(), status["revocations_active"].as_u64()), (Some(8), Some(1)));
}
