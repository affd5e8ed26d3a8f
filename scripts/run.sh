#!/usr/bin/env bash
# Run the whole service on embedded defaults: no Docker, no accounts, no keys.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/medspa dev up "$@"
