#!/usr/bin/env bash
# The Jazzy leg of CI: ROS 2 Jazzy (the LTS most robots run) from PyPI in .venv-jazzy, the
# real launch/ros2 tools (scripts/ros2_tools.sh jazzy), the package built with colcon against
# them (messages included) in colcon_ws_jazzy, and the node, robot-loop and ros2-tools tests
# from that install space.   bash scripts/jazzy_leg.sh   (needs ../shared/ros2-python)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
V="$ROOT/.venv-jazzy"
start=$(date +%s)
[ -x "$V/bin/python" ] || python3 -m venv "$V"
"$V/bin/python" -m pip install -q --upgrade pip
# The package's own dependencies (not the Kilted wheels of its `ros` extra) + Jazzy's.
"$V/bin/python" -m pip install -q -c constraints.txt -e ".[test,training,ros-jazzy]"
bash scripts/ros2_tools.sh jazzy
source scripts/ros_env.sh
export ROS_HOME="$(mktemp -d)" ROS_DISTRO=jazzy
export AMENT_PREFIX_PATH="$V" PATH="$V/bin:$PATH" VIRTUAL_ENV="$V"
bash scripts/test_install_space.sh colcon_ws_jazzy/install test/test_node.py \
  test/test_robot_loop.py test/test_ros2_tools.py test/test_sync.py
echo "jazzy_leg: passed in $(( $(date +%s) - start )) s"
