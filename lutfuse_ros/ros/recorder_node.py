"""The recorder: synchronised thermal + RGB pairs into a rosbag2 for training a LUT.

Subscriptions take the serialised (CDR) messages as they arrive (``raw=True``): the header
stamp is read from the first bytes, pairs are made with the node's
:class:`ApproximateTimePolicy`, and both messages are written unchanged with the ``rosbags``
writer (MCAP by default, sqlite3 on request), so ``ros2 bag info/play`` and
``lutfuse bag-export`` read the result. The preprocessing parameters in use (the fusion
node's, from the same params file) go into the bag as a ``std_msgs/String`` JSON on
``/lutfuse/recording_config``; ``rgb/camera_info`` is recorded as it comes, and so is the
fusion node's ``fused/status`` (``record_status``, where the messages were built by colcon).

For hours of recording, ``split_bytes`` / ``split_duration`` (as ``ros2 bag record
--max-bag-size/--max-bag-duration``) make ``bag_path`` a folder of complete bags,
``<name>_0000``, ``<name>_0001``, ... in time order, each with the config note (and the
status topic). A piece is closed only between pairs, so every pair is in exactly one piece,
and a power loss costs at most the open piece's tail (the damaged-MCAP reader recovers its
complete messages). ``lutfuse shards`` and ``lutfuse-train --data`` take the folder.

Parameters: :data:`~.params.RECORDER_PARAMS` (declared with descriptors, ranges and
choices; the README's table is generated from them), and the fusion node's (``sync.*`` is
used here).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..core.errors import ConfigError, LutfuseError
from ..stream.bagio import lutfuse_typestore
from ..stream.cdr import header_from_cdr
from ..stream.codec import ImageDecodeError, image_to_numpy
from ..stream.sync import RGB, THERMAL, ApproximateTimePolicy, stamp_to_ns
from .interfaces import FusionStatus
from .params import (
    PARAMS,
    RECORDER_BY_NAME,
    RECORDER_PARAMS,
    NodeSettings,
    RecorderSettings,
    check_choice,
    descriptor,
)

CONFIG_TOPIC = "/lutfuse/recording_config"


def cdr_stamp_ns(raw: bytes) -> int:
    """Header stamp (ns) of a serialised message whose first field is ``std_msgs/Header``.

    Raises:
        ImageDecodeError: not plain CDR, or too short for a header.
    """
    return stamp_to_ns(header_from_cdr(raw).stamp)


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("lutfuse_recorder")
        from rosbags.rosbag2 import StoragePlugin

        # Its own parameters, then the fusion node's: a params file shared by both is
        # accepted, and the preprocessing in use is recorded beside the images.
        values = {}
        for spec in RECORDER_PARAMS + PARAMS:
            values[spec.name] = self.declare_parameter(spec.name, spec.default,
                                                       descriptor(spec)).value
            reason = check_choice(spec.name, values[spec.name],
                                  RECORDER_BY_NAME if spec in RECORDER_PARAMS else None)
            if reason:
                raise ConfigError(reason)
        self.settings = s = RecorderSettings.from_values(
            {spec.name: values[spec.name] for spec in RECORDER_PARAMS})
        if not s.bag_path:
            raise ConfigError("parameter bag_path is required (a folder that does not exist yet)")
        path = Path(s.bag_path)
        if path.exists():
            raise ConfigError(f"bag_path {path} exists already: rosbag2 writes a new folder")
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise ConfigError(f"bag_path {path}: folder {path.parent} is missing or not writable")
        self.storage = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[s.storage]
        self.typestore = lutfuse_typestore()
        self.path, self.splitting = path, bool(s.split_bytes or s.split_duration)
        rgb_type = CompressedImage if s.rgb_compressed else Image
        rgb_topic = "rgb/image/compressed" if s.rgb_compressed else "rgb/image"
        th_type = CompressedImage if s.thermal_compressed else Image
        th_topic = "thermal/image/compressed" if s.thermal_compressed else "thermal/image"
        # (key, topic, type) of every connection a piece has; fused/status where wanted
        self.topics = [(THERMAL, self.resolve_topic_name(th_topic),
                        f"sensor_msgs/msg/{th_type.__name__}"),
                       (RGB, self.resolve_topic_name(rgb_topic),
                        f"sensor_msgs/msg/{rgb_type.__name__}"),
                       ("info", self.resolve_topic_name("rgb/camera_info"),
                        "sensor_msgs/msg/CameraInfo")]
        if s.record_status and FusionStatus is not None:
            self.topics.append(("status", self.resolve_topic_name("fused/status"),
                                "lutfuse_ros/msg/FusionStatus"))
        self.note = dict(values, thermal_topic=self.topics[0][1], rgb_topic=self.topics[1][1])
        self.pieces = 0
        self.writer = None
        if self.splitting:
            path.mkdir()
        self._open_piece()
        fusion_settings = NodeSettings.from_values({q.name: values[q.name] for q in PARAMS})
        self.sync = ApproximateTimePolicy.from_config(fusion_settings.sync)
        self.pairs = 0
        self.bytes = 0
        self.skipped = 0
        self.statuses = 0
        self.last_pair_ns: int | None = None
        self.last_thumb: np.ndarray | None = None
        self.t0 = time.monotonic()
        self.done = False
        self.create_subscription(th_type, th_topic, lambda m: self._on(THERMAL, m),
                                 qos_profile_sensor_data, raw=True)
        self.create_subscription(rgb_type, rgb_topic, lambda m: self._on(RGB, m),
                                 qos_profile_sensor_data, raw=True)
        self.create_subscription(CameraInfo, "rgb/camera_info", self._on_info,
                                 qos_profile_sensor_data, raw=True)
        self._subscribe_status(s.record_status)
        split = f", a new piece every {s.split_bytes} bytes" if s.split_bytes else ""
        split += f", a new piece every {s.split_duration} s" if s.split_duration else ""
        self.get_logger().info(f"recording {self.topics[0][1]} + {self.topics[1][1]} pairs "
                               f"into {path} ({s.storage}{split})")

    def _open_piece(self) -> None:
        """A new bag (the only one, or the next piece of a split recording) with its
        connections and the config note."""
        from rosbags.rosbag2 import Writer

        ts = self.typestore
        path = self.path / f"{self.path.name}_{self.pieces:04d}" if self.splitting else self.path
        self.writer = Writer(path, version=8, storage_plugin=self.storage)
        self.writer.open()
        self.conns = {key: self.writer.add_connection(topic, msgtype, typestore=ts)
                      for key, topic, msgtype in self.topics}
        note = self.writer.add_connection(CONFIG_TOPIC, "std_msgs/msg/String", typestore=ts)
        msg = ts.types["std_msgs/msg/String"](data=json.dumps(
            dict(self.note, piece=self.pieces), default=list))
        self.writer.write(note, time.time_ns(), ts.serialize_cdr(msg, "std_msgs/msg/String"))
        self.pieces += 1
        self.piece_bytes, self.piece_start_ns = 0, None

    def _next_piece_due(self, stamp_ns: int) -> bool:
        s = self.settings
        if self.piece_start_ns is None:
            self.piece_start_ns = stamp_ns
        return self.splitting and (
            (s.split_bytes and self.piece_bytes >= s.split_bytes) or
            (s.split_duration and stamp_ns - self.piece_start_ns >= s.split_duration * 1e9))

    def _subscribe_status(self, wanted: bool) -> None:
        """fused/status beside the images (a dashboard's view of the recording session)."""
        if not wanted:
            return
        if FusionStatus is None:
            self.get_logger().info("fused/status not recorded: lutfuse_ros messages not built "
                                   "(pip install)")
            return

        def on_status(raw: bytes) -> None:
            stamp = cdr_stamp_ns(raw)
            if not self.done and stamp > 0:  # zero: the node has fused nothing yet
                if self.statuses == 0:
                    self.get_logger().info(f"recording {self.conns['status'].topic} too")
                self.statuses += 1
                self._write("status", stamp, raw)
        self.create_subscription(FusionStatus, "fused/status", on_status, 10, raw=True)

    def _on_info(self, raw: bytes) -> None:
        if not self.done:
            self._write("info", cdr_stamp_ns(raw), raw)

    def _on(self, topic: int, raw: bytes) -> None:
        if self.done:
            return
        try:
            stamp = cdr_stamp_ns(raw)
        except ImageDecodeError as exc:
            self.get_logger().warning(f"message skipped: {exc}", throttle_duration_sec=1.0)
            return
        pair = self.sync.add(topic, stamp, raw)
        if pair is None:
            return
        if self.last_pair_ns is not None and \
                pair.rgb_stamp_ns - self.last_pair_ns < self.settings.min_interval * 1e9:
            self.skipped += 1  # decimation
            return
        if self.settings.min_change > 0:  # skip near-duplicates (robot standing still)
            thumb = self._thumbnail(pair.rgb)
            if self.last_thumb is not None and thumb is not None and \
                    thumb.shape == self.last_thumb.shape and \
                    float(np.abs(thumb - self.last_thumb).mean()) < self.settings.min_change:
                self.skipped += 1
                return
            self.last_thumb = thumb
        self.last_pair_ns = pair.rgb_stamp_ns
        self._write(THERMAL, pair.thermal_stamp_ns, pair.thermal)
        self._write(RGB, pair.rgb_stamp_ns, pair.rgb)
        self.pairs += 1
        s = self.settings
        if (s.max_pairs and self.pairs >= s.max_pairs) or \
                (s.max_duration and time.monotonic() - self.t0 >= s.max_duration) or \
                (s.max_bytes and self.bytes >= s.max_bytes):
            self.get_logger().info(f"limit reached after {self.pairs} pairs: closing the bag")
            self.close()
        elif self._next_piece_due(pair.rgb_stamp_ns):  # between pairs only
            self._close_writer()
            self._open_piece()

    def _thumbnail(self, raw: bytes) -> np.ndarray | None:
        """Grey 1/8-size image of a serialised RGB message (for the near-duplicate test)."""
        from rclpy.serialization import deserialize_message

        try:
            if self.settings.rgb_compressed:
                msg = deserialize_message(raw, CompressedImage)
                img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8),
                                   cv2.IMREAD_REDUCED_GRAYSCALE_8)
                return None if img is None else img.astype(np.float32)
            img = image_to_numpy(deserialize_message(raw, Image))
        except ImageDecodeError:
            return None
        small = img[::8, ::8].astype(np.float32)
        return small.mean(axis=2) if small.ndim == 3 else small

    def _write(self, key, stamp_ns: int, raw: bytes) -> None:
        try:
            self.writer.write(self.conns[key], stamp_ns, bytes(raw))
            self.bytes += len(raw)
            self.piece_bytes += len(raw)
        except OSError as exc:  # disk full, file gone: keep what is written readable
            self.get_logger().error(f"cannot write to the bag ({exc}): closing it with "
                                    f"{self.pairs} pairs")
            self.close()

    def _close_writer(self) -> None:
        try:
            self.writer.close()
        except Exception as exc:  # noqa: BLE001 - report, the data so far is on disk
            self.get_logger().error(f"closing the bag failed: {exc}")

    def close(self) -> None:
        if not self.done:
            self.done = True
            self._close_writer()


def main(args: list[str] | None = None) -> None:
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = RecorderNode()
        while rclpy.ok() and not node.done:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except LutfuseError as exc:  # a setting: one line, no traceback
        print(f"lutfuse recorder: error: {exc}", flush=True)
        raise SystemExit(2) from None
    finally:
        if node is not None:
            node.close()
            print(f"recorded {node.pairs} pairs ({node.skipped} skipped by min_interval)",
                  flush=True)
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
