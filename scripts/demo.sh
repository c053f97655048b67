#!/usr/bin/env bash
# Quick start: installs Prometheus if needed, builds the adapter, and runs it in standalone mode
# on its embedded demo rules against a local Prometheus loaded with generated samples.
# Extra arguments go to the adapter (for example --listen-address=127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> Installing what the demo needs (Prometheus from Debian, helm and kubectl) if missing…"
scripts/install-deps.sh
echo "==> Building prom-metrics-adapter (a first build compiles its dependencies: several minutes)…"
cargo build -j2 --bin prom-metrics-adapter
echo "==> Starting a local Prometheus with demo samples, then the adapter on http://127.0.0.1:8080 (Ctrl-C stops both)…"
exec cargo run -j2 --quiet --bin prom-metrics-adapter -- demo "$@"
