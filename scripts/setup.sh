#!/usr/bin/env bash
# Create .venv (if missing) and install lutfuse_ros with its test extras into it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# ROS 2 from PyPI exists for x86-64 Linux only; elsewhere source a ROS install first.
extras=test,training
if [ "$(uname -sm)" = "Linux x86_64" ]; then extras=test,training,ros; fi
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"
