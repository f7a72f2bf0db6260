#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the demo: local broker, the quick emotion bundle (trained
# on first run in about 3 minutes, reused after), the emotion test split streamed through the
# cascade with a live view, and a closing table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tango demo "$@"
