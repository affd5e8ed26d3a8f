#!/usr/bin/env bash
# Run the test suite: creates .venv, installs what it needs, starts its own Postgres 18 (+pgvector) and Redis
# on free ports, runs the static checks (scripts/lint.sh: ruff, ruff format, mypy) and pytest (arguments are
# passed through to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh browser
bash scripts/lint.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Three processes (pytest-xdist), each with its own Postgres and Redis: the suite is one busy core on its own
# (measured: 50 % of two cores) and mostly waits on its servers, so three keep two cores busier than two do
# (docs/performance.md, Test suite timings: 6 min 49 s against 8 min 22 s). Whole files go to a process (xdist's order: files with the most
# tests first; the suite does not depend on file order); TEST_WORKERS=0 runs it in this process, TEST_WORKERS=2
# in two, and a later -n in the arguments wins.
workers="${TEST_WORKERS:-3}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile "$@"
