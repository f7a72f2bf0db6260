#!/usr/bin/env bash
# The fault suite at full size (50,000 tweets per scenario by default; TANGO_FAULT_TWEETS
# to change). Each scenario prints a [faults] line with its duplicate count, losses and
# recovery time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TANGO_FAULT_TWEETS=${TANGO_FAULT_TWEETS:-50000}
exec .venv/bin/python -m pytest -p no:cacheprovider -W ignore::DeprecationWarning -m faults -q tests/integration/test_faults.py "$@"
