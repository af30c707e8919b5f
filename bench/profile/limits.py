#!/usr/bin/env python3
"""bench/profile/run.py with the `interlock` policy's rate limits replaced by N per-session limits
of 1,000,000 per 10 s (N = the last digit of each variant's name, 0-9): what each rate-limit
bucket costs a request, e.g. with and without the per-worker leases (bench/PROFILE.md).
usage: limits.py ROUNDS SECONDS name=wasm[:mixes] ...   e.g. after8=/tmp/lease/after.wasm"""
from pathlib import Path

RUN = Path(__file__).with_name("run.py")
BENCH_LIMIT = '''                        "rate_limits": [
                          {
                            "id": "per-session",
                            "key": [
                              "session"
                            ],
                            "requests": 1000000,
                            "per_seconds": 10
                          }
                        ],'''
READ = '(b.BENCH_CONFIGS / "interlock.yaml").read_text()'


def limits(n: int) -> str:
    each = ", ".join(f'{{"id": "per-session-{i}", "key": ["session"], "requests": 1000000, "per_seconds": 10}}' for i in range(n))
    return " " * 24 + f'"rate_limits": [{each}],'


src = RUN.read_text()
assert src.count(READ) == 1, "run.py no longer reads interlock.yaml as this script expects"
src = src.replace(READ, f"_with_limits({READ}, name)")
env = {"__file__": str(RUN), "__name__": "__main__"}


def _with_limits(text: str, name: str) -> str:
    assert BENCH_LIMIT in text, "envoy-config/bench/interlock.yaml's rate limit changed"
    return text.replace(BENCH_LIMIT, limits(int(name[-1])))


env["_with_limits"] = _with_limits
exec(compile(src, str(RUN), "exec"), env)
