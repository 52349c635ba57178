#!/usr/bin/env bash
# Run test files against a colcon install space, from outside the checkout, so that Python
# imports lutfuse_ros from the install space (as `ros2 run` and launch do; the tests' conftest
# checks that it does). The caller's PATH (its python), ROS_DISTRO and AMENT_PREFIX_PATH are
# kept.   bash scripts/test_install_space.sh colcon_ws/install test/test_node.py [...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
INSTALL="$(cd "$1" && pwd)"
shift
tests=()
for t in "$@"; do tests+=("$ROOT/$t"); done
set +u; . "$INSTALL/setup.sh"; set -u
cd "$(mktemp -d)"
LUTFUSE_TEST_INSTALL_SPACE="$INSTALL" python -m pytest -q -p no:cacheprovider \
  --rootdir "$ROOT" -c "$ROOT/pytest.ini" -o addopts="" "${tests[@]}"
