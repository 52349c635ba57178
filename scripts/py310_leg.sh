#!/usr/bin/env bash
# The Python 3.10 leg of CI: what Humble and JetPack 6 (Ubuntu 22.04) run. The runtime only
# (no torch: a robot fuses with ONNX Runtime) in .venv-py310 from the pins of
# constraints.txt, and the core, stream, node and command-line tests against it (the torch
# comparisons and training skip, saying so).   bash scripts/py310_leg.sh
# Uses python3.10 on PATH, else pyenv's; LUTFUSE_PY310=/path/to/python3.10 names another.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=""
for candidate in ${LUTFUSE_PY310:-} "$(command -v python3.10 || true)" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python; do
  # (a pyenv shim on PATH may not run: try each)
  if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    PY="$candidate"; break
  fi
done
if [ -z "$PY" ]; then
  echo "py310_leg: no Python 3.10 here (set LUTFUSE_PY310): skipped"
  exit 0
fi
start=$(date +%s)
V="$PWD/.venv-py310"
[ -x "$V/bin/python" ] || "$PY" -m venv "$V"
"$V/bin/python" -m pip install -q --upgrade pip
extras=test
if [ "$(uname -sm)" = "Linux x86_64" ]; then extras=test,ros; fi
"$V/bin/python" -m pip install -q -c constraints.txt -e ".[$extras]"
source scripts/ros_env.sh
export ROS_HOME="$(mktemp -d)"
"$V/bin/python" -m pytest -q -p no:cacheprovider test/test_fusion.py test/test_preprocess.py \
  test/test_thermal.py test/test_codec.py test/test_onnx_runtime.py test/test_parity.py \
  test/test_metrics.py test/test_stats.py test/test_params.py test/test_sync.py \
  test/test_bags.py test/test_shards.py test/test_node.py test/test_robot_loop.py test/test_cli.py
echo "py310_leg: $("$V/bin/python" -V) passed in $(( $(date +%s) - start )) s"
