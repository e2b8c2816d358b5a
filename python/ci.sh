#!/usr/bin/env bash
# CI for the Python package: a fresh virtual environment, the package built from this
# checkout the way users install it (`pip install ./python`: maturin, release build of the
# native module), its tests with pytest, and clippy on the native module's crate.
# Run from anywhere; the environment goes to target/python-ci (set HOSTLIMIT_PY_VENV to
# use another). Needs python3 >= 3.9 with venv, and the network to PyPI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="${HOSTLIMIT_PY_VENV:-$root/target/python-ci}"
python="${PYTHON:-python3}"

# Debian's python3 needs python3-venv for `-m venv` (pyenv's and python.org's have it).
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q maturin pytest mypy pyrate-limiter limits filelock
"$venv/bin/python" --version

echo "--- build and install (pip install ./python)"
"$venv/bin/python" -m pip install -q ./python

echo "--- clippy (the native module's crate)"
cargo clippy -p hostlimit-python --all-targets --locked -- -D warnings

echo "--- pytest"
# From the tests' own directory: a child interpreter started by a test puts its working
# directory first on sys.path, and python/ would shadow the installed package with the
# source tree (which has no compiled _native module).
cd "$root/python/tests"
status=0
"$venv/bin/pytest" -q -p no:cacheprovider -c "$root/python/pyproject.toml" --rootdir "$root/python" . || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no test: that is a failure" >&2
    exit 1
fi
exit "$status"
