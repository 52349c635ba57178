"""The fusion node: thermal + RGB images in, fused image out.

Frame path (everything else here is bookkeeping)::

    thermal/image ─┐ sensor-data QoS         worker thread (off the executor)
                   ├─ ApproximateTimePolicy ─ LatestSlot ─ FramePipeline ─ fused/image
    rgb/image ─────┘  (cheap callbacks)       (newest pair)  (decode, AGC,   fused/camera_info
    rgb/camera_info ── kept, republished with the fused image's header   register, fuse)

The fused image carries the RGB message's header (stamp and frame_id); it is never restamped.
Images are taken and published as serialized bytes (:mod:`..stream.cdr`): no Python message
of a megabyte is built per frame, and decoding is a view of the received buffer.
``fused/status`` (``lutfuse_ros/FusionStatus``, from ``msg/``) summarises the node at a low
rate; it exists where the package was built with colcon (a pip install has no messages).
"""
from __future__ import annotations

import copy
import os
import sys
import threading
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from ..core.calibration import alignment_score
from ..core.config import RENAMED_BACKENDS
from ..core.errors import ConfigError, InputError, LutfuseError
from ..core.preprocess import Preprocessor, warm_up_agc
from ..stream.calibration_job import CalibrationJob
from ..stream.cdr import CdrHeader, image_from_cdr, image_to_cdr
from ..stream.codec import ImageDecodeError
from ..stream.pipeline import FramePipeline, FusedFrame, agc_mismatch, make_fuser
from ..stream.stats import ModelInfo, NodeStats, RegistrationInfo, diagnostic_groups, status_fields
from ..stream.sync import (
    RGB,
    THERMAL,
    ApproximateTimePolicy,
    LatestSlot,
    SyncedPair,
    Topic,
    stamp_to_ns,
)
from .interfaces import FusionStatus
from .params import (
    BY_NAME,
    FUSER,
    PARAMS,
    PREPROCESSING,
    SYNC,
    NodeSettings,
    check_choice,
    descriptor,
    rebuilt_by,
)

GIL_SWITCH_INTERVAL_S = 0.0002


