"""The package driven by the real ROS 2 tools, as a robot user does, from the colcon install
space: ``ros2 launch`` (the XML and Python launch files with their arguments, two rigs in
one launch, the recorder), ``ros2 run``, ``ros2 pkg``, ``ros2 param``, and Ctrl-C.

scripts/test.sh runs this in its tools leg (launch, launch_ros and ros2cli installed from
../shared/ros2-python, composition_interfaces built beside the package); elsewhere it skips.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import INSTALL_SPACE, SpinningNode

if not INSTALL_SPACE or shutil.which("ros2") is None:
    pytest.skip("needs the ros2 command and the colcon install space (scripts/test.sh's tools "
                "leg: scripts/ros2_tools.sh with ../shared/ros2-python)", allow_module_level=True)
rclpy = pytest.importorskip("rclpy")
pytest.importorskip("launch_ros", reason="launch_ros not installed (scripts/ros2_tools.sh)")

from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lutfuse_ros.core import load_model, save_model  # noqa: E402
from lutfuse_ros.core.synthetic import synthetic_pair  # noqa: E402
from lutfuse_ros.ros.interfaces import FusionStatus  # noqa: E402
from lutfuse_ros.stream.codec import numpy_to_image  # noqa: E402


def ros2(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ros2", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def ros2_graph(*args: str, tries: int = 5) -> subprocess.CompletedProcess:
    """``ros2 node|param ...`` without the daemon (none left behind; a daemon started by the
    first command may not have discovered the node yet: "Node not found"), retried while the
    node is still being discovered."""
    for _ in range(tries):
        res = ros2(*args, "--no-daemon", "--spin-time", "3")
        if "Node not found" not in res.stdout + res.stderr:
            return res
    return res


class Launched:
    """``ros2 launch ...`` in a process group of its own, as a terminal starts it."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(["ros2", *map(str, args)], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log_path.read_text()

    def ctrl_c(self, timeout: float = 30) -> int:
        """SIGINT to the whole group (what Ctrl-C does); the exit code of ``ros2 launch``."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def orphans(self) -> bool:
        """Whether any process of the launch's group outlived it."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        if self.proc.poll() is None or self.orphans():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class Cameras(SpinningNode):
    """A thermal + RGB camera pair per namespace, and receivers of each rig's outputs."""

    def __init__(self, namespaces: list[str]) -> None:
        super().__init__("lutfuse_tools_test")
        ir, vis = synthetic_pair(seed=5, shape=(96, 128))
        self.images = (numpy_to_image(ir, "mono8"), numpy_to_image(vis, "rgb8"))
        self.pubs, self.fused, self.status = {}, {}, {}
        for ns in namespaces:
            self.pubs[ns] = (
                self.node.create_publisher(Image, f"/{ns}/thermal/image_raw".replace("//", "/"),
                                           qos_profile_sensor_data),
                self.node.create_publisher(Image, f"/{ns}/rgb/image_raw".replace("//", "/"),
                                           qos_profile_sensor_data))
            self.fused[ns], self.status[ns] = [], []
            self.node.create_subscription(Image, f"/{ns}/fused/image".replace("//", "/"),
                                          self.keep(self.fused[ns]), qos_profile_sensor_data)
            if FusionStatus is not None:
                self.node.create_subscription(FusionStatus,
                                              f"/{ns}/fused/status".replace("//", "/"),
                                              self.keep(self.status[ns]), 10)
        self.start()

    def stream_until_fused(self, seconds: float = 90.0, frames: int = 5) -> None:
        """Publish pairs at ~20 Hz until every rig has fused ``frames`` and sent a status."""
        deadline, stamp = time.monotonic() + seconds, 1_000_000_000
        while time.monotonic() < deadline:
            for thermal_pub, rgb_pub in self.pubs.values():
                for msg, pub, frame in ((self.images[0], thermal_pub, "thermal"),
                                        (self.images[1], rgb_pub, "rgb")):
                    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                    msg.header.frame_id = frame
                    pub.publish(msg)
            stamp += 50_000_000
            time.sleep(0.05)
            with self.lock:
                if all(len(f) >= frames for f in self.fused.values()) and (
                        FusionStatus is None or all(self.status.values())):
                    return
        with self.lock:
            got = {ns: len(f) for ns, f in self.fused.items()}
        raise AssertionError(f"fused frames per rig after {seconds} s: {got}")


@pytest.fixture
def cameras(rclpy_session):
    made = []

    def make(namespaces):
        made.append(Cameras(namespaces))
        return made[-1]
    yield make
    for c in made:
        c.close()


def test_ros2_pkg_lists_the_executables():
    res = ros2("pkg", "executables", "lutfuse_ros")
    assert res.returncode == 0, res.stderr
    for name in ("fusion_node", "recorder_node"):
        assert f"lutfuse_ros {name}" in res.stdout


