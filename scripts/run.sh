#!/usr/bin/env bash
# The main job. On a fresh machine: makes .venv, installs orderflow, runs it
# on the embedded default (no Redis, no API key needed): `orderflow demo`. Arguments replace the
# default command, e.g. scripts/run.sh config show
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
if [ "$#" -eq 0 ]; then
  set -- demo
fi
exec .venv/bin/orderflow "$@"
