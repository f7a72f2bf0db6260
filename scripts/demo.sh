#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the demo: local broker, the emotion bundle (trained
# on first run, reused after), the emotion test split streamed through the cascade.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tango demo "$@"
