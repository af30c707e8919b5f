#!/usr/bin/env bash
# The local demo stack: demo upstream (:8080), enforcer (:9090), Envoy with the Interlock filter
# (:10000, admin :9901), all on loopback, in the foreground. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=${INTERLOCK_ENVOY:-.venv/bin/envoy}
# The enforcer's data directory is the CLI's default, so `interlock audit verify` and the like
# need no flag.
DATA=.interlock
mkdir -p "$DATA"
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the demo stack..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

for port in 10000 9901 9090 8080; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port 127.0.0.1:$port is already in use; stop whatever holds it (another 'make run'?)" >&2
    exit 1
  fi
done

target/release/interlock-demo-upstream --listen 127.0.0.1:8080 2>"$DATA/upstream.log" &
pids+=($!)
target/release/interlock serve --listen 127.0.0.1:9090 --data-dir "$DATA" --policy policies/examples/demo.json 2>"$DATA/enforcer.log" &
pids+=($!)
"$ENVOY" -c envoy-config/demo.yaml --concurrency 2 --log-level warn >"$DATA/access.log" 2>"$DATA/envoy.log" &
pids+=($!)

for i in $(seq 1 100); do
  if curl -fs 127.0.0.1:9901/ready >/dev/null 2>&1 && curl -fs 127.0.0.1:9090/healthz >/dev/null 2>&1; then break; fi
  if [ "$i" = 100 ]; then echo "the stack did not come up; see $DATA/*.log" >&2; exit 1; fi
  sleep 0.2
done

cat <<TXT

Interlock demo stack is up (logs in $DATA/):
  agents -> Envoy + Interlock   http://127.0.0.1:10000
  Envoy admin                  http://127.0.0.1:9901
  enforcer API                 http://127.0.0.1:9090
  demo upstream                http://127.0.0.1:8080   (GET /__demo/stats)

Try it (another terminal):
  TOKEN=\$(target/release/interlock token --agent triage-bot --user alice --session s1)

  # allowed: triage-bot may call get_issue
  curl -s localhost:10000/mcp -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_issue","arguments":{"number":7}}}'

  # denied (403, never reaches the upstream): nobody may delete_repository
  curl -s localhost:10000/mcp -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
    -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_repository","arguments":{"name":"core"}}}'

  # every decision, as it happens (operator commands read the enforcer's admin token from
  # $DATA/admin.token, which only you can read)
  target/release/interlock events

Ctrl-C stops the stack.
TXT

# Access log (one line per request, with the decision id, rule and action) in the foreground.
tail -n +1 -f "$DATA/access.log" &
pids+=($!)
wait -n "${pids[@]:0:3}" || true
echo "a component of the stack exited; see $DATA/*.log" >&2
exit 1
