# The Interlock filter as an OCI image in the layout Istio's WasmPlugin / TrafficExtension pulls:
# a single layer whose root holds `plugin.wasm` (Istio's Docker-compatible Wasm image format).
#
# Build context: a directory holding only plugin.wasm. scripts/istio-images.sh stages
# target/wasm32-wasip1/release/interlock_filter.wasm (from `make build`) there, builds without
# provenance attestations (so the pushed digest is the image manifest's, the one Istio checks
# `sha256` against) and pushes it.
FROM scratch
COPY plugin.wasm ./
