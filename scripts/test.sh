#!/usr/bin/env bash
# Set up .venv and run the whole test suite (the README's test command; CI runs it too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/ros_env.sh
export ROS_HOME="$(mktemp -d)"
# pytest exits non-zero (5) when it collects no test, so an empty run fails here too.
.venv/bin/python -m pytest -q test "$@"
