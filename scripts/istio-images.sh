#!/usr/bin/env bash
# Builds and pushes the two images istio/ needs, then pins istio/ to their digests:
#   scripts/istio-images.sh REGISTRY [--traffic-extension]     e.g. scripts/istio-images.sh ghcr.io/acme
# writes istio/overlays/release/kustomization.yaml; deploy with `kubectl apply -k istio/overlays/release`.
# Needs docker with buildx and a registry you can push to (docker login first).
set -euo pipefail
cd "$(dirname "$0")/.."
registry=${1:?usage: scripts/istio-images.sh REGISTRY [--traffic-extension]}
shift
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
out=istio/overlays/release
meta=$(mktemp -d)
trap 'rm -rf "$meta"' EXIT

make build
# The Wasm image: plugin.wasm alone in the build context (docker/wasm-plugin.Dockerfile).
mkdir -p target/oci
cp target/wasm32-wasip1/release/interlock_filter.wasm target/oci/plugin.wasm
# No provenance/SBOM attestations: they turn the pushed manifest into an index, and Istio checks
# `sha256` against the digest of what it pulls.
docker buildx build --provenance=false --sbom=false --push \
  --metadata-file "$meta/filter.json" -f docker/wasm-plugin.Dockerfile \
  -t "$registry/interlock-filter:$version" target/oci
docker buildx build --provenance=false --sbom=false --push \
  --metadata-file "$meta/enforcer.json" -f docker/enforcer.Dockerfile \
  -t "$registry/interlock-enforcer:$version" .

digest() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$1"; }
scripts/istio-overlay.py "$@" \
  --filter "$registry/interlock-filter@$(digest "$meta/filter.json")" \
  --enforcer "$registry/interlock-enforcer@$(digest "$meta/enforcer.json")" \
  "$out"
