#!/usr/bin/env bash
# Set up .venv and run the whole test suite (the README's test command; CI runs it too):
#  1. ruff, then pytest over test/ and the doctests of the core, stream and params (the
#     checkout, pip-installed);
#  2. where ROS 2 (rclpy) is installed: build the package with colcon (messages included)
#     and run the node tests again from the install space, as `ros2 run` and launch use it;
#  3. where ../shared/ros2-python is (CI has it): the real tools a robot has (launch,
#     launch_ros, the `ros2` command, message_filters; scripts/ros2_tools.sh) and the tests
#     that drive the package with them from the install space (ros2 launch / run / pkg /
#     param, Ctrl-C, two rigs, the recorder; message_filters against the sync policy);
#     then the Jazzy leg (scripts/jazzy_leg.sh): the node, robot-loop and tool tests again,
#     built and run against ROS 2 Jazzy;
#  4. the Python 3.10 leg (scripts/py310_leg.sh): the runtime's tests on Humble's Python;
#  5. the short ARM64 check of the torch-free runtime (scripts/arm64_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
bash scripts/setup.sh
source scripts/ros_env.sh
export ROS_HOME="$(mktemp -d)"
.venv/bin/ruff check .   # the linter (ruff.toml)
# The suite and the docstring examples (pytest.ini's testpaths). pytest exits non-zero (5)
# when it collects no test, so an empty run fails here too.
leg=$(date +%s)
.venv/bin/python -m pytest -q "$@"
echo "test.sh: suite in $(( $(date +%s) - leg )) s"

if .venv/bin/python -c "import rclpy" 2>/dev/null; then
  leg=$(date +%s)
  bash scripts/colcon_build.sh
  PATH="$ROOT/.venv/bin:$PATH" bash scripts/test_install_space.sh colcon_ws/install \
    test/test_node.py test/test_robot_loop.py
  echo "test.sh: colcon build + install-space leg in $(( $(date +%s) - leg )) s"
  if [ -d ../shared/ros2-python/kilted ]; then
    start=$(date +%s)
    bash scripts/ros2_tools.sh kilted
    # As a robot's shell: the distribution named, the tools on the ament index and PATH,
    # the workspace sourced.
    ROS_DISTRO=kilted AMENT_PREFIX_PATH="$ROOT/.venv" PATH="$ROOT/.venv/bin:$PATH" \
      bash scripts/test_install_space.sh colcon_ws/install test/test_ros2_tools.py \
      test/test_sync.py test/test_launch_config.py::test_python_launch_file_builds \
      test/test_launch_config.py::test_xml_launch_files_set_the_old_dds_variable_only_where_needed
    echo "test.sh: ROS 2 tools leg (kilted) in $(( $(date +%s) - start )) s"
    # The same from a Jazzy (LTS) install space, built against the Jazzy wheels.
    bash scripts/jazzy_leg.sh
  else
    echo "test.sh: ../shared/ros2-python absent: the ros2 launch/CLI tests skipped"
  fi
else
  echo "test.sh: no ROS 2 (rclpy) here: colcon build and install-space tests skipped"
fi

# Python 3.10 (Humble, JetPack 6): the runtime's tests on the oldest Python the package
# supports (skipped, saying so, where no Python 3.10 is found).
bash scripts/py310_leg.sh

# debootstrap needs root (CI runs as root here). LUTFUSE_SKIP_ARM64=1 skips the leg (it
# apt-installs debootstrap and qemu-user-static and keeps ~0.7 GB in build/arm64).
if [ -n "${LUTFUSE_SKIP_ARM64:-}" ]; then
  echo "test.sh: ARM64 check skipped (LUTFUSE_SKIP_ARM64 is set)"
elif [ "$(uname -sm)" = "Linux x86_64" ] && [ "$(id -u)" = 0 ]; then
  leg=$(date +%s)
  bash scripts/arm64_check.sh
  echo "test.sh: ARM64 check in $(( $(date +%s) - leg )) s"
else
  echo "test.sh: ARM64 check skipped (needs root on x86-64 Linux: sudo bash scripts/arm64_check.sh)"
fi
