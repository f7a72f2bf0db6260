#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite; the integration tests start
# their own local Kafka broker. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider -W ignore::DeprecationWarning "$@"
