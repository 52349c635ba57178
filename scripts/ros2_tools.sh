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
# The upstream sources build with setuptools warnings (license classifiers, tests_require) and
# pip's resolver names launch-ros's ament_index_python (the PyPI wheel's name differs): pages
# of noise on a passing run. Kept in a log, shown when the install fails.
mkdir -p build
log="build/ros2_tools_$distro.log"
bash "$tools/install.sh" "$venv" "$distro" > "$log" 2>&1 || {
  cat "$log" >&2; echo "ros2_tools: installing the $distro tools failed (above; $log)" >&2; exit 1; }
mkdir -p "$ws/src"
rm -rf "$ws/src/composition_interfaces"
cp -r "$tools/$distro/composition_interfaces" "$ws/src/composition_interfaces"
chmod -R u+w "$ws/src/composition_interfaces"
LUTFUSE_DISTRO=$distro bash scripts/colcon_build.sh
echo "ros2_tools: $distro tools and composition_interfaces in $(( $(date +%s) - start )) s (install log: $log)"
echo "ros2_tools: launch_ros imports composition_interfaces, which lives in $ws: source $ws/install/setup.sh before using it"
