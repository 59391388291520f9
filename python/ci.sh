#!/usr/bin/env bash
# CI for the Python SDK: a fresh venv, the SDK installed from this folder, and its tests against
# the real coordinator binary ($TUNEFLEET_COORDINATOR_BIN, default target/debug/coordinator).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
venv="${TUNEFLEET_PY_VENV:-$repo/.venv-python-sdk}"
export TUNEFLEET_COORDINATOR_BIN="${TUNEFLEET_COORDINATOR_BIN:-$repo/target/debug/coordinator}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$here" pytest 'grpcio-tools==1.85.1'
cd "$here"
# Run from outside the source tree's parent so `import tunefleet` is the installed package.
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
