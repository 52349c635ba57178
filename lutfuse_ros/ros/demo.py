"""Live demo pieces: a camera replayer, a fused-stream receiver, and the runner of both
around a real fusion node process.

- ``replay_cameras``: publishes procedural thermal (``mono16`` counts) and RGB (``bgr8``)
  frames, a hot object moving across a street-like scene, as two cameras at ``rate`` Hz,
  stamped at capture like a driver does, plus ``rgb/camera_info``.
- ``fused_receiver``: subscribes ``fused/image``, measures rate and latency (receipt time
  minus the header stamp), writes a mosaic (thermal | RGB | fused) and a JSON summary (with
  the node's per-stage timing from ``/diagnostics``). It takes images as serialized bytes
  and decodes only the frames of the mosaic: a cheap receiver, so that a benchmark measures
  the node rather than the receiver.
- ``python -m lutfuse_ros.ros.demo``: starts the node, the replayer and the receiver as
  three processes on a private loopback-only DDS domain, and prints the receiver's summary.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from ..core.geometry import Size
from ..core.imageio import mosaic, write_image
from ..core.synthetic import synthetic_pair
from ..resources import config_file, dds_profile_env
from ..stream.cdr import image_from_cdr
from ..stream.codec import image_to_numpy, numpy_to_image
from ..stream.sync import stamp_to_ns


def demo_frames(count: int, rgb_size: Size, thermal_size: Size | None = None,
                seed: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` frames (thermal uint16 (Ht, Wt), RGB uint8 (H, W, 3)) of a hot disc crossing
    a procedural night scene; the thermal frames may have a size of their own."""
    w, h = rgb_size
    ir, vis = synthetic_pair(seed=seed, shape=(h, w), night=True)
    frames = []
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(count):
        cx, cy, r = w * (0.1 + 0.8 * t / max(count - 1, 1)), h * 0.6, max(4, h // 12)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        it, vt = ir.astype(np.float32), vis.copy()
        it[disc] = 245
        vt[disc] = (vt[disc] * 0.6 + 40).astype(np.uint8)
        counts = (it * 40 + 20000).astype(np.uint16)  # radiometric-looking 16-bit counts
        if thermal_size is not None and tuple(thermal_size) != tuple(rgb_size):
            counts = cv2.resize(counts, thermal_size, interpolation=cv2.INTER_LINEAR)
        frames.append((counts, vt))
    return frames


# -- the camera replayer --------------------------------------------------------------------
class CameraReplayer(Node):
    """Publishes the procedural thermal (mono16) + RGB (bgr8) + camera_info stream, stamped
    with the capture time as a camera driver does."""

    def __init__(self) -> None:
        super().__init__("lutfuse_replay")
        rate = self.declare_parameter("rate", 30.0).value
        h = self.declare_parameter("height", 240).value
        w = self.declare_parameter("width", 320).value
        th = self.declare_parameter("thermal_height", 0).value or h
        tw = self.declare_parameter("thermal_width", 0).value or w
        self.duration = self.declare_parameter("duration", 0.0).value
        self.summary = self.declare_parameter("summary", "").value
        self.frames = demo_frames(60, Size(w, h), Size(tw, th))
        self.pub_t = self.create_publisher(Image, "thermal/image", qos_profile_sensor_data)
        self.pub_v = self.create_publisher(Image, "rgb/image", qos_profile_sensor_data)
        self.pub_i = self.create_publisher(CameraInfo, "rgb/camera_info", 10)
        self.info = CameraInfo(height=h, width=w, distortion_model="plumb_bob")
        self.info.k = [w * 0.9, 0.0, w / 2, 0.0, w * 0.9, h / 2, 0.0, 0.0, 1.0]
        self.n, self.t0 = 0, time.monotonic()
        self.stamps_ns: list[int] = []
        self.create_timer(1.0 / rate, self.tick)

    def tick(self) -> None:
        if self.duration and time.monotonic() - self.t0 > self.duration:
            if self.summary:
                Path(self.summary).write_text(json.dumps({"published": self.n,
                                                          "stamps_ns": self.stamps_ns}))
            raise SystemExit(0)
        counts, bgr = self.frames[self.n % len(self.frames)]
        stamp = self.get_clock().now().to_msg()  # the capture time of a driver
        t = numpy_to_image(counts, "mono16")
        t.header.stamp, t.header.frame_id = stamp, "thermal_optical_frame"
        v = numpy_to_image(bgr, "bgr8")
        v.header.stamp, v.header.frame_id = stamp, "rgb_optical_frame"
        self.info.header = v.header
        self.pub_t.publish(t)
        self.pub_v.publish(v)
        self.pub_i.publish(self.info)
        self.n += 1
        self.stamps_ns.append(stamp_to_ns(stamp))


def replay_main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    try:
        rclpy.spin(CameraReplayer())
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    finally:
        rclpy.try_shutdown()


# -- the receiver --------------------------------------------------------------------------
class FusedReceiver(Node):
    """Subscribes fused/image (and its inputs): rate, latency to the camera stamp, a mosaic."""

    def __init__(self) -> None:
        super().__init__("lutfuse_receiver")
        self.duration = self.declare_parameter("duration", 5.0).value
        self.out = self.declare_parameter("out", "out/demo_mosaic.png").value
        self.summary = self.declare_parameter("summary", "").value
        self.latency_ms: list[float] = []
        self.arrivals: list[float] = []
        self.stamps_ns: list[int] = []
        self.inputs: dict[int, dict[str, np.ndarray]] = {}
        self.shots: list[list[np.ndarray]] = []
        self.encoding = ""
        self.node_timing: dict[str, float] = {}
        self.create_subscription(Image, "fused/image", self.on_fused, qos_profile_sensor_data,
                                 raw=True)
        for name in ("rgb/image", "thermal_registered/image"):
            self.create_subscription(Image, name, lambda b, n=name: self.on_input(n, b),
                                     qos_profile_sensor_data, raw=True)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, 10)
        self.t0 = None

    def on_input(self, name: str, data: bytes) -> None:
        if len(self.shots) < 4:  # only frames that may end up in the mosaic
            msg = image_from_cdr(data)
            key = stamp_to_ns(msg.header.stamp)
            self.inputs.setdefault(key, {})[name] = image_to_numpy(msg).copy()
            while len(self.inputs) > 20:
                del self.inputs[min(self.inputs)]

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": timing"):
                self.node_timing = {kv.key.removesuffix(" (ms)"): float(kv.value)
                                    for kv in status.values}

    def on_fused(self, data: bytes) -> None:
        now = time.time()
        msg = image_from_cdr(data)
        stamp = stamp_to_ns(msg.header.stamp)
        self.latency_ms.append((now - stamp / 1e9) * 1e3)
        self.stamps_ns.append(stamp)
        self.arrivals.append(time.monotonic())
        self.encoding = msg.encoding
        if self.t0 is None:
            self.t0 = time.monotonic()
        n = len(self.arrivals)
        got = self.inputs.get(stamp_to_ns(msg.header.stamp), {})
        if n % 15 == 0 and len(self.shots) < 4 and len(got) == 2:
            fused = image_to_numpy(msg)
            bgr = got["rgb/image"]
            self.shots.append([got["thermal_registered/image"], bgr[:, :, ::-1],
                               fused[:, :, ::-1] if fused.ndim == 3 else fused])
        if time.monotonic() - self.t0 > self.duration:
            raise SystemExit(0)

    def report(self) -> dict:
        lat = np.asarray(self.latency_ms or [np.nan])
        span = (self.arrivals[-1] - self.arrivals[0]) if len(self.arrivals) > 1 else 0.0
        fifth = max(1, len(lat) // 5)
        result = {"frames": len(self.latency_ms),
                  "latency_p50_first_fifth_ms": float(np.median(lat[:fifth])),
                  "latency_p50_last_fifth_ms": float(np.median(lat[-fifth:])),
                  "rate_hz": (len(self.arrivals) - 1) / span if span else 0.0,
                  "latency_ms": {"p50": float(np.percentile(lat, 50)),
                                 "p99": float(np.percentile(lat, 99)),
                                 "max": float(np.max(lat))},
                  "encoding": self.encoding, "node_timing_ms": self.node_timing,
                  "stamps_ns": self.stamps_ns, "latencies_ms": self.latency_ms,
                  "arrivals_s": self.arrivals}
        if self.shots:
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            write_image(self.out, mosaic(self.shots, labels=["thermal (registered)", "RGB",
                                                              "fused"]))
            result["mosaic"] = str(self.out)
        if self.summary:
            Path(self.summary).write_text(json.dumps(result, indent=1))
        return result


def receiver_main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = FusedReceiver()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException, SystemExit):
        pass
    except Exception:  # noqa: BLE001 - a Ctrl-C between two waits ends the context under spin
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            report = node.report()  # the per-frame lists stay in the summary file
            print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}),
                  flush=True)
        rclpy.try_shutdown()


