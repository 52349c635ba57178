#!/usr/bin/env bash
# Set up .venv and run the live demo: a camera replayer (procedural thermal mono16 + RGB bgr8
# at 30 Hz) -> the fusion node -> a receiver that prints rate and latency and writes
# out/demo_mosaic.png. Three ROS 2 processes on a private, loopback-only DDS domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/ros_env.sh
export ROS_HOME="${ROS_HOME:-$(mktemp -d)}"
.venv/bin/python -m lutfuse_ros.ros.demo --out out/demo_mosaic.png "$@"
