#!/usr/bin/env bash
# Quick start: installs Prometheus if needed, then runs the adapter in standalone mode on its
# embedded demo rules against a local Prometheus loaded with generated samples.
# Extra arguments go to the adapter (for example --listen-address=127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run -j2 --quiet -- demo "$@"
