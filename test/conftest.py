"""Shared fixtures: the ``../shared`` data (tests that need it skip with the reason), and a
private, loopback-only ROS 2 graph for the tests that start nodes."""
from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

import lutfuse_ros
from lutfuse_ros.core.synthetic import synthetic_pair
from lutfuse_ros.resources import config_file, dds_profile_env

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# The runtime runs without torch (ONNX Runtime): a machine with only the runtime installed
# (the Python 3.10 leg of scripts/test.sh) skips what compares against or trains with torch.
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="needs torch (the training extra: pip install -e '.[training]'); the runtime does not")

# Network safety: every ROS 2 participant of the test run (this process and the nodes it
# starts) stays on loopback, on a domain of its own, logging into a temp dir.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
os.environ.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="lutfuse_test_ros_home_"))
os.environ.update(dds_profile_env(config_file("fastdds_shm_localhost.xml")))
# Where the upstream launch tools were installed into this venv (scripts/ros2_tools.sh: a
# second run of scripts/test.sh), launch finds its grammar through the ament index of the
# venv, as a sourced ROS install would provide.
if not os.environ.get("AMENT_PREFIX_PATH") and \
        (Path(sys.prefix) / "share" / "ament_index").is_dir():
    os.environ["AMENT_PREFIX_PATH"] = sys.prefix

# scripts/test.sh runs the node tests a second time against the colcon install space
# (LUTFUSE_TEST_INSTALL_SPACE=colcon_ws/install, its setup.sh sourced): make sure that is
# the code under test, not this checkout.
INSTALL_SPACE = os.environ.get("LUTFUSE_TEST_INSTALL_SPACE")
if INSTALL_SPACE:
    assert Path(lutfuse_ros.__file__).resolve().is_relative_to(Path(INSTALL_SPACE).resolve()), (
        f"testing {lutfuse_ros.__file__}, not the install space {INSTALL_SPACE}: source its "
        "setup.sh and run pytest with --import-mode=append from outside the checkout")


def executable(name: str) -> str:
    """A node executable as ``ros2 run``/launch files start it: ``lib/lutfuse_ros/<name>`` of
    the colcon install space under test, else the pip console script beside this Python."""
    if INSTALL_SPACE:
        from ament_index_python.packages import get_package_prefix
        return str(Path(get_package_prefix("lutfuse_ros")) / "lib" / "lutfuse_ros" / name)
    script = shutil.which(name, path=str(Path(sys.executable).parent))
    assert script, f"console script {name} not installed (pip install -e .)"
    return script


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data beside the repository), absent here")
    return path


@pytest.fixture(scope="session")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A procedural 96x128 (IR, RGB) pair."""
    return synthetic_pair(seed=3, shape=(96, 128))


@pytest.fixture(scope="session")
def rclpy_session():
    """rclpy initialised once for the test process (skips where ROS 2 is not installed)."""
    rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (rclpy): scripts/setup.sh "
                                "installs the PyPI wheels on x86-64 Linux")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


class SpinningNode:
    """An rclpy node of this test process, spun by an executor on a thread of its own: the
    base of the tests' camera publishers and output receivers (``rclpy_session`` first).
    ``keep(sink)`` is a subscription callback that appends each message under ``lock``."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name)
        self.lock = threading.Lock()
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)

    def start(self) -> None:
        """Spin, once the publishers and subscriptions are made."""
        self.thread.start()

    def keep(self, sink: list):
        def cb(msg):
            with self.lock:
                sink.append(msg)
        return cb

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
