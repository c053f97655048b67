#!/usr/bin/env bash
# The project's test command: installs what the tests need, then checks formatting, lints and
# runs every test (unit and integration, against a real Prometheus started by the harness).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy -j2 --all-targets -- -D warnings
cargo test -j2 --all-targets