# -- running the three processes -----------------------------------------------------------
def ros_env(domain_id: int | None = None, profile: str = "fastdds_shm_localhost.xml") -> dict:
    """Environment for a private, loopback-only ROS 2 graph with the shared-memory profile."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is not None or "ROS_DOMAIN_ID" not in env:
        env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else 10 + os.getpid() % 90)
    env.setdefault("ROS_HOME", tempfile.mkdtemp(prefix="lutfuse_ros_home_"))
    # the profile variable(s) this distribution's Fast DDS reads
    env.update(dds_profile_env(config_file(profile)))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return env


def spawn(module_main: str, ros_args: list[str], env: dict, **popen) -> subprocess.Popen:
    """Start ``python -c 'from <module> import <main>; <main>()' --ros-args ...``."""
    module, func = module_main.rsplit(":", 1)
    code = f"import sys; from {module} import {func}; {func}(sys.argv)"
    return subprocess.Popen([sys.executable, "-c", code, "--ros-args", *ros_args], env=env,
                            **popen)


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_demo(seconds: float, out: Path, rate: float = 30.0, rgb_size: Size = Size(320, 240),
             params_file: Path | None = None) -> dict:
    env = ros_env()
    params_file = params_file or config_file("fusion.yaml")
    summary = Path(tempfile.mkdtemp(prefix="lutfuse_demo_")) / "summary.json"
    node = spawn("lutfuse_ros.ros.fusion_node:main",
                 ["--params-file", str(params_file), "-p", "publish_registered_thermal:=true"],
                 env)
    receiver = spawn("lutfuse_ros.ros.demo:receiver_main",
                     ["-p", f"duration:={seconds}", "-p", f"out:={out}", "-p",
                      f"summary:={summary}"], env)
    time.sleep(1.0)  # let node and receiver subscribe before the first frame
    replay = spawn("lutfuse_ros.ros.demo:replay_main",
                   ["-p", f"rate:={rate}", "-p", f"height:={rgb_size.height}", "-p",
                    f"width:={rgb_size.width}", "-p", f"thermal_height:={rgb_size.height * 4 // 5}",
                    "-p", f"thermal_width:={rgb_size.width * 4 // 5}"], env)
    try:
        receiver.wait(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop(receiver, replay, node)
    if not summary.exists():
        raise RuntimeError("the receiver got no fused frame: is the node running? "
                           "(run with the node's log on the console to see why)")
    return json.loads(summary.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description="Live demo: replayed cameras -> fusion node -> "
                                 "receiver, as three ROS 2 processes on loopback.")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=Path("out/demo_mosaic.png"))
    args = ap.parse_args()
    print(f"live demo: {args.seconds:g} s of {args.rate:g} Hz thermal (mono16, 256x192) + RGB "
          "(bgr8, 320x240) through the fusion node ...", flush=True)
    r = run_demo(args.seconds, args.out, args.rate)
    lat = r["latency_ms"]
    print(f"fused {r['frames']} frames at {r['rate_hz']:.1f} Hz ({r['encoding']}), latency "
          f"camera stamp -> fused received: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
          f"max {lat['max']:.1f} ms")
    if "mosaic" in r:
        print(f"mosaic (thermal | RGB | fused): {r['mosaic']}")


if __name__ == "__main__":
    main()
