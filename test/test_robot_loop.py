"""The robot loop with real processes, real DDS and real bags: cameras -> recorder -> bag ->
distillation from the bag -> model file -> parameter set on the live fusion node -> the fused
stream is the new model's output."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (rclpy)")

from test_node import INFO_TOPIC, RGB_TOPIC, THERMAL_TOPIC, Harness, clear, node_command  # noqa: E402

from lutfuse_ros.core.synthetic import synthetic_pair  # noqa: E402
from lutfuse_ros.resources import config_file  # noqa: E402
from lutfuse_ros.ros.interfaces import FusionStatus  # noqa: E402  (None: not built by colcon)
from lutfuse_ros.ros.params import NodeSettings  # noqa: E402
from lutfuse_ros.stream.bagio import BagReport, read_pairs  # noqa: E402
from lutfuse_ros.stream.codec import image_to_numpy, numpy_to_image  # noqa: E402
from lutfuse_ros.stream.pipeline import FramePipeline  # noqa: E402

from conftest import ROOT, executable, needs_torch  # noqa: E402

TINY = ROOT / "training" / "configs" / "tiny.yaml"


def bag_messages(bag: Path, topic: str) -> list:
    """Every message of ``topic``, decoded with rosbags (this package's types registered)."""
    from rosbags.rosbag2 import Reader

    from lutfuse_ros.stream.bagio import lutfuse_typestore

    typestore = lutfuse_typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [typestore.deserialize_cdr(raw, c.msgtype)
                for c, _, raw in reader.messages(connections=conns)]


def recorder_command(bag: Path, max_pairs: int, *extra: str) -> list[str]:
    script = executable("recorder_node")
    return [script, "--ros-args", "--params-file", str(config_file("fusion.yaml")),
            "-r", f"thermal/image:={THERMAL_TOPIC}", "-r", f"rgb/image:={RGB_TOPIC}",
            "-r", f"rgb/camera_info:={INFO_TOPIC}", "-p", f"bag_path:={bag}",
            "-p", f"max_pairs:={max_pairs}", *extra]


def camera_frames(count: int):
    """Thermal mono16 + RGB rgb8 messages of distinct scenes."""
    frames = []
    for k in range(count):
        ir, rgb = synthetic_pair(seed=20 + k, shape=(96, 128), night=bool(k % 2))
        frames.append((numpy_to_image(ir.astype(np.uint16) * 60 + 8000, "mono16"),
                       numpy_to_image(rgb, "rgb8")))
    return frames


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def record(harness: Harness, bag: Path, frames, max_pairs: int, log: Path, *extra: str,
           cycle: bool = True, node_status: bool = False) -> None:
    """Run the recorder until it stops at ``max_pairs``; publish ``frames`` (over and over
    when ``cycle``: best-effort delivery may drop a few). ``node_status``: a fusion node
    runs, start only once the recorder writes its fused/status (where messages are built)."""
    def subscribers():
        return (harness.pub_t.get_subscription_count(), harness.pub_v.get_subscription_count(),
                harness.node.count_subscribers("/fused/status"))
    base = subscribers()
    # the recorder subscribes fused/status too where the messages are built
    wanted = (1, 1, 1 if FusionStatus is not None and "record_status:=false" not in extra
              else 0)
    with open(log, "w") as out:
        proc = subprocess.Popen(recorder_command(bag, max_pairs, *extra), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: all(n - b >= w for n, b, w in zip(subscribers(), base, wanted)) and
                 "recording" in log.read_text(), 60, "the recorder to subscribe")
        if node_status and FusionStatus is not None:
            wait_for(lambda: "fused/status too" in log.read_text(), 30,
                     "the recorder to receive fused/status")
        time.sleep(0.3)
        stamp = 70 * 10**9
        deadline = time.monotonic() + 45
        while proc.poll() is None and time.monotonic() < deadline:
            for thermal, rgb in frames:
                stamp += 100_000_000
                harness.publish(thermal, rgb, stamp)
                time.sleep(0.05)
                if proc.poll() is not None:
                    break
            if not cycle:
                break
        proc.wait(timeout=30)  # it stops by itself at max_pairs
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.returncode == 0, log.read_text()


def test_recorder_writes_pairs_that_bags_tools_read(rclpy_session, tmp_path):
    harness = Harness()
    try:
        frames = camera_frames(8)
        record(harness, tmp_path / "bag", frames, max_pairs=6, log=tmp_path / "rec.log")
    finally:
        harness.close()
    report = BagReport()
    pairs = list(read_pairs(tmp_path / "bag", thermal_topic=THERMAL_TOPIC, rgb_topic=RGB_TOPIC,
                            report=report))
    assert len(pairs) == 6, report.summary()
    sent = [image_to_numpy(msg) for _, msg in frames]
    for _, _, rgb in pairs:  # every recorded RGB is one of the frames sent, unchanged
        assert any(np.array_equal(rgb, f) for f in sent)


def test_recorder_skips_near_duplicate_frames(rclpy_session, tmp_path):
    """A robot standing still: 3 scenes, each sent 3 times; with min_change only the 3 scenes
    are kept (the recorder stops at max_pairs=3 only if the repeats were skipped)."""
    harness = Harness()
    try:
        frames = [f for f in camera_frames(3) for _ in range(3)]
        record(harness, tmp_path / "bag", frames, 3, tmp_path / "rec.log",
               "-p", "min_change:=2.0", cycle=False)
    finally:
        harness.close()
    pairs = list(read_pairs(tmp_path / "bag"))
    scenes = [image_to_numpy(v) for _, v in camera_frames(3)]
    assert len(pairs) == 3
    for (_, _, rgb), scene in zip(pairs, scenes):
        np.testing.assert_array_equal(rgb, scene)


def test_recorder_takes_compressed_topics(rclpy_session, tmp_path):
    """Thermal as 16-bit PNG and RGB as JPEG CompressedImage (image_transport's topics)."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    harness = Harness()
    pub_t = harness.node.create_publisher(CompressedImage, THERMAL_TOPIC + "/compressed",
                                          qos_profile_sensor_data)
    pub_v = harness.node.create_publisher(CompressedImage, RGB_TOPIC + "/compressed",
                                          qos_profile_sensor_data)
    log = tmp_path / "rec.log"
    cmd = recorder_command(tmp_path / "bag", 3, "-p", "rgb_compressed:=true", "-p",
                           "thermal_compressed:=true")
    cmd = [c.replace(f"thermal/image:={THERMAL_TOPIC}", f"thermal/image/compressed:="
                     f"{THERMAL_TOPIC}/compressed").replace(
        f"rgb/image:={RGB_TOPIC}", f"rgb/image/compressed:={RGB_TOPIC}/compressed") for c in cmd]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: pub_t.get_subscription_count() and pub_v.get_subscription_count(),
                 60, "the recorder to subscribe")
        time.sleep(0.3)
        k = 0
        while proc.poll() is None and k < 200:
            ir, rgb = synthetic_pair(seed=k % 5, shape=(96, 128))
            stamp = 80 * 10**9 + k * 100_000_000
            for pub, fmt, img in ((pub_t, ".png", ir.astype(np.uint16) * 60 + 8000),
                                  (pub_v, ".jpg", rgb[:, :, ::-1])):
                msg = CompressedImage(format=fmt[1:])
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                msg.data = cv2.imencode(fmt, img)[1].tobytes()
                pub.publish(msg)
            k += 1
            time.sleep(0.05)
        proc.wait(timeout=30)
    finally:
        harness.close()
        if proc.poll() is None:
            proc.terminate()
    pairs = list(read_pairs(tmp_path / "bag"))
    assert len(pairs) == 3 and pairs[0][1].dtype == np.uint8 and pairs[0][2].shape == (96, 128, 3)


def test_recorder_refuses_an_unwritable_path(rclpy_session, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # unwritable even for root: its parent is a file
    result = subprocess.run(recorder_command(blocker / "bag", 1), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "missing or not writable" in result.stdout


@needs_torch
def test_record_train_deploy_loop(rclpy_session, tmp_path):
    from lutfuse_training.cli import main as train

    node_log = tmp_path / "node.log"
    with open(node_log, "w") as out:
        # status at 5 Hz: a few fused/status messages fall within the short recording
        node = subprocess.Popen(node_command("-p", "status.period:=0.2"), stdout=out,
                                stderr=subprocess.STDOUT)
    harness = Harness()
    try:
        wait_for(lambda: harness.pub_t.get_subscription_count() >= 1 and
                 harness.pub_v.get_subscription_count() >= 1, 60, "the node")
        thermal, rgb = camera_frames(1)[0]
        # once it has fused, its fused/status carries a stamp (the recorder skips zero stamps)
        harness.publish_until_received(thermal, rgb, 60 * 10**9, harness.fused,
                                       "fused image from the node")
        t0 = time.monotonic()
        record(harness, tmp_path / "bag", camera_frames(10), max_pairs=8,
               log=tmp_path / "rec.log", node_status=True)
        t_record = time.monotonic() - t0
        run = tmp_path / "run"
        base = ["--config", str(TINY), "--data", str(tmp_path / "bag"), "--out", str(run)]
        assert train(["teacher", *base]) == 0
        assert train(["distill", *base, "--teacher", str(run / "teacher.pt")]) == 0
        t_train = time.monotonic() - t0 - t_record
        # Deploy to the running node, which was fusing with the default model all along.
        wait_for(lambda: harness.node.count_publishers("/fused/image") >= 1, 60, "the node")
        settings = NodeSettings.from_values({"gradient.mode": "per_image",
                                             "model_path": str(run / "model.npz")})
        results = harness.set_params(model_path=settings.model_path,
                                     **{"gradient.mode": "per_image"})
        assert all(r.successful for r in results), [r.reason for r in results]
        thermal, rgb = camera_frames(1)[0]
        clear(harness)
        harness.publish(thermal, rgb, 90 * 10**9)
        got = image_to_numpy(harness.wait_fused(1)[-1])
        expected = FramePipeline.from_config(settings.pipeline)(thermal, rgb).image
        default = FramePipeline.from_config(
            settings.with_values({"model_path": ""}).pipeline)(thermal, rgb).image
        assert not np.array_equal(expected, default)  # the new model does change the output
        np.testing.assert_array_equal(got, expected)
        print(f"loop: record {t_record:.1f} s, train {t_train:.1f} s")
        if FusionStatus is not None:  # colcon build: the node's status is in the bag too
            statuses = bag_messages(tmp_path / "bag", "/fused/status")
            assert statuses and all(m.model_id.startswith("sha256:") for m in statuses)
            assert statuses[-1].pairs_fused >= 1
    finally:
        harness.close()
        node.terminate()
        node.wait(timeout=10)


def test_recorder_splits_an_hours_long_recording_into_pieces(rclpy_session, tmp_path):
    """split_bytes: a folder of complete bags in time order, each pair in exactly one, each
    piece with the recording note; the folder converts to shards as one recording set."""
    from lutfuse_ros.stream.shards import ShardSet, convert, expand_bags

    harness = Harness()
    try:
        # a 96x128 pair is ~62 kB (mono16 + rgb8): a new piece after every third pair
        record(harness, tmp_path / "run", camera_frames(8), 7, tmp_path / "rec.log",
               "-p", "split_bytes:=130000")
    finally:
        harness.close()
    pieces = expand_bags([tmp_path / "run"])
    assert [p.name for p in pieces] == ["run_0000", "run_0001", "run_0002"]
    stamps = [[s for s, _, _ in read_pairs(p)] for p in pieces]
    assert [len(s) for s in stamps] == [3, 3, 1]
    flat = [s for piece in stamps for s in piece]
    assert flat == sorted(set(flat))  # each pair once, in time order across the pieces
    for k, piece in enumerate(pieces):
        assert '"piece": %d' % k in bag_messages(piece, "/lutfuse/recording_config")[0].data
    from lutfuse_ros.core.preprocess import PreprocessConfig

    convert(pieces, tmp_path / "shards", PreprocessConfig(), progress=False)
    assert ShardSet.open(tmp_path / "shards").pairs == 7
