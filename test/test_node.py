"""The fusion node as robots run it: its console script in its own process, started with the
params file and remaps the launch file uses, talking real DDS (loopback) to this test.

Checked here: fused output equals the core's output byte for byte with the RGB header;
camera_info follows; sync under offset and rate mismatch; a silent camera is reported
within 1 s and recovers; hundreds of malformed messages of every kind leave it running and
correct; model hot-swap (bad file refused, old model kept; good file swapped in).
"""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import SHARED, SpinningNode, executable

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (rclpy)")
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import ListParameters, SetParameters  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from lutfuse_ros.core import load_model, save_model  # noqa: E402
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible  # noqa: E402
from lutfuse_ros.core.preprocess import Registration  # noqa: E402
from lutfuse_ros.core.synthetic import synthetic_pair  # noqa: E402
from lutfuse_ros.resources import config_file  # noqa: E402
from lutfuse_ros.ros.interfaces import FusionStatus  # noqa: E402  (None: not built by colcon)
from lutfuse_ros.ros.params import PARAMS, NodeSettings  # noqa: E402
from lutfuse_ros.stream.codec import image_to_numpy, numpy_to_image  # noqa: E402
from lutfuse_ros.stream.pipeline import FramePipeline  # noqa: E402

THERMAL_TOPIC, RGB_TOPIC, INFO_TOPIC = "/cam_t/image_raw", "/cam_v/image_raw", "/cam_v/info"
NODE = "/lutfuse_fusion"


class Harness(SpinningNode):
    """Camera publishers and fused/diagnostics subscribers in this test process."""

    def __init__(self) -> None:
        super().__init__("lutfuse_test_harness")
        self.pub_t = self.node.create_publisher(Image, THERMAL_TOPIC, qos_profile_sensor_data)
        self.pub_v = self.node.create_publisher(Image, RGB_TOPIC, qos_profile_sensor_data)
        self.pub_i = self.node.create_publisher(CameraInfo, INFO_TOPIC, 10)
        self.fused: list[Image] = []
        self.infos: list[CameraInfo] = []
        self.diags: list[tuple[float, DiagnosticArray]] = []
        self.node.create_subscription(Image, "/fused/image", self.keep(self.fused), 50)
        self.node.create_subscription(CameraInfo, "/fused/camera_info", self.keep(self.infos), 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.statuses: list = []
        if FusionStatus is not None:
            self.node.create_subscription(FusionStatus, "/fused/status",
                                          self.keep(self.statuses), 10)
        self.set_client = self.node.create_client(SetParameters, f"{NODE}/set_parameters")
        self.list_client = self.node.create_client(ListParameters, f"{NODE}/list_parameters")
        self.start()

    def _on_diag(self, msg):
        with self.lock:
            self.diags.append((time.monotonic(), msg))

    def publish(self, thermal: Image, rgb: Image, stamp_ns: int) -> None:
        for m, frame in ((thermal, "thermal_optical_frame"), (rgb, "rgb_optical_frame")):
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            m.header.frame_id = frame
        self.pub_t.publish(thermal)
        self.pub_v.publish(rgb)

    def publish_until_received(self, thermal: Image, rgb: Image, start_ns: int,
                               sink: list, what: str) -> Image:
        """Publish the pair (1 ms apart, every 50 ms) until ``sink`` holds a message: best
        effort may lose the first frames after discovery. Returns the newest one."""
        for k in range(100):
            self.publish(thermal, rgb, start_ns + k * 10**6)
            time.sleep(0.05)
            with self.lock:
                if sink:
                    return sink[-1]
        raise AssertionError(f"no {what} after 100 pairs")

    def wait_fused(self, count: int, timeout: float = 10.0) -> list[Image]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.fused) >= count:
                    return list(self.fused)
            time.sleep(0.005)
        raise AssertionError(f"got {len(self.fused)} fused images, expected {count}")

    def set_params(self, **values) -> list:
        req = SetParameters.Request()
        for name, v in values.items():
            if isinstance(v, bool):
                pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v)
            elif isinstance(v, str):
                pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=v)
            else:
                pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(v))
            req.parameters.append(Parameter(name=name, value=pv))
        return self._call(self.set_client, req).results

    def _call(self, client, req):
        assert client.wait_for_service(timeout_sec=10.0), "node's parameter service missing"
        future = client.call_async(req)
        deadline = time.monotonic() + 10.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return future.result()


