"""Pairs from real rosbag2 files (written with rosbags, read back through the node's sync
and preprocessing): raw and compressed topics, sqlite3 and MCAP, truncated bags."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags", reason="needs the rosbags library")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from lutfuse_ros.cli import main as lutfuse  # noqa: E402
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible  # noqa: E402
from lutfuse_ros.core.synthetic import synthetic_pair  # noqa: E402
from lutfuse_ros.stream.bagio import BagError, BagReport, read_pairs  # noqa: E402

from conftest import needs_torch

TS = get_typestore(Stores.ROS2_HUMBLE)
Image = TS.types["sensor_msgs/msg/Image"]
CompressedImage = TS.types["sensor_msgs/msg/CompressedImage"]
Header, Time = TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]


def header(stamp_ns: int, frame: str):
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame)


def image(arr: np.ndarray, encoding: str, stamp_ns: int, frame: str):
    step = arr.shape[1] * arr.itemsize * (1 if arr.ndim == 2 else arr.shape[2])
    return Image(header=header(stamp_ns, frame), height=arr.shape[0], width=arr.shape[1],
                 encoding=encoding, is_bigendian=0, step=step,
                 data=np.frombuffer(arr.tobytes(), np.uint8))


def write_bag(path: Path, frames: int = 6, storage=StoragePlugin.MCAP, compressed=False,
              thermal_lag_ns: int = 3_000_000) -> list[tuple[np.ndarray, np.ndarray]]:
    """A bag as ``ros2 bag record /thermal/image /rgb/image`` would write it: thermal mono16
    (stamped a few ms late) and RGB bgr8 (raw) or JPEG (compressed). Returns the frames."""
    sources = []
    with Writer(path, version=8, storage_plugin=storage) as w:
        ct = w.add_connection("/thermal/image", Image.__msgtype__, typestore=TS)
        cv = w.add_connection("/rgb/image", (CompressedImage if compressed else Image).__msgtype__,
                              typestore=TS)
        for k in range(frames):
            ir, rgb = synthetic_pair(seed=k, shape=(96, 128))
            counts = ir.astype(np.uint16) * 50 + 10000
            t = 10**9 + k * 100_000_000
            w.write(ct, t, TS.serialize_cdr(image(counts, "mono16", t + thermal_lag_ns, "th"),
                                            Image.__msgtype__))
            if compressed:
                ok, jpg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
                msg = CompressedImage(header=header(t, "rgb"), format="jpeg",
                                      data=np.frombuffer(jpg.tobytes(), np.uint8))
                w.write(cv, t, TS.serialize_cdr(msg, CompressedImage.__msgtype__))
            else:
                bgr = np.ascontiguousarray(rgb[:, :, ::-1])
                w.write(cv, t, TS.serialize_cdr(image(bgr, "bgr8", t, "rgb"), Image.__msgtype__))
            sources.append((counts, rgb))
    return sources


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_raw_topics_pair_and_preprocess_like_the_node(tmp_path, storage):
    sources = write_bag(tmp_path / "bag", storage=storage)
    report = BagReport()
    pairs = list(read_pairs(tmp_path / "bag", report=report))
    assert len(pairs) == 6 and report.pairs == 6 and report.undecodable == 0
    stamp, ir, rgb = pairs[2]
    assert stamp == 10**9 + 2 * 100_000_000  # the RGB stamp
    np.testing.assert_array_equal(rgb, sources[2][1])
    assert ir.dtype == np.uint8 and ir.shape == (96, 128) and ir.max() > 200  # AGC applied


def test_compressed_rgb_topic(tmp_path):
    sources = write_bag(tmp_path / "bag", compressed=True)
    pairs = list(read_pairs(tmp_path / "bag"))
    assert len(pairs) == 6
    assert np.abs(pairs[0][2].astype(int) - sources[0][1]).mean() < 3  # JPEG q98


def test_bag_export_command_writes_an_image_folder_dataset(tmp_path):
    write_bag(tmp_path / "bag")
    assert lutfuse(["bag-export", str(tmp_path / "bag"), "--out", str(tmp_path / "ds")]) == 0
    listing = match_pairs(tmp_path / "ds" / "ir", tmp_path / "ds" / "vis")
    assert len(listing.pairs) == 6
    assert read_ir(listing.pairs[0][1]).shape == read_visible(listing.pairs[0][2]).shape[:2]


def test_fuse_command_shows_what_the_node_publishes_for_a_recording(tmp_path):
    """lutfuse fuse --bag: the recording's pairs through the node's pipeline, frame after
    frame, equal to the node's FramePipeline on the same messages; and a contact sheet."""
    from lutfuse_ros.ros.params import NodeSettings
    from lutfuse_ros.stream.codec import numpy_to_image
    from lutfuse_ros.stream.pipeline import FramePipeline

    sources = write_bag(tmp_path / "bag")
    sheet = tmp_path / "sheet.png"
    assert lutfuse(["fuse", "--bag", str(tmp_path / "bag"), "--out", str(tmp_path / "fused"),
                    "--sheet", str(sheet), "--sheet-every", "2"]) == 0
    fused = sorted((tmp_path / "fused").glob("*.png"), key=lambda f: int(f.stem))
    assert len(fused) == len(sources) and sheet.is_file()
    node = FramePipeline.from_config(NodeSettings().pipeline)
    for (counts, rgb), path in zip(sources, fused):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        want = node(numpy_to_image(counts, "mono16"), numpy_to_image(bgr, "bgr8")).image
        got = cv2.imread(str(path))  # BGR, as the node's bgr8 output
        assert np.abs(got.astype(int) - want).max() <= 1, path.name


