"""Builds variants of the filter, each removing one piece of per-request work from
filter/src/http.rs, in a scratch worktree with its own target dir (bench/PROFILE.md).
usage: git worktree add /tmp/variant HEAD && python3 bench/profile/variants.py main early noevent ...
       -> /tmp/prof/wasm/<name>.wasm, then bench/profile/run.py to measure them side by side.
The patches are exact-text replacements: they assert when http.rs changed under them."""
import sys, subprocess, shutil, os
os.makedirs("/tmp/prof/wasm", exist_ok=True)

base = subprocess.run(["git", "-C", "/tmp/variant", "show", "HEAD:filter/src/http.rs"], capture_output=True, text=True, check=True).stdout
def rep(s, old, new):
    assert s.count(old) == 1, old
    return s.replace(old, new)
V = {}
V["main"] = lambda s: s
V["early"] = lambda s: rep(s, "        self.now_ms = host::now_ms();\n        let snapshot = {", "        if true { return Action::Continue; }\n        self.now_ms = host::now_ms();\n        let snapshot = {")
V["noevent"] = lambda s: rep(s, "        let upstream = if d.blocks()", "        if !d.blocks() { self.shared.metrics.borrow_mut().count_decision(outcome, &d.rule); return; }\n        let upstream = if d.blocks()")
V["noser"] = lambda s: rep(s, "        metrics.count_decision(outcome, &d.rule);\n", "        metrics.count_decision(outcome, &d.rule);\n        if !d.blocks() { std::hint::black_box(&event); return; }\n")
V["nopost"] = lambda s: rep(s, "        metrics.count_decision(outcome, &d.rule);\n", "        metrics.count_decision(outcome, &d.rule);\n        if !d.blocks() { std::hint::black_box(serde_json::to_string(&event).ok()); return; }\n")
V["nobucket"] = lambda s: rep(s, "        let checks = engine.rate_limit_checks(&eval);\n", "        if std::hint::black_box(true) { return eval; }\n        let checks = engine.rate_limit_checks(&eval);\n")
V["nostate"] = lambda s: rep(s, "        let d = &eval.decision;\n        let mode = if", "        if std::hint::black_box(true) { return; }\n        let d = &eval.decision;\n        let mode = if")
V["noidhdr"] = lambda s: rep(rep(s, "                let _ = host::set_request_header(\"x-interlock-decision-id\", &id);", ""), "        let _ = host::set_response_header(\"x-interlock-decision-id\", id);", "")
V["noresp"] = lambda s: rep(s, "        let Some(engine) = self.snapshot.as_ref().map(|s| Rc::clone(&s.engine)) else { return Action::Continue };\n        if !may_inspect_response(", "        if std::hint::black_box(true) { return Action::Continue; }\n        let Some(engine) = self.snapshot.as_ref().map(|s| Rc::clone(&s.engine)) else { return Action::Continue };\n        if !may_inspect_response(")
TL = "\nthread_local! { static EVAL: std::cell::RefCell<Option<Evaluation>> = const { std::cell::RefCell::new(None) }; static REQ: std::cell::RefCell<Option<HttpRequest>> = const { std::cell::RefCell::new(None) }; }\n"
V["noengine"] = lambda s: rep(s, "        match engine.on_request_headers_live(&req, &revocations, self.now_ms) {",
 "        let verdict = EVAL.with(|c| { if let Some(e) = c.borrow().as_ref() { return HeadersVerdict::Decided(e.clone()); } let v = engine.on_request_headers_live(&req, &revocations, self.now_ms); if let HeadersVerdict::Decided(e) = &v { *c.borrow_mut() = Some(e.clone()); } v });\n        match verdict {") + TL
V["noview"] = lambda s: rep(s, "        let req = match self.request_view(&engine, end_of_stream) {",
 "        let cached = REQ.with(|c| c.borrow().clone());\n        let req = match cached.map(Ok).unwrap_or_else(|| { let r = self.request_view(&engine, end_of_stream); if let Ok(r) = &r { REQ.with(|c| *c.borrow_mut() = Some(r.clone())); } r }) {") + TL
V["nojwt"] = lambda s: rep(s, "        let jwt = engine.jwt_identity();\n        let [jwt_agent, jwt_user, jwt_session] =\n            host::jwt_claims(&[\"metadata\", \"filter_metadata\", &jwt.metadata_namespace, &jwt.payload_key], [&jwt.agent_claim, &jwt.user_claim, &jwt.session_claim]);",
 "        let _ = engine.jwt_identity();\n        let (jwt_agent, jwt_user, jwt_session) = (Some(\"triage-bot\".to_owned()), Some(\"bench\".to_owned()), Some(\"bench-triage-bot\".to_owned()));")
for name in sys.argv[1:]:
    open("/tmp/variant/filter/src/http.rs", "w").write(V[name](base))
    r = subprocess.run(["nice", "cargo", "build", "--release", "--target", "wasm32-wasip1", "-p", "interlock-filter"], cwd="/tmp/variant", env={**__import__("os").environ, "CARGO_TARGET_DIR": "/tmp/variant-target"}, capture_output=True, text=True)
    if r.returncode != 0:
        print(name, "FAILED", r.stderr[-2000:]); continue
    shutil.copy("/tmp/variant-target/wasm32-wasip1/release/interlock_filter.wasm", f"/tmp/prof/wasm/{name}.wasm")
    print(name, "built", flush=True)
open("/tmp/variant/filter/src/http.rs", "w").write(base)
