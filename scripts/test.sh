#!/usr/bin/env bash
# The whole test suite, on a fresh machine: the Rust tests (unit, property, multi-process,
# journal and command-line tests), then the Python package's (a fresh venv, `pip install
# ./python`, pytest, the stubs). Installs what it needs (python3-venv where it is missing, the
# Python packages from PyPI, tmux and redis-server). This is the README's test command, and
# `.ci/run` calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests drive: tmux (tests/top.rs) and redis-server (the Redis tests start their
# own, on a free loopback port, and stop it). Installed where missing (Debian's apt).
for tool in tmux redis-server; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y "$tool" >/dev/null \
            || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$tool" >/dev/null; }
    fi
done

printf '=== Rust: cargo test --locked --features cli\n'
cargo test --locked --features cli

printf '\n=== Rust: the Redis backend and the async wait (features redis, tokio; needs redis-server, fails without it under CI=true)\n'
cargo test --locked --features cli,redis,tokio --lib -- redis:: limiter::wait::
cargo test --locked --features cli,redis,tokio --test main -- redis::

printf '\n=== Python: python/ci.sh\n'
python/ci.sh
