#!/usr/bin/env python3
"""VmRSS, admin /memory (tcmalloc) and an smaps breakdown of Envoy at --concurrency 2, idle after a few
requests, for each NAME=CONFIG[=WASM] argument; ports 38000/38001 (the config is copied to /tmp/mem with
its 18xxx ports moved). RELEASE=1 adds a bootstrap memory_allocator_manager (release free pages every
1 s); SETTLE=seconds to wait before reading; BIGKB lists anonymous mappings above that RSS (wasm
linear memories show up as ~size-of-peak regions, one per VM). Example, from the repository root:
  SETTLE=4 python3 bench/memory-probe.py min=envoy-config/bench/minimal-wasm.yaml i10k=target/bench/interlock-10000.yaml
"""
import json, os, re, signal, subprocess, sys, time, urllib.request
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
ENVOY = Path(os.environ.get("INTERLOCK_ENVOY", ROOT / ".venv/bin/envoy"))
Path("/tmp/mem").mkdir(exist_ok=True)
def get(url, t=1):
    return urllib.request.urlopen(url, timeout=t).read()
def smaps(pid):
    out = {"rwx": 0, "anon": 0, "file": 0, "big_anon": []}
    cur = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        f = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            cur = {"perm": f[1], "name": f[5] if len(f) > 5 else "", "size": hi - lo}
        elif f[0] == "Rss:" and cur is not None:
            kb = int(f[1])
            if "x" in cur["perm"] and "w" in cur["perm"]:
                out["rwx"] += kb
            elif cur["name"] == "" or cur["name"].startswith("["):
                out["anon"] += kb
                if kb > int(os.environ.get("BIGKB", "2048")):
                    out["big_anon"].append((cur["size"] >> 20, kb >> 10))
            else:
                out["file"] += kb
    return out
def run(name, yaml, wasm=None, extra_sed=()):
    text = Path(yaml).read_text().replace("18000", "38000").replace("18001", "38001").replace("18090", "38090").replace("18081", "38081")
    if wasm:
        text = text.replace("target/wasm32-wasip1/release/interlock_filter.wasm", wasm)
    if os.environ.get("RELEASE"):
        text = text.replace("\nadmin:", "\nmemory_allocator_manager: { bytes_to_release: 268435456, memory_release_interval: 1s }\nadmin:", 1)
        assert "memory_allocator_manager" in text
    for a, b in extra_sed:
        text = text.replace(a, b)
    cfg = Path(f"/tmp/mem/{name}.yaml"); cfg.write_text(text)
    p = subprocess.Popen([str(ENVOY), "-c", str(cfg), "--concurrency", "2", "--disable-hot-restart", "--log-level", "warn"], cwd=ROOT,
                         stdout=open(f"/tmp/mem/{name}.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(1200):
            try:
                if get("http://127.0.0.1:38001/ready") and True: break
            except Exception: time.sleep(0.05)
        for _ in range(40):
            try: get("http://127.0.0.1:38000/healthz")
            except Exception: pass
        time.sleep(float(os.environ.get("SETTLE", "1")))
        rss = next(int(l.split()[1]) for l in Path(f"/proc/{p.pid}/status").read_text().splitlines() if l.startswith("VmRSS:"))
        m = json.loads(get("http://127.0.0.1:38001/memory"))
        s = smaps(p.pid)
        mb = lambda k: int(m[k]) / 2**20
        print(f"{name:<22} RSS {rss/1024:6.1f}  alloc {mb('allocated'):6.1f} heap {mb('heap_size'):6.1f} pfree {mb('pageheap_free'):5.1f} "
              f"unmapped {mb('pageheap_unmapped'):5.1f} tcache {mb('total_thread_cache'):5.1f} | smaps anon {s['anon']/1024:6.1f} rwx {s['rwx']/1024:5.1f} file {s['file']/1024:5.1f} big {s['big_anon'][:8]}", flush=True)
    finally:
        os.killpg(p.pid, signal.SIGTERM); p.wait()
if __name__ == "__main__":
    for arg in sys.argv[1:]:
        parts = arg.split("=")
        run(parts[0], parts[1], parts[2] if len(parts) > 2 else None)