def test_truncated_mcap_yields_what_is_readable_and_says_what_was_lost(tmp_path):
    write_bag(tmp_path / "bag", frames=12)
    mcap = next((tmp_path / "bag").glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])  # the recorder lost power: no footer
    report = BagReport()
    pairs = list(read_pairs(tmp_path / "bag", report=report))
    assert 4 <= len(pairs) < 12 and report.pairs == len(pairs)
    assert "damaged bag" in report.read_error and "read front to back" in report.summary()
    assert lutfuse(["bag-export", str(tmp_path / "bag"), "--out", str(tmp_path / "ds")]) == 1


def test_truncated_sqlite_bag_is_a_clear_error(tmp_path):
    """sqlite3 cannot open a cut database at all: no pairs, but a named error, no crash."""
    write_bag(tmp_path / "bag", frames=12, storage=StoragePlugin.SQLITE3)
    db = next((tmp_path / "bag").glob("*.db3"))
    db.write_bytes(db.read_bytes()[: db.stat().st_size * 2 // 3])
    with pytest.raises(BagError, match="cannot open as a rosbag2 .*malformed"):
        list(read_pairs(tmp_path / "bag"))
    assert lutfuse(["bag-export", str(tmp_path / "bag"), "--out", str(tmp_path / "ds")]) == 2


def test_missing_topic_and_non_bag_are_named(tmp_path):
    write_bag(tmp_path / "bag", frames=2)
    with pytest.raises(BagError, match="no topic /boson/image; it has: /rgb/image"):
        list(read_pairs(tmp_path / "bag", thermal_topic="/boson/image"))
    (tmp_path / "junk.mcap").write_bytes(b"not a bag")
    with pytest.raises(BagError, match="cannot open as a rosbag2"):
        list(read_pairs(tmp_path / "junk.mcap"))


@needs_torch
def test_training_reads_pairs_straight_from_a_bag(tmp_path):
    from lutfuse_training.data import load_pairs

    write_bag(tmp_path / "bag")
    pairs = load_pairs([tmp_path / "bag"], min_side=64, progress=False)
    assert len(pairs) == 6 and pairs[0].ir.dtype == np.uint8
