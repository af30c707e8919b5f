#!/usr/bin/env python3
"""Envoy's resident memory after load, and what became of the decision events (issue 7).

For each NAME=WASM[:ENFORCER_JSON] (ENFORCER_JSON: extra fields of the plugin's `enforcer` block,
e.g. '"max_buffered_events":500', or '"cluster":"nowhere"' for an enforcer that is never reached),
rounds alternating: Envoy 1.40 at --concurrency 2 with
envoy-config/bench/interlock.yaml and that .wasm, the enforcer running; wrk drives the `rest` and
`mcp` mixes for SECONDS each at CONNS connections; then, after a second for the last events to
leave: VmRSS, admin /memory, the anonymous mappings over BIGKB (the workers' wasm linear memories
show up as regions the size of their peak) and Envoy's `interlock.events.*` and
`interlock.decisions.total` counters. Private ports 29000/29001/29090, so it runs beside
`make bench` and bench/profile/run.py.

usage: load-memory.py ROUNDS SECONDS CONNS name=wasm[:json] ...
  .venv/bin/python bench/profile/load-memory.py 3 5 16 before=/tmp/ev/before.wasm after=target/wasm32-wasip1/release/interlock_filter.wasm
"""
import json, os, re, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench as b  # noqa: E402
import harness  # noqa: E402

b.LISTENER, b.ADMIN, b.ENFORCER = "127.0.0.1:29000", "127.0.0.1:29001", "127.0.0.1:29090"
OUT = Path(os.environ.get("PROFILE_OUT", "/tmp/prof/load")); OUT.mkdir(parents=True, exist_ok=True)
BIGKB = int(os.environ.get("BIGKB", "2048"))


def port(text):
    return text.replace("18000", "29000").replace("18001", "29001").replace("18090", "29090")


def big_anon(pid):
    """(size MB, RSS MB) of anonymous mappings whose RSS is over BIGKB."""
    out, cur = [], None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        f = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            cur = (hi - lo, f[5] if len(f) > 5 else "", f[1])
        elif f[0] == "Rss:" and cur is not None and (cur[1] == "" or cur[1].startswith("[")) and "x" not in cur[2]:
            if int(f[1]) > BIGKB:
                out.append((cur[0] >> 20, round(int(f[1]) / 1024, 1)))
    return out


def stats(prefix):
    _, body = b.http("GET", f"http://{b.ADMIN}/stats?filter={prefix}")
    out = {}
    for line in body.decode().splitlines():
        k, _, v = line.partition(": ")
        if v.strip().isdigit():
            out[k.split("interlock.", 1)[-1]] = int(v)
    return out


rounds, seconds, conns = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
specs = []
for a in sys.argv[4:]:
    name, _, rest = a.partition("=")
    wasm, _, extra = rest.partition(":")
    wasm = str(Path(wasm).resolve())
    y = port((b.BENCH_CONFIGS / "interlock.yaml").read_text())
    y = y.replace("filename: target/wasm32-wasip1/release/interlock_filter.wasm", f"filename: {wasm}")
    y = y.replace("filename: target/", f"filename: {ROOT}/target/").replace("filename: envoy-config/", f"filename: {ROOT}/envoy-config/")
    assert wasm in y
    if extra:
        anchor = '"authority": "interlock-enforcer"\n'
        assert y.count(anchor) == 1
        y = y.replace(anchor, f'"authority": "interlock-enforcer", {extra}\n')
        if '"cluster"' in extra:
            # e.g. '"cluster":"nowhere"': every POST fails, the buffer fills to its bound.
            default = '"cluster": "interlock_enforcer",'
            assert y.count(default) == 1
            y = y.replace(default, "")
    p = OUT / f"{name}.yaml"; p.write_text(y)
    specs.append((name, p))

logs, enf, scripts = harness.start(b, OUT, "load-")
res = {}
try:
    for r in range(rounds):
        order = specs[r % len(specs):] + specs[:r % len(specs)]
        for name, p in order:
            e = b.Envoy(p, 2, None, logs / f"{name}-{r}.log")
            try:
                served = 0
                for m in ("rest", "mcp"):
                    n0 = e.counters()
                    b.run_wrk(scripts[m], seconds, conns)
                    n1 = e.counters()
                    served += n1.get("downstream_rq_completed", 0) - n0.get("downstream_rq_completed", 0)
                time.sleep(1.5)
                rss = e.rss_kb() / 1024
                mem = json.loads(b.http("GET", f"http://{b.ADMIN}/memory")[1])
                ev = stats("interlock\\.(events|decisions\\.total)")
                big = big_anon(e.proc.pid)
                row = {"rss": rss, "alloc": int(mem["allocated"]) / 2**20, "served": served, **ev}
                for k, v in row.items():
                    res.setdefault((name, k), []).append(v)
                evs = " ".join(f"{k.removeprefix('events.')}={v}" for k, v in sorted(ev.items()))
                print(f"r{r} {name:<10} served={served:<7} VmRSS {rss:6.1f} MB alloc {row['alloc']:5.1f} MB | {evs} | big anon (MB size, MB rss) {big}", flush=True)
            finally:
                e.stop()
finally:
    b.stop_helper(enf)
print("\n| config | VmRSS MB (median) | rounds | events dropped (sum) | sent (sum) | decisions (sum) |\n|---|--:|---|--:|--:|--:|")
for name, _ in specs:
    v = res.get((name, "rss"), [])
    s = lambda k: sum(res.get((name, k), [0]))
    print(f"| {name} | {statistics.median(v):.1f} | {' '.join(f'{x:.1f}' for x in v)} | {s('events.dropped')} | {s('events.sent')} | {s('decisions.total')} |")
