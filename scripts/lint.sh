#!/usr/bin/env bash
# The static checks CI runs before the tests (and .pre-commit-config.yaml runs on commit):
# ruff lint, ruff format check, mypy (strict on domain/, see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin
echo "lint: ruff check"
"$py/ruff" check .
echo "lint: ruff format --check"
"$py/ruff" format --check .
echo "lint: mypy"
"$py/mypy" domain db worker webhooks medspa scripts console
