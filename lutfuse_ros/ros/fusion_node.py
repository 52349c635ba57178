"""The fusion node: thermal + RGB images in, fused image out.

Frame path (everything else here is bookkeeping)::

    thermal/image ─┐ sensor-data QoS         worker thread (off the executor)
                   ├─ ApproximateTimePolicy ─ LatestSlot ─ FramePipeline ─ fused/image
    rgb/image ─────┘  (cheap callbacks)       (newest pair)  (decode, AGC,   fused/camera_info
    rgb/camera_info ── kept, republished with the fused image's header   register, fuse)

The fused image carries the RGB message's header (stamp and frame_id); it is never restamped.
``fused/status`` (``lutfuse_ros/FusionStatus``, from ``msg/``) summarises the node at a low
rate; it exists where the package was built with colcon (a pip install has no messages).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..core.model import ModelFormatError
from ..stream.codec import numpy_to_image
from .params import PARAMS, check_choice, descriptor
from ..stream.pipeline import FramePipeline, make_fuser, make_preprocessor
from .interfaces import FusionStatus
from ..stream.sync import RGB, THERMAL, ApproximateTimePolicy, LatestSlot, SyncedPair, stamp_to_ns

_FUSER_KEYS = ("model_path", "fusion.exact", "fusion.context_scale", "fusion.context_engine")
_PRE_PREFIXES = ("agc.", "registration.", "gradient.")
_SYNC_PREFIX = "sync."


class RateMeter:
    """Message rate over a sliding window of receipt times (monotonic seconds)."""

    def __init__(self, window: float = 2.0) -> None:
        self.window, self.times = window, deque(maxlen=1000)

    def tick(self, now: float) -> None:
        self.times.append(now)

    def rate(self, now: float) -> float:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()
        return len(self.times) / self.window

    def silent_for(self, now: float) -> float | None:
        return now - self.times[-1] if self.times else None


class FusionNode(Node):
    """Subscribes ``thermal/image``, ``rgb/image``, ``rgb/camera_info``; publishes
    ``fused/image``, ``fused/camera_info`` and ``/diagnostics``. Parameters: :mod:`.params`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("lutfuse_fusion", **kwargs)
        for p in PARAMS:
            self.declare_parameter(p.name, p.default, descriptor(p))
        self.settings: dict[str, Any] = {p.name: self.get_parameter(p.name).value for p in PARAMS}
        for p in PARAMS:
            reason = check_choice(p.name, self.settings[p.name])
            if reason:
                raise ValueError(reason)
        # Model and preprocessing; a bad model file at start-up is fatal (nothing to fall back to).
        self.pipeline = FramePipeline.from_settings(self.settings)
        self.pipeline.fuser.warm_up()  # compile/load kernels now, not on the first frame
        self.sync = self._make_sync(self.settings)
        self.slot: LatestSlot[tuple[SyncedPair, float]] = LatestSlot()
        self.camera_info: CameraInfo | None = None

        s = self.settings
        # A copy: setting depth on rclpy's shared qos_profile_sensor_data would change it
        # for every other user in the process.
        in_qos = QoSProfile(depth=s["qos.depth"])
        if s["qos.input"] == "sensor_data":
            sensor = qos_profile_sensor_data
            in_qos.reliability, in_qos.durability = sensor.reliability, sensor.durability
        out_qos = QoSProfile(depth=s["qos.depth"]) if s["qos.output"] == "default" else \
            qos_profile_sensor_data
        self.pub_image = self.create_publisher(Image, "fused/image", out_qos)
        self.pub_info = self.create_publisher(CameraInfo, "fused/camera_info", out_qos)
        self.pub_thermal = (self.create_publisher(Image, "thermal_registered/image", out_qos)
                            if s["publish_registered_thermal"] else None)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_status = (self.create_publisher(FusionStatus, "fused/status", 10)
                           if FusionStatus is not None else None)
        self.create_subscription(Image, "thermal/image", lambda m: self._on_image(THERMAL, m),
                                 in_qos)
        self.create_subscription(Image, "rgb/image", lambda m: self._on_image(RGB, m), in_qos)
        self.create_subscription(CameraInfo, "rgb/camera_info", self._on_camera_info, in_qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Statistics read by the diagnostics timer.
        self.rates = (RateMeter(), RateMeter())
        self.fused_rate = RateMeter()
        self.latency_ms: deque[float] = deque(maxlen=300)   # pair complete -> published
        self.offsets_ms: deque[float] = deque(maxlen=300)
        self.fused = 0
        self.bad_input = 0
        self.last_error = ""
        self.model_state = "loaded"
        self.last_header = None  # header of the newest fused frame, for fused/status
        # Diagnostics and status tick on the steady clock: they go on when sim time pauses.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(s["diagnostics.period"], self._publish_diagnostics, clock=steady)
        if self.pub_status is not None:
            self.create_timer(s["status.period"], self._publish_status, clock=steady)
        else:
            self.get_logger().warning("lutfuse_ros messages not built (pip install): fused/status "
                                   "is not published; build with colcon to get it")
        self._worker = threading.Thread(target=self._work, name="lutfuse_fusion", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"fusing {self.resolve_topic_name('thermal/image')} + "
            f"{self.resolve_topic_name('rgb/image')} -> {self.resolve_topic_name('fused/image')}"
            f" with model {self.pipeline.fuser.model_id} ({self.pipeline.fuser.engine})")

    # -- reception (executor thread): cheap ------------------------------------------------
    @staticmethod
    def _make_sync(s: dict[str, Any]) -> ApproximateTimePolicy:
        return ApproximateTimePolicy(s["sync.queue_size"], s["sync.slop"],
                                     s["sync.thermal_offset"], s["sync.reset_jump"])

    def _on_image(self, topic: int, msg: Image) -> None:
        now = time.monotonic()
        self.rates[topic].tick(now)
        sync = self.sync
        pair = sync.add(topic, stamp_to_ns(msg.header.stamp), msg)
        if sync.just_reset:
            self.get_logger().warning("stamps jumped back in time: sync queues cleared, AGC and "
                                   "gradient range reset")
            self.pipeline.pre.reset()
        if pair is not None:
            self.slot.put((pair, now))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    # -- fusion (worker thread) -----------------------------------------------------------
    def _work(self) -> None:
        while not self.slot.closed:
            item = self.slot.take(timeout=0.5)
            if item is None:
                continue
            pair, t_ready = item
            pipeline = self.pipeline  # one consistent model/preprocessing for this frame
            try:
                frame = pipeline(pair.thermal, pair.rgb)
            except ValueError as exc:  # decode, registration and input-size errors
                self.bad_input += 1
                self.last_error = str(exc)
                self.get_logger().error(f"pair skipped: {exc}", throttle_duration_sec=1.0)
                continue
            try:
                self._publish(pair, frame)
            except Exception:  # noqa: BLE001 - the context goes away at Ctrl-C
                if not self.context.ok():
                    return
                raise
            done = time.monotonic()
            self.fused += 1
            self.fused_rate.tick(done)
            self.latency_ms.append((done - t_ready) * 1e3)
            self.offsets_ms.append(pair.offset_ns / 1e6)
            self.last_header = pair.rgb.header

    def _publish(self, pair: SyncedPair, frame) -> None:
        header = pair.rgb.header
        if self.pub_thermal is not None:  # first: a viewer gets it before the fused frame
            self.pub_thermal.publish(numpy_to_image(frame.thermal_8bit, "mono8", header))
        self.pub_image.publish(numpy_to_image(frame.image, frame.encoding, header))
        if self.camera_info is not None:
            info = self.camera_info
            info.header = header
            self.pub_info.publish(info)

    # -- parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate all changes by building the new objects, then swap them in at once."""
        new = dict(self.settings)
        for p in params:
            if p.name in new:
                new[p.name] = p.value
                reason = check_choice(p.name, p.value)
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
        names = {p.name for p in params}
        try:
            fuser = make_fuser(new) if names & set(_FUSER_KEYS) else None
            pre = make_preprocessor(new) if any(n.startswith(_PRE_PREFIXES) for n in names) \
                else None
            sync = self._make_sync(new) if any(n.startswith(_SYNC_PREFIX) for n in names) \
                else None
        except (ModelFormatError, ValueError) as exc:
            self.get_logger().error(f"parameter change refused: {exc}")
            if "model_path" in names:
                self.model_state = f"kept {self.pipeline.fuser.model_id}; refused: {exc}"
            return SetParametersResult(successful=False, reason=str(exc))
        old = self.pipeline
        self.pipeline = FramePipeline(fuser or old.fuser, pre or old.pre, new["output_encoding"])
        if sync is not None:
            self.sync = sync
        self.settings = new
        if fuser is not None:
            self.model_state = "loaded"
            self.get_logger().info(f"model {fuser.model_id} in use ({self.pipeline.fuser.engine})")
        return SetParametersResult(successful=True)

    # -- diagnostics and status -----------------------------------------------------------
    def _recent_stats(self) -> tuple[float, float, float, float]:
        """Latency p50, p99 and RGB-thermal offset mean, abs max (ms) of recent pairs; zeros
        before the first pair."""
        lat = np.asarray(self.latency_ms) if self.latency_ms else np.zeros(1)
        off = np.asarray(self.offsets_ms) if self.offsets_ms else np.zeros(1)
        return (float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                float(off.mean()), float(np.abs(off).max()))

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        timeout = self.settings["diagnostics.input_timeout"]
        name = self.get_fully_qualified_name()

        def status(level, suffix, message, values):
            return DiagnosticStatus(level=level, name=f"{name}: {suffix}", message=message,
                                    hardware_id=name,
                                    values=[KeyValue(key=k, value=str(v)) for k, v in values])

        inputs, problems = [], []
        level = DiagnosticStatus.OK
        for topic, label in ((THERMAL, "thermal"), (RGB, "rgb")):
            silent = self.rates[topic].silent_for(now)
            inputs += [(f"{label} rate (Hz)", f"{self.rates[topic].rate(now):.1f}"),
                       (f"{label} silent (s)", "never received" if silent is None
                        else f"{silent:.2f}")]
            if silent is None:
                level = max(level, DiagnosticStatus.WARN)
                problems.append(f"waiting for {label}")
            elif silent > timeout:
                level = DiagnosticStatus.ERROR
                problems.append(f"{label} silent for {silent:.1f} s")
        st = self.sync.stats
        lat50, lat99, off_mean, off_max = self._recent_stats()
        dropped = self.slot.replaced
        proc_level = DiagnosticStatus.WARN if self.bad_input else DiagnosticStatus.OK
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [
            status(level, "inputs", "; ".join(problems) or "receiving", inputs),
            status(DiagnosticStatus.OK, "sync",
                   f"{st.pairs} pairs", [("pairs", st.pairs), ("unmatched messages", st.unmatched),
                                         ("late messages", st.late), ("resets", st.resets),
                                         ("offset rgb-thermal mean (ms)", f"{off_mean:.2f}"),
                                         ("offset abs max (ms)", f"{off_max:.2f}")]),
            status(proc_level, "processing",
                   self.last_error if self.bad_input else f"{self.fused} fused",
                   [("fused", self.fused), ("fused rate (Hz)", f"{self.fused_rate.rate(now):.1f}"),
                    ("latency p50 (ms)", f"{lat50:.1f}"),
                    ("latency p99 (ms)", f"{lat99:.1f}"),
                    ("dropped stale pairs", dropped), ("bad input pairs", self.bad_input),
                    ("last error", self.last_error)]),
            status(DiagnosticStatus.OK if self.model_state == "loaded"
                   else DiagnosticStatus.WARN, "model", self.model_state,
                   [("model id", self.pipeline.fuser.model_id),
                    ("model path", self.settings["model_path"] or "(package default)"),
                    ("engine", self.pipeline.fuser.engine)]),
        ]
        self.pub_diag.publish(msg)

    def _publish_status(self) -> None:
        now = time.monotonic()
        msg = FusionStatus()
        if self.last_header is not None:
            msg.header = self.last_header
        msg.model_id = self.pipeline.fuser.model_id
        msg.engine = self.pipeline.fuser.engine
        silent = [self.rates[t].silent_for(now) for t in (THERMAL, RGB)]
        msg.thermal_rate_hz = self.rates[THERMAL].rate(now)
        msg.rgb_rate_hz = self.rates[RGB].rate(now)
        msg.thermal_silent_s, msg.rgb_silent_s = (-1.0 if x is None else x for x in silent)
        st = self.sync.stats
        msg.latency_p50_ms, msg.latency_p99_ms, msg.sync_offset_ms, _ = self._recent_stats()
        msg.pairs_synced, msg.unmatched_messages = st.pairs, st.unmatched
        msg.pairs_fused, msg.pairs_dropped = self.fused, self.slot.replaced
        msg.bad_inputs, msg.last_error = self.bad_input, self.last_error
        msg.fused_rate_hz = self.fused_rate.rate(now)
        agc_range = self.pipeline.pre.agc.range
        msg.agc_low, msg.agc_high = (float(v) for v in agc_range) if agc_range is not None \
            else (float("nan"), float("nan"))
        self.pub_status.publish(msg)

    def destroy_node(self) -> None:
        self.slot.close()
        self._worker.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = FusionNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
