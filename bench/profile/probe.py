#!/usr/bin/env python3
"""What each proxy-wasm host call kind costs in real Envoy (bench/PROFILE.md, Session 6).
usage: probe.py ROUNDS SECONDS N call ...   e.g. probe.py 7 3 20 clock headers jwt_payload
Runs bench/hostcall-probe (target/wasm32-wasip1/release/interlock_bench_hostcall_probe.wasm) behind
the bench's jwt_authn (the `interlock` bench configuration with the probe in Interlock's place),
once as `none 0` and once per call as `<call> N`, alternated round by round like run.py (Envoy on
core 0, wrk on core 1, the `rest` mix, Envoy CPU/request from /proc). Per call and round, the slope
(call - none) / N is that call's cost; the table gives its median over the rounds, with the
quartiles. Names: `jwt` (jwt_authn alone) and `minimal` (minimal-wasm behind jwt_authn) may be
given as calls too, as references (reported as CPU/request, not a slope). `call@K` repeats that
call K times instead of N (e.g. `set_header@1`: a call whose first use has a one-time cost).
`name=file.wasm` runs another filter (e.g. a bench/callback-probe build) in the probe's place,
reported like `jwt` as CPU/request and its difference to `none`. `flow:WORDS` runs the probe with
`none 0` and the flow words (comma-separated: `req`, `resp`, `nocl`; bench/hostcall-probe), i.e.
holding bodies as Interlock does and nothing else; `interlock` runs the committed filter. `MIX=mcp`
(or `llm16k`) sends that mix instead of `rest`, and `jwt-buffer` is then the reference. The probe
is built here (cargo, release, wasm32-wasip1) before the run."""
import sys, statistics, os, re, subprocess
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench as b
import harness
b.LISTENER, b.ADMIN, b.ENFORCER = "127.0.0.1:28000", "127.0.0.1:28001", "127.0.0.1:28090"
OUT = Path(os.environ.get("PROFILE_OUT", "/tmp/prof/probe")); OUT.mkdir(parents=True, exist_ok=True)
PROBE = ROOT / "target/wasm32-wasip1/release/interlock_bench_hostcall_probe.wasm"
def port(text):
    return text.replace("18000", "28000").replace("18001", "28001").replace("18090", "28090")
rounds, seconds, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
calls = sys.argv[4:]
MIX = os.environ.get("MIX", "rest")
subprocess.run(["nice", "cargo", "build", "-q", "--release", "--target", "wasm32-wasip1", "-p", "interlock-bench-hostcall-probe"], cwd=ROOT, check=True)
def count(name):
    call, _, k = name.partition("@")
    return call, int(k) if k else n
template = port((b.BENCH_CONFIGS / "interlock.yaml").read_text())
template = template.replace("filename: target/wasm32-wasip1/release/interlock_filter.wasm", f"filename: {PROBE}")
block = re.compile(r"( *)# BEGIN interlock plugin configuration.*?# END interlock plugin configuration\n", re.S)
assert block.search(template)
specs = []
for name in ["none"] + [c for c in calls if c != "none"]:
    label = name.split("=", 1)[0].replace(":", "-").replace(",", "-")
    if name == "interlock":
        y = port((b.BENCH_CONFIGS / "interlock.yaml").read_text())
    elif name == "jwt-buffer":
        y = port((b.BENCH_CONFIGS / "jwt-buffer.yaml").read_text())
    elif name.startswith("flow:"):
        conf = "none 0 " + " ".join(name[len("flow:"):].split(","))
        y = block.sub(lambda m: f'{m.group(1)}value: "{conf}"\n', template)
    elif name in ("jwt", "minimal"):
        src = "jwt" if name == "jwt" else "minimal-wasm"
        y = port((b.BENCH_CONFIGS / f"{src}.yaml").read_text())
        if name == "minimal":
            # minimal-wasm behind the same jwt_authn, so its difference to `none` is the probe's.
            jwt = port((b.BENCH_CONFIGS / "jwt.yaml").read_text())
            start = jwt.index("          - name: envoy.filters.http.jwt_authn")
            end = jwt.index("          - name: envoy.filters.http.router")
            y = y.replace("          http_filters:\n", "          http_filters:\n" + jwt[start:end], 1)
    elif "=" in name:
        _, wasm = name.split("=", 1)
        y = block.sub(lambda m: f'{m.group(1)}value: "none 0"\n', template.replace(f"filename: {PROBE}", f"filename: {wasm}"))
        assert wasm in y
    else:
        call, k = count(name)
        conf = "none 0" if name == "none" else f"{call} {k}"
        y = block.sub(lambda m: f'{m.group(1)}value: "{conf}"\n', template)
    y = y.replace("filename: target/", f"filename: {ROOT}/target/").replace("filename: envoy-config/", f"filename: {ROOT}/envoy-config/")
    p = OUT / f"{label}.yaml"; p.write_text(y)
    specs.append((name, p))
logs, enf, scripts = harness.start(b, OUT, "probe-")
res = {}
try:
    for r in range(rounds):
        order = specs[r % len(specs):] + specs[:r % len(specs)]
        for name, p in order:
            e = b.Envoy(p, 1, b.ENVOY_CORE, logs / f"{name.split('=', 1)[0]}-{r}.log")
            try:
                b.run_wrk(scripts[MIX], 1, 16)
                c0, n0 = e.cpu_ticks(), e.counters()
                w = b.run_wrk(scripts[MIX], seconds, 16)
                c1, n1 = e.cpu_ticks(), e.counters()
                served = n1.get("downstream_rq_completed", 0) - n0.get("downstream_rq_completed", 0)
                ok = n1.get("downstream_rq_2xx", 0) - n0.get("downstream_rq_2xx", 0)
                us = (c1 - c0) / b.CLK_TCK * 1e6 / max(served, 1)
                res.setdefault(name, []).append(us)
                not_ok = ""
                try:
                    _, body = b.http("GET", f"http://{b.ADMIN}/stats?filter=probe.not_ok")
                    not_ok = body.decode().strip().split(".")[-1].replace(": ", "=")
                except Exception:
                    pass
                print(f"r{r} {name.split('=', 1)[0]:<16} {served / (w['duration_us'] / 1e6):8.0f} rps ok={ok == served} {us:6.2f} us/req {not_ok}", flush=True)
            finally:
                e.stop()
finally:
    b.stop_helper(enf)
def q(v):
    v = sorted(v)
    return statistics.median(v), v[len(v) // 4], v[(3 * len(v)) // 4]
print(f"\n| call (× repeats) | CPU µs/req (median) | µs per call: median of per-round (call − none)/repeats | quartiles | per round |\n|---|--:|--:|--:|---|")
for name, _ in specs:
    v = res[name]
    if name in ("none", "jwt", "minimal", "interlock", "jwt-buffer") or "=" in name or name.startswith("flow:"):
        d = [x - y for x, y in zip(v, res["none"])]
        print(f"| {name.split('=', 1)[0]} | {statistics.median(v):.1f} | (vs none: {statistics.median(d):+.1f}) | | {' '.join(f'{x:.1f}' for x in v)} |")
        continue
    k = count(name)[1]
    s = [(x - y) / k for x, y in zip(v, res["none"])]
    m, lo, hi = q(s)
    print(f"| {name if '@' in name else f'{name}@{k}'} | {statistics.median(v):.1f} | {m:.2f} | {lo:.2f} … {hi:.2f} | {' '.join(f'{x:.2f}' for x in s)} |")
