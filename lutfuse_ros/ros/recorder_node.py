"""The recorder: synchronised thermal + RGB pairs into a rosbag2 for training a LUT.

Subscriptions take the serialised (CDR) messages as they arrive (``raw=True``): the header
stamp is read from the first bytes, pairs are made with the node's
:class:`ApproximateTimePolicy`, and both messages are written unchanged with the ``rosbags``
writer (MCAP by default, sqlite3 on request), so ``ros2 bag info/play`` and
``lutfuse bag-export`` read the result. The preprocessing parameters in use (the fusion
node's, from the same params file) go into the bag as a ``std_msgs/String`` JSON on
``/lutfuse/recording_config``; ``rgb/camera_info`` is recorded as it comes, and so is the
fusion node's ``fused/status`` (``record_status``, where the messages were built by colcon).

Parameters: ``bag_path`` (required, must not exist), ``storage`` (mcap|sqlite3),
``rgb_compressed`` (subscribe ``rgb/image/compressed`` instead of ``rgb/image``),
``thermal_compressed`` (``thermal/image/compressed``, e.g. 16-bit PNG),
``min_interval`` (s between recorded pairs), ``min_change`` (skip a pair whose RGB differs
from the last recorded one by less than this mean grey level at 1/8 size; 0: off),
``max_pairs``, ``max_duration`` (s),
``max_bytes`` (0: no limit; the recorder stops at the first limit reached),
``record_status`` (default true), ``sync.*``.
"""
from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ..stream.bagio import lutfuse_typestore
from ..stream.codec import image_to_numpy
from .interfaces import FusionStatus
from .params import PARAMS, NodeSettings
from ..stream.sync import RGB, THERMAL, ApproximateTimePolicy
from ..core.errors import ConfigError, LutfuseError

CONFIG_TOPIC = "/lutfuse/recording_config"