def node_command(*extra: str) -> list[str]:
    """The executable as ``ros2 run``/the launch file would start it: lib/lutfuse_ros/ of the
    colcon install space, or the pip console script."""
    script = executable("fusion_node")
    return [script, "--ros-args", "--params-file", str(config_file("fusion.yaml")),
            "-r", f"thermal/image:={THERMAL_TOPIC}", "-r", f"rgb/image:={RGB_TOPIC}",
            "-r", f"rgb/camera_info:={INFO_TOPIC}", "-p", "use_sim_time:=true", *extra]


@pytest.fixture(scope="module")
def harness(rclpy_session, tmp_path_factory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(node_command(), stdout=out, stderr=subprocess.STDOUT)
    h = Harness()
    try:
        # Ready = its parameter service answers and it has subscribed to both cameras.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                h.pub_t.get_subscription_count() == 0 or h.pub_v.get_subscription_count() == 0
                or h.node.count_publishers("/fused/image") == 0):
            assert proc.poll() is None, f"node exited: {log.read_text()}"
            time.sleep(0.05)
        h.proc, h.log = proc, log
        yield h
    finally:
        h.close()
        proc.terminate()
        proc.wait(timeout=10)


def clear(h: Harness) -> None:
    with h.lock:
        h.fused.clear()
        h.infos.clear()
        h.diags.clear()


def test_node_declares_every_parameter(harness):
    req = ListParameters.Request()
    names = set(harness._call(harness.list_client, req).result.names)
    assert {p.name for p in PARAMS} <= names


