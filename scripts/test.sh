#!/usr/bin/env bash
# Run the test suite: creates .venv, installs what it needs, starts its own Postgres 18 (+pgvector) and Redis
# on free ports, runs the static checks (scripts/lint.sh: ruff, ruff format, mypy) and pytest (arguments are
# passed through to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh browser
bash scripts/lint.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
