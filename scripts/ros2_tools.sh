#!/usr/bin/env bash
# The real ROS 2 tools a robot has beside rclpy (launch, launch_ros, the `ros2` command,
# message_filters), which PyPI lacks: installed from the upstream sources in
# ../shared/ros2-python into the distribution's venv (kilted: .venv, jazzy: .venv-jazzy),
# with composition_interfaces (which launch_ros imports) built in its colcon workspace
# (colcon_ws, colcon_ws_jazzy) beside the package.   bash scripts/ros2_tools.sh [kilted|jazzy]
# Then: export AMENT_PREFIX_PATH=$PWD/.venv; . colcon_ws/install/setup.sh; ros2 launch ...
set -euo pipefail
cd "$(dirname "$0")/.."
distro=${1:-kilted}
tools="$PWD/../shared/ros2-python"
[ -d "$tools/$distro" ] || { echo "ros2_tools: $tools/$distro absent" >&2; exit 2; }
if [ "$distro" = jazzy ]; then venv=.venv-jazzy ws=colcon_ws_jazzy; else venv=.venv ws=colcon_ws; fi
start=$(date +%s)
bash "$tools/install.sh" "$venv" "$distro" > /dev/null
mkdir -p "$ws/src"
rm -rf "$ws/src/composition_interfaces"
cp -r "$tools/$distro/composition_interfaces" "$ws/src/composition_interfaces"
chmod -R u+w "$ws/src/composition_interfaces"
LUTFUSE_DISTRO=$distro bash scripts/colcon_build.sh
echo "ros2_tools: $distro tools and composition_interfaces in $(( $(date +%s) - start )) s"