def test_fused_stream_equals_the_core_output_byte_for_byte(harness):
    """16-bit thermal of another size (AGC + registration) and real 8-bit pairs when the
    shared data is present; the node and a local pipeline see the same sequence."""
    sequence = []
    for seed in range(3):  # thermal 96x128 mono16 -> RGB 120x160 bgr8
        ir, rgb = synthetic_pair(seed=seed, shape=(120, 160))
        counts = (ir[::5, ::5].repeat(4, 0).repeat(4, 1).astype(np.uint16) * 50 + 9000)
        sequence.append((numpy_to_image(counts, "mono16"),
                         numpy_to_image(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8")))
    if (SHARED / "data/ivif/MSRS_test").exists():
        listing = match_pairs(SHARED / "data/ivif/MSRS_test/ir", SHARED / "data/ivif/MSRS_test/vis")
        for _, ir_p, vis_p in listing.pairs[:2]:
            sequence.append((numpy_to_image(read_ir(ir_p), "mono8"),
                             numpy_to_image(read_visible(vis_p), "rgb8")))
    expected = FramePipeline.from_config(NodeSettings().pipeline)
    clear(harness)
    info = CameraInfo(width=160, height=120, distortion_model="plumb_bob")
    harness.pub_i.publish(info)
    time.sleep(0.2)
    for i, (thermal, rgb) in enumerate(sequence):
        stamp = 5_000_000_000 + i * 33_000_000
        harness.publish(thermal, rgb, stamp)
        got = harness.wait_fused(i + 1)[-1]  # one at a time: none dropped, same state
        want = expected(thermal, rgb)
        assert (got.header.stamp.sec * 10**9 + got.header.stamp.nanosec) == stamp
        assert got.header.frame_id == "rgb_optical_frame"
        assert got.encoding == rgb.encoding
        np.testing.assert_array_equal(image_to_numpy(got), want.image)
    with harness.lock:
        assert harness.infos and harness.infos[-1].header.stamp == got.header.stamp
        assert harness.infos[-1].width == 160


def test_diagnostics_say_where_each_pair_spends_its_time(harness):
    thermal, rgb = stream_pair()
    clear(harness)
    for k in range(5):
        harness.publish(thermal, rgb, 30_000_000_000 + k * 33_000_000)
        harness.wait_fused(k + 1)
    deadline = time.monotonic() + 5
    timing = {}
    while time.monotonic() < deadline and "publish (ms)" not in timing:
        time.sleep(0.1)
        with harness.lock:
            groups = [s for _, d in harness.diags for s in d.status if s.name.endswith("timing")]
        timing = {kv.key: float(kv.value) for kv in groups[-1].values} if groups else {}
    stages = [k.removesuffix(" (ms)") for k in timing]
    # the node's path in order: worker hand-over, the pipeline's stages, publication
    assert stages[:4] == ["handover", "decode", "agc", "registration"], stages
    assert {"colour", "gradient", "context", "lookup+to_rgb", "output"} <= set(stages)
    assert stages[-1] == "publish"
    assert all(v >= 0 for v in timing.values()) and timing["lookup+to_rgb (ms)"] > 0


def stream_pair(shape=(96, 128)):
    ir, rgb = synthetic_pair(seed=7, shape=shape)
    return numpy_to_image(ir, "mono8"), numpy_to_image(rgb, "rgb8")


def test_sync_with_offset_jitter_and_rate_mismatch(harness):
    """Thermal at 10 Hz stamped 8 +- 3 ms late, RGB at 30 Hz: one fused frame per thermal
    frame, each carrying an RGB stamp."""
    thermal, rgb = stream_pair()
    clear(harness)
    rng = np.random.default_rng(0)
    rgb_stamps, thermal_count = [], 0
    t0 = 20_000_000_000
    for k in range(45):
        stamp = t0 + k * 33_333_333
        rgb.header.stamp.sec, rgb.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        harness.pub_v.publish(rgb)
        rgb_stamps.append(stamp)
        if k % 3 == 0:
            ts = stamp + 8_000_000 + int(rng.integers(-3_000_000, 3_000_000))
            thermal.header.stamp.sec, thermal.header.stamp.nanosec = divmod(ts, 1_000_000_000)
            harness.pub_t.publish(thermal)
            thermal_count += 1
        time.sleep(1 / 30)
    fused = harness.wait_fused(thermal_count - 2)
    time.sleep(0.3)
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in harness.fused]
    assert set(stamps) <= set(rgb_stamps) and len(fused) <= thermal_count


def level_of(diag: DiagnosticArray, suffix: str) -> bytes:
    return next(s.level for s in diag.status if s.name.endswith(suffix))


def test_silent_camera_is_an_error_within_a_second_and_recovers(harness):
    thermal, rgb = stream_pair()
    clear(harness)

    def run(seconds, with_thermal, t_start):
        t_end = time.monotonic() + seconds
        k = 0
        while time.monotonic() < t_end:
            stamp = t_start + k * 33_333_333
            rgb.header.stamp.sec, rgb.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            harness.pub_v.publish(rgb)
            if with_thermal:
                thermal.header.stamp = rgb.header.stamp
                harness.pub_t.publish(thermal)
            k += 1
            time.sleep(1 / 30)
        return t_start + k * 33_333_333

    t = run(1.0, True, 30_000_000_000)
    stopped = time.monotonic()
    t = run(1.5, False, t)  # the thermal camera stops, RGB goes on
    with harness.lock:
        errors = [at for at, d in harness.diags
                  if at > stopped and level_of(d, "inputs") == DiagnosticStatus.ERROR]
    assert errors and errors[0] - stopped <= 1.0, "no ERROR within 1 s of the camera stopping"
    restarted = time.monotonic()
    run(1.2, True, t)
    with harness.lock:
        oks = [at for at, d in harness.diags
               if at > restarted and level_of(d, "inputs") == DiagnosticStatus.OK]
        last = harness.diags[-1][1]
    assert oks and oks[0] - restarted <= 1.0
    values = {kv.key: kv.value for s in last.status for kv in s.values}
    assert float(values["latency p99 (ms)"]) > 0 and values["model id"].startswith("sha256:")
    assert "context net on onnxruntime" in values["engine"]  # the torch-free engine by default
    # registration health: the first fused pair was scored (registered procedural pair)
    reg = next(st for st in last.status if st.name.endswith("registration"))
    assert reg.level == DiagnosticStatus.OK and reg.message.startswith("fit ")
    assert float({kv.key: kv.value for kv in reg.values}["score"]) > 0.3


def test_malformed_messages_do_not_stop_the_node(harness, tmp_path):
    thermal, rgb = stream_pair()
    calib = tmp_path / "calib.yaml"
    calib.write_text("mode: resize\nthermal_size: [128, 96]\n")
    assert harness.set_params(**{"registration.calibration_file": str(calib)})[0].successful

    def bad(kind: str) -> tuple[Image, Image]:
        t, v = stream_pair()
        if kind == "encoding":
            v.encoding = "yuv422"
        elif kind == "thermal_encoding":
            t.encoding = "rgb8"
        elif kind == "step":
            v.step = 10
        elif kind == "truncated":
            v.data = bytes(v.data)[:100]
        elif kind == "empty":
            t.height = t.width = 0
            t.data = b""
        elif kind == "registration_size":
            t = numpy_to_image(np.zeros((30, 40), np.uint8), "mono8")
        return t, v

    kinds = ("encoding", "thermal_encoding", "step", "truncated", "empty", "registration_size")
    stamp = 40_000_000_000
    for kind in kinds:
        for _ in range(200):
            stamp += 1_000_000
            harness.publish(*bad(kind), stamp)
        time.sleep(0.05)
    time.sleep(0.5)
    assert harness.proc.poll() is None, harness.log.read_text()[-2000:]
    clear(harness)
    stamp += 10**9
    harness.publish(thermal, rgb, stamp)
    got = harness.wait_fused(1)[-1]
    assert image_to_numpy(got).shape == (96, 128, 3)
    time.sleep(0.7)
    with harness.lock:
        last = harness.diags[-1][1]
    values = {kv.key: kv.value for s in last.status for kv in s.values}
    assert int(values["bad input pairs"]) >= len(kinds)  # counted (stale ones were dropped)
    assert harness.set_params(**{"registration.calibration_file": ""})[0].successful


def test_model_hot_swap_refuses_a_bad_file_and_swaps_a_good_one(harness, tmp_path):
    thermal, rgb = stream_pair()
    # per_image gradient range: stateless, so the expected images are easy to compute
    settings = NodeSettings.from_values({"gradient.mode": "per_image"})
    assert harness.set_params(**{"gradient.mode": "per_image"})[0].successful

    def fused_now(stamp):
        clear(harness)
        harness.publish(thermal, rgb, stamp)
        return image_to_numpy(harness.wait_fused(1)[-1]).copy()

    official = FramePipeline.from_config(settings.pipeline)(thermal, rgb).image
    np.testing.assert_array_equal(fused_now(50_000_000_000), official)

    garbage = tmp_path / "broken.npz"
    garbage.write_bytes(b"not a model at all")
    result = harness.set_params(model_path=str(garbage))[0]
    assert not result.successful and "broken.npz" in result.reason
    np.testing.assert_array_equal(fused_now(51_000_000_000), official)  # old model runs on

    model = load_model()
    model.lut = np.ascontiguousarray(model.lut[..., ::-1])  # a visibly different LUT
    new_path = tmp_path / "swapped.npz"
    save_model(model, new_path)
    assert harness.set_params(model_path=str(new_path))[0].successful
    swapped = FramePipeline.from_config(
        settings.with_values({"model_path": str(new_path)}).pipeline)(thermal, rgb)
    assert not np.array_equal(swapped.image, official)
    np.testing.assert_array_equal(fused_now(52_000_000_000), swapped.image)
    assert harness.set_params(model_path="", **{"gradient.mode": "stable"})[0].successful


def test_status_message_reports_model_inputs_and_the_newest_frame(harness):
    """``fused/status`` (lutfuse_ros/FusionStatus) carries the header of the newest fused frame,
    the model id, rates, counters, latency and the thermal AGC range."""
    if FusionStatus is None:
        pytest.skip("lutfuse_ros messages not built here (pip install): scripts/test.sh runs "
                    "this test from the colcon install space (scripts/colcon_build.sh)")
    ir, rgb = synthetic_pair(seed=4, shape=(96, 128))
    counts = ir.astype(np.uint16) * 40 + 20_000  # 16-bit thermal: the AGC range is in counts
    clear(harness)
    with harness.lock:
        harness.statuses.clear()
    stamp = 0
    for k in range(40):  # distinct frames (repeated ones freeze the AGC): its range converges
        stamp = 90_000_000_000 + k * 33_333_333
        harness.publish(numpy_to_image(counts + k % 2, "mono16"), numpy_to_image(rgb, "rgb8"),
                        stamp)
        time.sleep(1 / 30)
    harness.wait_fused(30)
    last_fused = harness.fused[-1].header.stamp
    deadline = time.monotonic() + 5.0
    status = None
    while time.monotonic() < deadline and status is None:
        with harness.lock:
            status = next((m for m in reversed(harness.statuses)
                           if m.header.stamp == last_fused), None)
        time.sleep(0.05)
    assert status is not None, "no fused/status carrying the newest fused frame's stamp"
    assert status.header.frame_id == "rgb_optical_frame"
    assert status.model_id == FramePipeline.from_config(NodeSettings().pipeline).fuser.model_id
    assert "numba backend" in status.engine
    assert status.pairs_fused >= 30 and status.pairs_synced >= status.pairs_fused
    assert status.rgb_rate_hz > 2 and status.thermal_rate_hz > 2
    assert 0 <= status.thermal_silent_s < 2 and 0 <= status.rgb_silent_s < 2
    assert 0 < status.latency_p50_ms <= status.latency_p99_ms
    assert counts.min() - 20 <= status.agc_low < status.agc_high <= counts.max() + 20
    assert status.registration_score > 0.3  # scored on the first pair (period 5 s)


def test_node_runs_without_torch(harness, tmp_path):
    """The robot runtime: the same node with ``import torch`` impossible fuses with the
    model's ONNX context network and says which engine runs (log and diagnostics)."""
    code = ("import sys; sys.modules['torch'] = None; "
            "from lutfuse_ros.ros.fusion_node import main; main()")
    cmd = [sys.executable, "-c", code, *node_command("-r", "__ns:=/torchfree")[1:]]
    received: list[Image] = []
    harness.node.create_subscription(Image, "/torchfree/fused/image", harness.keep(received),
                                     10)
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while harness.node.count_publishers("/torchfree/fused/image") == 0:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        thermal, rgb = stream_pair()
        got = harness.publish_until_received(thermal, rgb, 200 * 10**9, received,
                                             "fused image from the torch-free node")
        want = FramePipeline.from_config(NodeSettings().pipeline)(thermal, rgb).image
        np.testing.assert_array_equal(image_to_numpy(got), want)
        assert "context net on onnxruntime" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_gpu_asked_for_on_a_machine_without_one_stops_the_node_at_start(tmp_path):
    """fusion.device cuda where torch sees no GPU: one line that says so, exit 2, no
    traceback and no per-frame errors."""
    torch = pytest.importorskip("torch", reason="the torch backend needs torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the node would start")
    log = tmp_path / "node.log"
    with open(log, "w") as out:
        proc = subprocess.run(node_command("-p", "fusion.backend:=torch", "-p",
                                           "fusion.device:=cuda", "-r", "__ns:=/nogpu"),
                              stdout=out, stderr=subprocess.STDOUT, timeout=60)
    text = log.read_text()
    assert proc.returncode == 2, text
    assert "cannot start: device 'cuda' requested but torch sees no CUDA device" in text
    assert "Traceback" not in text


def test_calibrate_service_estimates_writes_and_swaps_the_registration(harness, tmp_path):
    """``~/calibrate`` (std_srvs/Trigger) on a stream from an uncalibrated rig: the node
    collects pairs, estimates the homography, writes the calibration file and swaps the
    registration in through registration.calibration_file (refuse-or-swap)."""
    from std_srvs.srv import Trigger

    from lutfuse_ros.core.geometry import corner_error
    from lutfuse_ros.core.synthetic import random_thermal_view, reimage_thermal

    thermal_size = (320, 256)
    h_true = random_thermal_view((640, 480), thermal_size, np.random.default_rng(0))
    frames = []
    for seed in range(3):
        ir, rgb = synthetic_pair(seed=100 + seed, shape=(480, 640))
        frames.append((numpy_to_image(reimage_thermal(ir, h_true, thermal_size), "mono8"),
                       numpy_to_image(rgb, "rgb8")))
    out = tmp_path / "rig.yaml"
    assert all(r.successful for r in harness.set_params(**{
        "calibration.output_file": str(out), "calibration.interval": 0.2}))
    client = harness.node.create_client(Trigger, f"{NODE}/calibrate")
    response = harness._call(client, Trigger.Request())
    assert response.success, response.message
    assert not harness._call(client, Trigger.Request()).success  # one at a time
    clear(harness)
    state, deadline, k = "", time.monotonic() + 120, 0
    while time.monotonic() < deadline and not state.startswith(("swapped", "refused", "fail")):
        thermal, rgb = frames[k % 3]
        harness.publish(thermal, rgb, 200_000_000_000 + k * 100_000_000)
        k += 1
        time.sleep(0.1)
        with harness.lock:
            states = [s.message for _, d in harness.diags[-1:] for s in d.status
                      if s.name.endswith("calibration")]
        state = states[0] if states else state
    try:
        assert state.startswith("swapped"), state or "no calibration state in /diagnostics"
        reg = Registration.from_yaml(out)
        assert corner_error(reg.homography, h_true, thermal_size) < 5.0
        with harness.lock:
            last = harness.diags[-1][1]
        values = {kv.key: kv.value for s in last.status if s.name.endswith("registration")
                  for kv in s.values}
        assert values["calibration file"] == str(out) and values["mode"] == "homography"
    finally:
        harness.set_params(**{"registration.calibration_file": ""})