def test_launch_xml_in_a_namespace_fuses_swaps_the_model_and_stops_on_ctrl_c(cameras,
                                                                             tmp_path):
    model = tmp_path / "model_copy.npz"
    save_model(load_model(), model)
    run = Launched("launch", "lutfuse_ros", "fusion.launch.xml", "namespace:=front",
                   f"model:={model}", log=tmp_path / "launch.log")
    try:
        cams = cameras(["front"])
        cams.stream_until_fused()
        text = run.text()
        # the namespace moved the inputs with the outputs
        assert "fusing /front/thermal/image_raw + /front/rgb/image_raw -> /front/fused/image" \
            in text, text
        if os.environ.get("ROS_DISTRO") == "kilted":  # only the name this Fast DDS reads
            assert "deprecated" not in text, text
        got = ros2_graph("param", "get", "/front/lutfuse_fusion", "model_path")
        assert str(model) in got.stdout, got.stdout + got.stderr
        bad = tmp_path / "broken.npz"
        bad.write_bytes(b"not a model")
        refused = ros2_graph("param", "set", "/front/lutfuse_fusion", "model_path", str(bad))
        assert "Setting parameter failed" in refused.stdout + refused.stderr, refused
        assert "broken.npz" in refused.stderr  # the node's reason, naming the file
        swapped = ros2_graph("param", "set", "/front/lutfuse_fusion", "model_path", "")
        assert "Set parameter successful" in swapped.stdout, swapped.stdout + swapped.stderr
        assert run.proc.poll() is None, run.text()
        assert run.ctrl_c() == 0, run.text()
        assert not run.orphans()
    finally:
        run.kill()


def test_launch_py_with_a_params_file_and_remapped_topics(cameras, tmp_path):
    params = tmp_path / "rig.yaml"
    params.write_text("/**:\n  ros__parameters:\n    agc.mode: percentile\n"
                      "    output_encoding: mono8\n")
    run = Launched("launch", "lutfuse_ros", "fusion.launch.py", f"params_file:={params}",
                   "thermal_topic:=/py/thermal/image_raw", "rgb_topic:=/py/rgb/image_raw",
                   "namespace:=py", log=tmp_path / "launch.log")
    try:
        cams = cameras(["py"])
        cams.stream_until_fused()
        assert cams.fused["py"][-1].encoding == "mono8"
        got = ros2_graph("param", "get", "/py/lutfuse_fusion", "agc.mode")
        assert "percentile" in got.stdout, got.stdout + got.stderr
        assert run.ctrl_c() == 0, run.text()
        assert not run.orphans()
    finally:
        run.kill()


def test_two_rigs_in_one_launch(cameras, tmp_path):
    run = Launched("launch", "lutfuse_ros", "two_rigs.launch.xml", log=tmp_path / "launch.log")
    try:
        cams = cameras(["front", "rear"])
        cams.stream_until_fused()
        expected = {"/front/lutfuse_fusion", "/rear/lutfuse_fusion"}
        for _ in range(8):  # a 3 s spin may discover one rig before the other (seen on Jazzy)
            nodes = set(ros2_graph("node", "list").stdout.split())
            if expected <= nodes:
                break
        assert expected <= nodes, nodes
        assert run.ctrl_c() == 0, run.text()
        assert not run.orphans()
    finally:
        run.kill()


def test_ros2_run_starts_the_node(cameras, tmp_path):
    # the node's own input names are thermal/image and rgb/image; remap them to the driver's
    run = Launched("run", "lutfuse_ros", "fusion_node", "--ros-args", "-r", "__ns:=/ran",
                   "-r", "thermal/image:=thermal/image_raw", "-r", "rgb/image:=rgb/image_raw",
                   log=tmp_path / "run.log")
    try:
        cams = cameras(["ran"])
        cams.stream_until_fused(frames=2)
        assert run.ctrl_c() == 0, run.text()
    finally:
        run.kill()


def test_record_launch_writes_a_bag_that_bag_export_reads(cameras, tmp_path):
    import sys

    bag = tmp_path / "bag"
    run = Launched("launch", "lutfuse_ros", "record.launch.xml", f"bag_path:={bag}",
                   "namespace:=rec", "thermal_topic:=/rec/thermal/image_raw",
                   "rgb_topic:=/rec/rgb/image_raw", "min_interval:=0.0", "max_pairs:=5",
                   log=tmp_path / "record.log")
    try:
        cams = cameras(["rec"])
        cams.fused.pop("rec")  # the recorder fuses nothing: stream until it has 5 pairs
        cams.status.pop("rec", None)
        deadline = time.monotonic() + 90
        stamp = 1_000_000_000
        while time.monotonic() < deadline and run.proc.poll() is None:
            for msg, pub in zip(cams.images, cams.pubs["rec"]):
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                pub.publish(msg)
            stamp += 50_000_000
            time.sleep(0.05)
        if run.proc.poll() is None:
            run.ctrl_c()
        out = tmp_path / "pairs"
        res = subprocess.run([sys.executable, "-m", "lutfuse_ros.cli", "bag-export", str(bag),
                              "--out", str(out), "--thermal-topic", "/rec/thermal/image_raw",
                              "--rgb-topic", "/rec/rgb/image_raw"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr + run.text()
        irs = sorted((out / "ir").iterdir())
        assert len(irs) >= 5, res.stdout
        assert np.asarray(bytearray(irs[0].read_bytes())).size > 0
        assert not run.orphans()
    finally:
        run.kill()


def test_the_install_step_compiled_the_numba_cache():
    # A fresh install space starts fusing in ~2 s instead of ~8 s (compiling the kernels).
    from lutfuse_ros.core import fusion_kernels

    log = Path(INSTALL_SPACE).parent / "build.log"
    assert "numba kernels compiled and cached" in log.read_text()
    cache = Path(fusion_kernels.__file__).parent / "__pycache__"
    assert list(cache.glob("fusion_kernels.*.nbi")) and list(cache.glob("agc_kernels.*.nbi"))
