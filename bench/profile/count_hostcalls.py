#!/usr/bin/env python3
"""Counts the host calls Interlock makes per request, by kind, in real Envoy (bench/PROFILE.md,
Session 6). Builds a copy of the committed filter (git archive HEAD, so the worktree is untouched)
in which every raw ABI call of filter/src/host.rs, and the SDK calls host.rs makes on the data
path and on the root's tick, also increments a counter `interlock.hostcalls.<kind>` (the counting
itself is one more host call, not counted); then serves the bench's `rest` (and `mcp`) mix with it
for SECONDS and divides each counter by the requests served. Tick-driven calls (event POSTs, the
live-state poll) are included, amortized over the requests.
usage: count_hostcalls.py [SECONDS] [mix ...]"""
import sys, re, subprocess, os, shutil
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
SRC, TGT = Path("/tmp/hccount"), Path("/tmp/hccount-target")
shutil.rmtree(SRC, ignore_errors=True); SRC.mkdir(parents=True)
subprocess.run(f"git -C {ROOT} archive HEAD | tar -x -C {SRC}", shell=True, check=True)
p = SRC / "filter/src/host.rs"; s = p.read_text()
COUNT = '''
    /// Session 6 count build only: one counter per host call kind.
    pub(super) fn count(name: &'static str) {
        thread_local! { static IDS: std::cell::RefCell<Vec<(&'static str, u32)>> = const { std::cell::RefCell::new(Vec::new()) }; }
        IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            let id = match ids.iter().find(|(n, _)| *n == name) {
                Some((_, id)) => *id,
                None => {
                    let id = proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, &format!("interlock.hostcalls.{name}")).unwrap_or(0);
                    ids.push((name, id));
                    id
                }
            };
            unsafe { proxy_increment_metric(id, 1) };
        });
    }

    fn path_kind(path: &[u8]) -> &'static str {
        if path.starts_with(b"metadata") { "get_property.jwt_payload" }
        else if path == b"source\\0address" { "get_property.source_address" }
        else if path == b"upstream\\0address" { "get_property.upstream_address" }
        else if path.starts_with(b"connection") { "get_property.peer_certificate" }
        else { "get_property.other" }
    }

    fn map_kind(map: u32, op: &'static str) -> &'static str {
        match (map, op) {
            (0, "get") => "get_header.request", (2, "get") => "get_header.response", (_, "get") => "get_header.other",
            (0, "replace") => "set_header.request", (2, "replace") => "set_header.response", (_, "replace") => "set_header.other",
            (0, "remove") => "remove_header.request", (2, "remove") => "remove_header.response", _ => "remove_header.other",
        }
    }
'''
s = s.replace("    const OK: u32 = 0;\n", COUNT + "\n    const OK: u32 = 0;\n", 1)
inserts = {
    "pub fn log(": 'count("log");', "pub fn now_ns(": 'count("clock");', "pub fn map_pairs(": 'count(if map == 0 { "get_headers.request" } else { "get_headers.other" });',
    "pub fn get_map_value(": 'count(map_kind(map, "get"));', "pub fn replace_map_value(": 'count(map_kind(map, "replace"));',
    "pub fn remove_map_value(": 'count(map_kind(map, "remove"));', "pub fn get_property_joined(": "count(path_kind(path));",
    "pub fn set_property(": 'count("set_property");', "pub fn get_shared_data(": 'count("get_shared_data");',
    "pub fn set_shared_data(": 'count("set_shared_data");', "pub fn get_buffer(": 'count("get_buffer");', "pub fn set_buffer(": 'count("set_buffer");',
    "pub fn send_local_response(": 'count("send_local_response");', "pub fn increment_metric(": 'count("increment_metric");',
}
for sig, line in inserts.items():
    i = s.index("    " + sig); j = s.index("{\n", i) + 2
    s = s[:j] + "        " + line + "\n" + s[j:]
for sig, kind in {"pub fn set_tick_period(": "set_tick_period", "pub fn post(": "dispatch_http_call", "pub fn get(": "dispatch_http_call", "pub fn record(": "record_metric", "pub fn debug_enabled(": "get_log_level"}.items():
    i = s.index("\n" + sig); j = s.index("{\n", i) + 2
    s = s[:j] + f'    abi::count("{kind}");\n' + s[j:]
p.write_text(s)
r = subprocess.run(["nice", "cargo", "build", "--release", "--target", "wasm32-wasip1", "-p", "interlock-filter"], cwd=SRC, env={**os.environ, "CARGO_TARGET_DIR": str(TGT)}, capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(r.stderr[-3000:])
wasm = TGT / "wasm32-wasip1/release/interlock_filter.wasm"
sys.path.insert(0, str(ROOT / "scripts"))
import bench as b
import harness
b.LISTENER, b.ADMIN, b.ENFORCER = "127.0.0.1:28000", "127.0.0.1:28001", "127.0.0.1:28090"
OUT = Path("/tmp/prof/count"); OUT.mkdir(parents=True, exist_ok=True)
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3
mixes = sys.argv[2:] or ["rest"]
y = (b.BENCH_CONFIGS / "interlock.yaml").read_text().replace("18000", "28000").replace("18001", "28001").replace("18090", "28090")
y = y.replace("filename: target/wasm32-wasip1/release/interlock_filter.wasm", f"filename: {wasm}")
y = y.replace("filename: envoy-config/", f"filename: {ROOT}/envoy-config/")
cfg = OUT / "count.yaml"; cfg.write_text(y)
logs, enf, scripts = harness.start(b, OUT, "count-")
try:
    for m in mixes:
        e = b.Envoy(cfg, 1, b.ENVOY_CORE, logs / f"count-{m}.log")
        try:
            b.run_wrk(scripts[m], 1, 16)
            def snap():
                _, body = b.http("GET", f"http://{b.ADMIN}/stats?filter=interlock.hostcalls")
                calls = {l.split(": ")[0].removeprefix("interlock.hostcalls."): int(l.split(": ")[1]) for l in body.decode().splitlines() if ": " in l}
                return calls, e.counters()
            c0, n0 = snap()
            b.run_wrk(scripts[m], seconds, 16)
            c1, n1 = snap()
            served = n1.get("downstream_rq_completed", 0) - n0.get("downstream_rq_completed", 0)
            ok = n1.get("downstream_rq_2xx", 0) - n0.get("downstream_rq_2xx", 0)
            print(f"\n{m}: {served} requests served, {ok} answered 2xx; host calls per request:")
            total = 0.0
            for k in sorted(c1):
                per = (c1[k] - c0.get(k, 0)) / max(served, 1)
                total += per
                print(f"  {k:<34} {per:8.3f}")
            print(f"  {'total':<34} {total:8.3f}")
        finally:
            e.stop()
finally:
    b.stop_helper(enf)
