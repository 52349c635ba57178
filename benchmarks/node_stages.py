"""Where a fusion node's time goes, stage by stage, in one process (no DDS): the work the
node does per pair, from the serialized bytes it takes to the bytes it publishes, beside
what rclpy's own (de)serialisation of the same messages costs (what the node no longer does).

640x480 ``bgr8`` + 640x512 ``mono16`` (the node benchmark's streams), the launch file's
parameters. Prints the median and p90 of each stage over ``--runs`` pairs, the machine's
cores, and the AGC modes' cost. Compare with ``benchmarks/node_bench.py --relay`` (node minus
a do-nothing relay): the difference not listed here is DDS, the executor and the GIL.

    python benchmarks/node_stages.py [--runs 60]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from lutfuse_ros.core.preprocess import ThermalAGC
from lutfuse_ros.core.synthetic import synthetic_pair
from lutfuse_ros.ros.params import NodeSettings
from lutfuse_ros.stream.cdr import image_from_cdr, image_to_cdr
from lutfuse_ros.stream.codec import (
    THERMAL_ENCODINGS,
    VISIBLE_ENCODINGS,
    image_to_numpy,
    numpy_to_image,
)
from lutfuse_ros.stream.pipeline import FramePipeline, convert_output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    ir, rgb = synthetic_pair(seed=1, shape=(512, 640))
    counts = (ir.astype(np.uint16) * 12 + 3000)
    vis = np.ascontiguousarray(rgb[16:496, :, ::-1])  # 640x480 bgr8
    thermal_cdr = serialize_message(numpy_to_image(counts, "mono16"))
    rgb_cdr = serialize_message(numpy_to_image(vis, "bgr8"))
    pipeline = FramePipeline.from_config(NodeSettings().pipeline)
    pipeline.fuser.warm_up()
    stages: dict[str, list[float]] = {}

    def timed(name, fn, *a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        stages.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
        return out

    for k in range(args.runs + 5):
        t_msg = timed("read thermal (header, pixel view)", image_from_cdr, thermal_cdr)
        v_msg = timed("read rgb (header, pixel view)", image_from_cdr, rgb_cdr)
        v = timed("decode rgb", image_to_numpy, v_msg, VISIBLE_ENCODINGS)
        raw = timed("decode thermal", image_to_numpy, t_msg, THERMAL_ENCODINGS)
        agc8 = timed("AGC (default mode)", pipeline.pre.agc, raw)
        ir8 = timed("registration", pipeline.pre.registration, agc8, (v.shape[1], v.shape[0]))
        timings: dict[str, float] = {}
        fused = timed("fuse (all stages)", pipeline.fuser.fuse, ir8, v, vis_order="bgr",
                      timings=timings, gradient=pipeline.pre.gradient)
        for name, ms in timings.items():
            stages.setdefault(f"  fuse: {name}", []).append(ms)
        image, enc = timed("output conversion", convert_output, fused, "bgr", "")
        timed("serialise fused (image_to_cdr)", image_to_cdr, image, enc, v_msg.header)
        # for comparison, not in the node: rclpy messages in and out
        timed("  not done: rclpy deserialise thermal + rgb",
              lambda: (deserialize_message(thermal_cdr, Image),
                       deserialize_message(rgb_cdr, Image)))
        timed("  not done: build + serialise an rclpy Image",
              lambda: serialize_message(numpy_to_image(image, enc)))
        if k < 5:  # warm-up runs
            for v_ in stages.values():
                v_.clear()
    print(f"{os.cpu_count()} cores; 640x480 bgr8 + 640x512 mono16, default parameters; "
          f"{args.runs} pairs\n")
    print("| stage | median ms | p90 ms |\n|---|---:|---:|")
    total = 0.0
    for name, values in stages.items():
        med = float(np.median(values))
        if not name.startswith("  "):
            total += med
        print(f"| {name} | {med:.2f} | {np.percentile(values, 90):.2f} |")
    print(f"| **sum of the top-level stages** | **{total:.2f}** | |")
    print("\nAGC modes on the 640x512 frame (median ms):")
    for mode in ("percentile", "plateau", "equalize", "fixed"):
        agc = ThermalAGC(mode, low=3000, high=6000)
        agc(counts)
        times = []
        for k in range(args.runs):
            frame = counts + np.uint16(k % 3)  # not a repeated frame
            t0 = time.perf_counter()
            agc(frame)
            times.append((time.perf_counter() - t0) * 1e3)
        print(f"  {mode:10s} {np.median(times):.2f}")


if __name__ == "__main__":
    main()
