#!/usr/bin/env bash
# Set up .venv and fuse the embedded procedural pairs into out/demo_mosaic.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m lutfuse_ros.cli demo --out out/demo_mosaic.png "$@"
