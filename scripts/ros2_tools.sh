#!/usr/bin/env bash
# The real ROS 2 tools a robot has beside rclpy (launch, launch_ros, the `ros2` command,
# message_filters), which PyPI lacks: installed into .venv from the upstream sources in
# ../shared/ros2-python, with composition_interfaces (which launch_ros imports) built in
# colcon_ws beside the package.   bash scripts/ros2_tools.sh [kilted|jazzy]
# Then: export AMENT_PREFIX_PATH=$PWD/.venv; . colcon_ws/install/setup.sh; ros2 launch ...
set -euo pipefail
cd "$(dirname "$0")/.."
distro=${1:-kilted}
tools="$PWD/../shared/ros2-python"
[ -d "$tools/$distro" ] || { echo "ros2_tools: $tools/$distro absent" >&2; exit 2; }
start=$(date +%s)
bash "$tools/install.sh" .venv "$distro" > /dev/null
mkdir -p colcon_ws/src
rm -rf colcon_ws/src/composition_interfaces
cp -r "$tools/$distro/composition_interfaces" colcon_ws/src/composition_interfaces
chmod -R u+w colcon_ws/src/composition_interfaces
bash scripts/colcon_build.sh
echo "ros2_tools: $distro tools and composition_interfaces in $(( $(date +%s) - start )) s"