def cdr_stamp_ns(raw: bytes) -> int:
    """Header stamp of a serialised message whose first field is ``std_msgs/Header``."""
    if len(raw) < 12:
        raise ValueError("message too short for a header")
    endian = "<" if raw[1] == 1 else ">"
    sec, nanosec = struct.unpack_from(endian + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("lutfuse_recorder")
        from rosbags.rosbag2 import StoragePlugin, Writer

        p = {name: self.declare_parameter(name, default).value for name, default in (
            ("bag_path", ""), ("storage", "mcap"), ("rgb_compressed", False),
            ("thermal_compressed", False),
            ("min_interval", 0.0), ("min_change", 0.0), ("max_pairs", 0), ("max_duration", 0.0),
            ("max_bytes", 0), ("record_status", True))}
        # The fusion node's parameters, so a params file shared by both is accepted and the
        # preprocessing in use is recorded beside the images.
        for spec in PARAMS:
            if spec.name not in p:
                p[spec.name] = self.declare_parameter(spec.name, spec.default).value
        self.p = p
        if not p["bag_path"]:
            raise ConfigError("parameter bag_path is required (a folder that does not exist yet)")
        path = Path(p["bag_path"])
        if path.exists():
            raise ConfigError(f"bag_path {path} exists already: rosbag2 writes a new folder")
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise ConfigError(f"bag_path {path}: folder {path.parent} is missing or not writable")
        storage = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(p["storage"])
        if storage is None:
            raise ConfigError(f"storage must be mcap or sqlite3, got {p['storage']!r}")
        self.typestore = lutfuse_typestore()
        self.writer = Writer(path, version=8, storage_plugin=storage)
        self.writer.open()
        rgb_type = CompressedImage if p["rgb_compressed"] else Image
        rgb_topic = "rgb/image/compressed" if p["rgb_compressed"] else "rgb/image"
        ts = self.typestore
        th_type = CompressedImage if p["thermal_compressed"] else Image
        th_topic = "thermal/image/compressed" if p["thermal_compressed"] else "thermal/image"
        self.conns = {
            THERMAL: self.writer.add_connection(self.resolve_topic_name(th_topic),
                                                f"sensor_msgs/msg/{th_type.__name__}",
                                                typestore=ts),
            RGB: self.writer.add_connection(self.resolve_topic_name(rgb_topic),
                                            f"sensor_msgs/msg/{rgb_type.__name__}", typestore=ts),
        }
        self.info_conn = self.writer.add_connection(self.resolve_topic_name("rgb/camera_info"),
                                                    "sensor_msgs/msg/CameraInfo", typestore=ts)
        config_conn = self.writer.add_connection(CONFIG_TOPIC, "std_msgs/msg/String",
                                                 typestore=ts)
        config = dict(p, thermal_topic=self.conns[THERMAL].topic,
                      rgb_topic=self.conns[RGB].topic)
        msg = ts.types["std_msgs/msg/String"](data=json.dumps(config, default=list))
        self.writer.write(config_conn, time.time_ns(), ts.serialize_cdr(msg,
                                                                      "std_msgs/msg/String"))
        fusion_settings = NodeSettings.from_values({q.name: p[q.name] for q in PARAMS})
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
        self._subscribe_status(p["record_status"])
        self.get_logger().info(f"recording {self.resolve_topic_name(th_topic)} + "
                               f"{self.resolve_topic_name(rgb_topic)} pairs into {path} "
                               f"({p['storage']})")

    def _subscribe_status(self, wanted: bool) -> None:
        """fused/status beside the images (a dashboard's view of the recording session)."""
        if not wanted:
            return
        if FusionStatus is None:
            self.get_logger().info("fused/status not recorded: lutfuse_ros messages not built "
                                   "(pip install)")
            return
        conn = self.writer.add_connection(self.resolve_topic_name("fused/status"),
                                          "lutfuse_ros/msg/FusionStatus",
                                          typestore=self.typestore)

        def on_status(raw: bytes) -> None:
            stamp = cdr_stamp_ns(raw)
            if not self.done and stamp > 0:  # zero: the node has fused nothing yet
                if self.statuses == 0:
                    self.get_logger().info(f"recording {conn.topic} too")
                self.statuses += 1
                self._write(conn, stamp, raw)
        self.create_subscription(FusionStatus, "fused/status", on_status, 10, raw=True)

    def _on_info(self, raw: bytes) -> None:
        if not self.done:
            self._write(self.info_conn, cdr_stamp_ns(raw), raw)

    def _on(self, topic: int, raw: bytes) -> None:
        if self.done:
            return
        try:
            stamp = cdr_stamp_ns(raw)
        except ValueError as exc:
            self.get_logger().warning(f"message skipped: {exc}", throttle_duration_sec=1.0)
            return
        pair = self.sync.add(topic, stamp, raw)
        if pair is None:
            return
        if self.last_pair_ns is not None and \
                pair.rgb_stamp_ns - self.last_pair_ns < self.p["min_interval"] * 1e9:
            self.skipped += 1  # decimation
            return
        if self.p["min_change"] > 0:  # skip near-duplicates (robot standing still)
            thumb = self._thumbnail(pair.rgb)
            if self.last_thumb is not None and thumb is not None and \
                    thumb.shape == self.last_thumb.shape and \
                    float(np.abs(thumb - self.last_thumb).mean()) < self.p["min_change"]:
                self.skipped += 1
                return
            self.last_thumb = thumb
        self.last_pair_ns = pair.rgb_stamp_ns
        self._write(self.conns[THERMAL], pair.thermal_stamp_ns, pair.thermal)
        self._write(self.conns[RGB], pair.rgb_stamp_ns, pair.rgb)
        self.pairs += 1
        p = self.p
        if (p["max_pairs"] and self.pairs >= p["max_pairs"]) or \
                (p["max_duration"] and time.monotonic() - self.t0 >= p["max_duration"]) or \
                (p["max_bytes"] and self.bytes >= p["max_bytes"]):
            self.get_logger().info(f"limit reached after {self.pairs} pairs: closing the bag")
            self.close()

    def _thumbnail(self, raw: bytes) -> np.ndarray | None:
        """Grey 1/8-size image of a serialised RGB message (for the near-duplicate test)."""
        from rclpy.serialization import deserialize_message

        try:
            if self.p["rgb_compressed"]:
                msg = deserialize_message(raw, CompressedImage)
                img = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8),
                                   cv2.IMREAD_REDUCED_GRAYSCALE_8)
                return None if img is None else img.astype(np.float32)
            img = image_to_numpy(deserialize_message(raw, Image))
        except ValueError:
            return None
        small = img[::8, ::8].astype(np.float32)
        return small.mean(axis=2) if small.ndim == 3 else small

    def _write(self, conn, stamp_ns: int, raw: bytes) -> None:
        try:
            self.writer.write(conn, stamp_ns, bytes(raw))
            self.bytes += len(raw)
        except OSError as exc:  # disk full, file gone: keep what is written readable
            self.get_logger().error(f"cannot write to the bag ({exc}): closing it with "
                                    f"{self.pairs} pairs")
            self.close()

    def close(self) -> None:
        if not self.done:
            self.done = True
            try:
                self.writer.close()
            except Exception as exc:  # noqa: BLE001 - report, the data so far is on disk
                self.get_logger().error(f"closing the bag failed: {exc}")


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
