#!/usr/bin/env python3
"""Side-by-side CPU/request of filter variants, with scripts/bench.py's harness, on private ports.
usage: run.py ROUNDS SECONDS name=wasm[:mixes] ...   (name 'jwt', 'jwt-buffer', 'minimal-wasm' = stock configs)"""
import sys, json, time, statistics, tempfile, subprocess, os
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench as b
import harness
b.LISTENER, b.ADMIN, b.ENFORCER = "127.0.0.1:28000", "127.0.0.1:28001", "127.0.0.1:28090"
OUT = Path(os.environ.get("PROFILE_OUT", "/tmp/prof/cfg")); OUT.mkdir(parents=True, exist_ok=True)
def port(text):
    return text.replace("18000", "28000").replace("18001", "28001").replace("18090", "28090")
rounds, seconds = int(sys.argv[1]), float(sys.argv[2])
specs = []
for a in sys.argv[3:]:
    name, _, rest = a.partition("=")
    wasm, _, mixes = rest.partition(":")
    mixes = mixes.split("+") if mixes else ["rest"]
    if wasm in ("jwt", "jwt-buffer", "minimal-wasm", "bare", "buffer"):
        y = port((b.BENCH_CONFIGS / f"{wasm}.yaml").read_text())
    else:
        y = port((b.BENCH_CONFIGS / "interlock.yaml").read_text()).replace("filename: target/wasm32-wasip1/release/interlock_filter.wasm", f"filename: {wasm}")
        assert wasm in y
    y = y.replace("filename: target/", f"filename: {ROOT}/target/").replace("filename: envoy-config/", f"filename: {ROOT}/envoy-config/")
    p = OUT / f"{name}.yaml"; p.write_text(y)
    specs.append((name, p, mixes))
logs, enf, scripts = harness.start(b, OUT, "prof-")
res = {}
try:
    for r in range(rounds):
        order = specs[r % len(specs):] + specs[:r % len(specs)]
        for name, p, mixes in order:
            e = b.Envoy(p, 1, b.ENVOY_CORE, logs / f"{name}-{r}.log")
            try:
                for m in mixes:
                    b.run_wrk(scripts[m], 1, 16)
                    c0, n0 = e.cpu_ticks(), e.counters()
                    w = b.run_wrk(scripts[m], seconds, 16)
                    c1, n1 = e.cpu_ticks(), e.counters()
                    served = n1.get("downstream_rq_completed", 0) - n0.get("downstream_rq_completed", 0)
                    ok = n1.get("downstream_rq_2xx", 0) - n0.get("downstream_rq_2xx", 0)
                    us = (c1 - c0) / b.CLK_TCK * 1e6 / max(served, 1)
                    res.setdefault((name, m), []).append(us)
                    ev = ""
                    try:
                        _, body = b.http("GET", f"http://{b.ADMIN}/stats?filter=interlock.events")
                        ev = " ".join(l.split(".")[-1].replace(": ", "=") for l in body.decode().splitlines())
                    except Exception:
                        pass
                    print(f"r{r} {name:<14} {m:<4} {served/ (w['duration_us']/1e6):8.0f} rps ok={ok==served} {us:6.1f} us/req {ev}", flush=True)
            finally:
                e.stop()
finally:
    b.stop_helper(enf)
print("\n| variant | mix | CPU µs/req (median) | rounds |\n|---|---|--:|---|")
for (name, m), v in res.items():
    print(f"| {name} | {m} | {statistics.median(v):.1f} | {' '.join(f'{x:.1f}' for x in v)} |")