class FusionNode(Node):
    """Subscribes ``thermal/image``, ``rgb/image``, ``rgb/camera_info``; publishes
    ``fused/image``, ``fused/camera_info``, ``fused/status`` and ``/diagnostics``.
    Parameters: :mod:`.params`."""

    def __init__(self, **kwargs) -> None:
        super().__init__("lutfuse_fusion", **kwargs)
        for p in PARAMS:
            self.declare_parameter(p.name, p.default, descriptor(p))
        values = {p.name: self.get_parameter(p.name).value for p in PARAMS}
        for name, value in values.items():
            reason = check_choice(name, value)
            if reason:
                raise ConfigError(reason)
        if values["fusion.backend"] in RENAMED_BACKENDS:
            self.get_logger().warning(
                f"fusion.backend {values['fusion.backend']!r} is now called "
                f"{RENAMED_BACKENDS[values['fusion.backend']]!r}; the old name will go")
        self.settings = s = NodeSettings.from_values(values)
        # Model and preprocessing; a bad model file at start-up is fatal (nothing to fall back to).
        self.pipeline = FramePipeline.from_config(s.pipeline)
        self.pipeline.fuser.warm_up()  # compile/load kernels now, not on the first frame
        warm_up_agc()
        self._warn_agc_mismatch()
        self.sync = ApproximateTimePolicy.from_config(s.sync)
        self.slot: LatestSlot[tuple[SyncedPair, float]] = LatestSlot()
        self.camera_info: CameraInfo | None = None
        self.stats = NodeStats()
        self.model_state = "loaded"

        # A copy: setting depth on rclpy's shared qos_profile_sensor_data would change it
        # for every other user in the process.
        in_qos = QoSProfile(depth=s.qos.depth)
        if s.qos.input == "sensor_data":
            sensor = qos_profile_sensor_data
            in_qos.reliability, in_qos.durability = sensor.reliability, sensor.durability
        out_qos = QoSProfile(depth=s.qos.depth) if s.qos.output == "default" else \
            qos_profile_sensor_data
        self.pub_image = self.create_publisher(Image, "fused/image", out_qos)
        self.pub_info = self.create_publisher(CameraInfo, "fused/camera_info", out_qos)
        self.pub_thermal = (self.create_publisher(Image, "thermal_registered/image", out_qos)
                            if s.publish_registered_thermal else None)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.pub_status = (self.create_publisher(FusionStatus, "fused/status", 10)
                           if FusionStatus is not None else None)
        self.create_subscription(Image, "thermal/image", lambda b: self._on_image(THERMAL, b),
                                 in_qos, raw=True)
        self.create_subscription(Image, "rgb/image", lambda b: self._on_image(RGB, b), in_qos,
                                 raw=True)
        self.create_subscription(CameraInfo, "rgb/camera_info", self._on_camera_info, in_qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.calibration: CalibrationJob | None = None
        self.create_service(Trigger, "~/calibrate", self._on_calibrate)

        # Diagnostics and status tick on the steady clock: they go on when sim time pauses.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(s.diagnostics.period, self._publish_diagnostics, clock=steady)
        if self.pub_status is not None:
            self.create_timer(s.status.period, self._publish_status, clock=steady)
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
    def _on_image(self, topic: Topic, data: bytes) -> None:
        now = time.monotonic()
        self.stats.message(topic, now)
        try:
            # views of the received bytes: the core copies what its kernels need writable
            msg = image_from_cdr(data)
        except ImageDecodeError as exc:
            self.stats.bad_input(str(exc))
            self.get_logger().error(f"{topic.name.lower()} message skipped: {exc}",
                                    throttle_duration_sec=1.0)
            return
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
            t_taken = time.monotonic()
            pipeline = self.pipeline  # one consistent model/preprocessing for this frame
            try:
                frame = pipeline(pair.thermal, pair.rgb)
            except InputError as exc:  # a bad pair: count it and go on; bugs propagate
                self.stats.bad_input(str(exc))
                self.get_logger().error(f"pair skipped: {exc}", throttle_duration_sec=1.0)
                continue
            t_fused = time.monotonic()
            try:
                self._publish(pair, frame)
            except Exception:  # noqa: BLE001 - the context goes away at Ctrl-C
                if not self.context.ok():
                    return
                raise
            done = time.monotonic()
            stages = {"handover": (t_taken - t_ready) * 1e3, **frame.timings,
                      "publish": (done - t_fused) * 1e3}
            self.stats.pair_fused(done, done - t_ready, pair.offset_ns, pair.rgb.header, stages)
            job = self.calibration
            if job is not None and job.offer(done, frame.thermal_unregistered, frame.visible):
                threading.Thread(target=self._run_calibration, args=(job,), daemon=True,
                                 name="lutfuse_calibration").start()
            if self.stats.registration_due(done, self.settings.diagnostics.registration_period):
                # ~40 ms at 640x480: on a thread of its own, so the next pair does not wait.
                threading.Thread(target=self._check_registration, args=(frame,), daemon=True,
                                 name="lutfuse_registration_check").start()

    def _publish(self, pair: SyncedPair, frame: FusedFrame) -> None:
        header = pair.rgb.header
        if self.pub_thermal is not None:  # first: a viewer gets it before the fused frame
            self.pub_thermal.publish(image_to_cdr(frame.thermal_8bit, "mono8", header))
        self.pub_image.publish(image_to_cdr(frame.image, frame.encoding, header))
        if self.camera_info is not None:
            # A copy: the stored message is the executor thread's, and is reused next frame.
            info = copy.copy(self.camera_info)
            info.header = header_msg(header)
            self.pub_info.publish(info)

    # -- calibrating the running node ------------------------------------------------------
    def _on_calibrate(self, request, response):
        """Start collecting pairs; the estimate runs on its own thread and its outcome is
        reported in /diagnostics ("calibration") and the log."""
        job = self.calibration
        if job is not None and not job.done.is_set():
            response.success, response.message = False, f"a calibration is running: {job.state}"
            return response
        c = self.settings.calibration
        self.calibration = CalibrationJob(c.pairs, c.interval)
        response.success = True
        response.message = (f"collecting {c.pairs} pairs {c.interval:g} s apart, then "
                            "estimating; watch /diagnostics (calibration)")
        self.get_logger().info(f"calibration: {response.message}")
        return response

    def _run_calibration(self, job: CalibrationJob) -> None:
        out = self.settings.calibration.output_file or str(
            Path(os.environ.get("ROS_HOME") or Path.home() / ".ros") / "lutfuse_calibration.yaml")
        path = job.estimate(self.pipeline.pre.registration, Path(out))
        if path is not None:
            # The same refuse-or-swap path as any parameter change.
            result = self.set_parameters([Parameter("registration.calibration_file",
                                                    value=str(path))])[0]
            if not result.successful:
                job.state = f"refused by the node: {result.reason}"
        log = self.get_logger().info if job.state.startswith("swapped") else \
            self.get_logger().warning
        log(f"calibration: {job.state}")

    # -- parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate all changes by building the new objects, then swap them in at once; what
        is rebuilt comes from each parameter's declaration (:data:`.params.PARAMS`)."""
        changes = {}
        for p in params:
            reason = check_choice(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[p.name] = p.value
        rebuild = rebuilt_by(changes)
        try:
            new = self.settings.with_values({k: v for k, v in changes.items() if k in BY_NAME})
            fuser = make_fuser(new.model_path, new.fusion) if FUSER in rebuild else None
            pre = Preprocessor.from_config(new.pipeline.preprocess) if PREPROCESSING in rebuild \
                else None
            sync = ApproximateTimePolicy.from_config(new.sync) if SYNC in rebuild else None
        except LutfuseError as exc:  # a bad model file or setting: refused, the old one stays
            self.get_logger().error(f"parameter change refused: {exc}")
            if "model_path" in changes:
                self.model_state = f"kept {self.pipeline.fuser.model_id}; refused: {exc}"
            return SetParametersResult(successful=False, reason=str(exc))
        old = self.pipeline
        self.pipeline = FramePipeline(fuser or old.fuser, pre or old.pre, new.output_encoding)
        if sync is not None:
            self.sync = sync
        self.settings = new
        if fuser is not None:
            self.model_state = "loaded"
            self.get_logger().info(f"model {fuser.model_id} in use ({self.pipeline.fuser.engine})")
        if fuser is not None or pre is not None:
            self._warn_agc_mismatch()
        return SetParametersResult(successful=True)

    def _warn_agc_mismatch(self) -> None:
        why = agc_mismatch(self.pipeline.fuser.model.metadata, self.settings.agc)
        if why:
            self.get_logger().warning(f"{why}: 16-bit thermal frames will look different from "
                                      "the training data (set agc.mode to match)")

    # -- diagnostics and status: values from NodeStats, filled into messages ---------------
    def _check_registration(self, frame: FusedFrame) -> None:
        self.stats.registration_checked(alignment_score(frame.thermal_8bit, frame.visible))

    def _registration_info(self) -> RegistrationInfo:
        reg = self.pipeline.pre.registration
        score = reg.estimate.get("score_after", float("nan"))
        return RegistrationInfo(reg.mode, self.settings.registration.calibration_file,
                                float(score) if isinstance(score, (int, float)) else float("nan"))

    def _model_info(self) -> ModelInfo:
        fuser = self.pipeline.fuser
        return ModelInfo(fuser.model_id, self.settings.model_path, str(fuser.engine),
                         self.model_state)

    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot(time.monotonic(), self.settings.diagnostics.input_timeout)
        name = self.get_fully_qualified_name()
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [
            DiagnosticStatus(level=bytes([g.level]), name=f"{name}: {g.suffix}",
                             message=g.message, hardware_id=name,
                             values=[KeyValue(key=k, value=v) for k, v in g.values])
            for g in diagnostic_groups(snap, self.sync.stats, self.slot.replaced,
                                       self._model_info(), self._registration_info(),
                                       self.calibration.state if self.calibration else None)]
        self.pub_diag.publish(msg)

    def _publish_status(self) -> None:
        snap = self.stats.snapshot(time.monotonic(), self.settings.diagnostics.input_timeout)
        msg = FusionStatus()
        if snap.last_header is not None:
            msg.header = header_msg(snap.last_header)
        fields = status_fields(snap, self.sync.stats, self.slot.replaced, self._model_info(),
                               self.pipeline.pre.agc.range)
        for key, value in fields.items():
            setattr(msg, key, value)
        self.pub_status.publish(msg)

    def destroy_node(self) -> None:
        if hasattr(self, "_worker"):  # absent when __init__ failed (rclpy still destroys it)
            self.slot.close()
            self._worker.join(timeout=2.0)
        super().destroy_node()


def header_msg(header: CdrHeader) -> Header:
    """The ``std_msgs/Header`` of a header read from serialized bytes."""
    msg = Header(frame_id=header.frame_id)
    msg.stamp.sec, msg.stamp.nanosec = header.stamp.sec, header.stamp.nanosec
    return msg


def main(args: list[str] | None = None) -> None:
    from rclpy.executors import ExternalShutdownException

    # The worker waits for the GIL after each hand-over while the executor thread runs
    # Python; a 0.2 ms switch interval (default 5 ms) halves that wait (1.1 -> 0.6 ms
    # measured in the node's timing), and the heavy stages run without the GIL anyway.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = FusionNode()
        except LutfuseError as exc:  # a setting, a model file, a device this machine lacks
            print(f"[lutfuse_fusion] cannot start: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
