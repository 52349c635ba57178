#!/usr/bin/env bash
# Set up .venv and run the whole test suite (the README's test command; CI runs it too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Any ROS 2 process a test starts stays on this machine, on a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 90 + 10 ))}"
export ROS_HOME="$(mktemp -d)"
# pytest exits non-zero (5) when it collects no test, so an empty run fails here too.
.venv/bin/python -m pytest -q test "$@"
