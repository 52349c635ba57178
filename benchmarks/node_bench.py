"""Fusion node benchmark: separate processes (camera replayer -> fusion node -> receiver)
over loopback DDS with the shared-memory profile.

Default run: 640x480 bgr8 + 640x512 mono16 at 30 Hz for 60 s, then a rate sweep. Prints
latency (camera stamp -> fused image received) p50/p99/max, delivered % (of the frames
published from the first fused one on), node CPU % and RSS at start and end, the node's own
per-stage medians (its ``/diagnostics`` timing group), and writes a JSON next to it.
``--relay`` runs, in the same run and the same set-up, a node that republishes the RGB
image and does nothing else (the floor any fusion node stands on) and prints node minus relay.

    python benchmarks/node_bench.py --seconds 60 --sweep 30,45,60,90 --out out/node_bench.json
    python benchmarks/node_bench.py --relay --seconds 30 --sweep 60 --sweep-seconds 30
    python benchmarks/node_bench.py --relay --rounds 3 --seconds 20 --sweep ""  # alternating
    python benchmarks/node_bench.py --seconds 30 --sweep "" --soak 600     # 10-minute soak
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lutfuse_ros.ros.demo import ros_env, spawn, stop

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds used, RSS MiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS")) / 1024
    return cpu, rss


RELAY = """
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("relay")
pub = node.create_publisher(Image, "fused/image", qos_profile_sensor_data)
node.create_subscription(Image, "rgb/image", pub.publish, qos_profile_sensor_data)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""


def run(rate: float, seconds: float, size=(480, 640), thermal=(512, 640), domain=None,
        relay: bool = False, node_params: tuple[str, ...] = ()) -> dict:
    env = ros_env(domain)
    tmp = Path(tempfile.mkdtemp(prefix="lutfuse_bench_"))
    if relay:  # the same receiver and cameras, a node that only republishes the RGB image
        node = subprocess.Popen([sys.executable, "-c", RELAY], env=env)
    else:
        node = spawn("lutfuse_ros.ros.fusion_node:main",
                     ["--params-file", str(ROOT / "config" / "fusion.yaml"),
                      *[a for p in node_params for a in ("-p", p)]], env)
    receiver = spawn("lutfuse_ros.ros.demo:receiver_main",
                     ["-p", f"duration:={seconds + 30}", "-p", f"out:={tmp / 'mosaic.png'}",
                      "-p", f"summary:={tmp / 'receiver.json'}"], env,
                     stdout=subprocess.DEVNULL)
    time.sleep(4.0)  # node: imports, model, kernel warm-up
    replay = spawn("lutfuse_ros.ros.demo:replay_main",
                   ["-p", f"rate:={rate}", "-p", f"duration:={seconds}",
                    "-p", f"height:={size[0]}", "-p", f"width:={size[1]}",
                    "-p", f"thermal_height:={thermal[0]}", "-p", f"thermal_width:={thermal[1]}",
                    "-p", f"summary:={tmp / 'replay.json'}"], env)
    time.sleep(2.0)  # skip start-up (discovery) in the CPU and memory figures
    cpu0, rss0 = proc_usage(node.pid)
    t0 = time.monotonic()
    rss_samples = []  # (s since start, MiB) every 10 s: growth or a plateau
    while replay.poll() is None and time.monotonic() - t0 < seconds + 60:
        time.sleep(0.5)
        if time.monotonic() - t0 >= 10 * len(rss_samples):
            rss_samples.append((time.monotonic() - t0, proc_usage(node.pid)[1]))
    cpu1, rss1 = proc_usage(node.pid)
    wall = time.monotonic() - t0
    time.sleep(1.0)
    stop(receiver, node)
    r = json.loads((tmp / "receiver.json").read_text())
    published = json.loads((tmp / "replay.json").read_text())["stamps_ns"]
    # Delivered counts from the first fused frame on: the frames before it were published
    # while the graph was still being discovered, which says nothing about the node.
    received = set(r["stamps_ns"])
    first = min(received) if received else float("inf")
    due = [t for t in published if t >= first]
    lat, arrivals = np.asarray(r["latencies_ms"]), np.asarray(r["arrivals_s"])
    minutes = []
    if len(lat) and seconds >= 120:  # a soak: latency minute by minute
        minute = ((arrivals - arrivals[0]) // 60).astype(int)
        minutes = [{"minute": int(m), "p50": float(np.median(lat[minute == m])),
                    "p99": float(np.percentile(lat[minute == m], 99)),
                    "rss_mib": max((r for t, r in rss_samples if t // 60 == m), default=0.0)}
                   for m in np.unique(minute)]
    return {"node": "relay" if relay else "fusion_node", "rate_hz": rate, "seconds": seconds,
            "published": len(published), "due": len(due),
            "fused_received": len(received & set(due)),
            "delivered_pct": 100.0 * len(received & set(due)) / max(len(due), 1),
            "latency_ms": r["latency_ms"],
            "latency_p50_first_fifth_ms": r["latency_p50_first_fifth_ms"],
            "latency_p50_last_fifth_ms": r["latency_p50_last_fifth_ms"],
            "latency_by_minute_ms": minutes, "node_timing_ms": r["node_timing_ms"],
            "node_cpu_pct": 100.0 * (cpu1 - cpu0) / wall,
            "node_rss_mib_start": rss0, "node_rss_mib_end": rss1}


def line(r: dict) -> str:
    lat = r["latency_ms"]
    return (f"{r['node']:11s} {r['rate_hz']:3.0f} Hz {r['seconds']:4.0f} s: delivered "
            f"{r['delivered_pct']:5.1f} % "
            f"({r['fused_received']}/{r['due']}), latency p50 {lat['p50']:5.1f} p99 "
            f"{lat['p99']:5.1f} max {lat['max']:6.1f} ms (p50 first/last fifth "
            f"{r['latency_p50_first_fifth_ms']:.1f}/{r['latency_p50_last_fifth_ms']:.1f}), "
            f"node CPU {r['node_cpu_pct']:.0f} %, RSS {r['node_rss_mib_start']:.0f} -> "
            f"{r['node_rss_mib_end']:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--sweep", default="30,45,60,90", help="rates for the sweep ('' to skip)")
    ap.add_argument("--sweep-seconds", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=Path("out/node_bench.json"))
    ap.add_argument("--soak", type=float, default=0.0,
                    help="then run the node this many seconds at --rate: latency per minute, "
                         "RSS at start and end")
    ap.add_argument("-p", "--node-param", action="append", default=[],
                    help="a parameter of the fusion node over config/fusion.yaml, e.g. "
                         "-p fusion.threads:=1 (repeatable)")
    ap.add_argument("--relay", action="store_true",
                    help="also run the do-nothing relay at each rate and print node - relay")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --relay: this many alternating node and relay runs at --rate "
                         "(each --seconds long), each round's difference and their median")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          "640x480 bgr8 + 640x512 mono16 (config/fusion.yaml: resize registration, plateau "
          "AGC)", flush=True)
    params = tuple(args.node_param)
    if params:
        print(f"node parameters over config/fusion.yaml: {' '.join(params)}", flush=True)
    results = {"cores": os.cpu_count(), "node_params": params, "main": None, "sweep": [],
               "relay": [], "rounds": []}

    def versus_relay(fused: dict, rate: float, seconds: float) -> dict:
        """A relay run right after a node run, and the difference: back to back, so both
        meet the same machine (it is shared: its speed moves by minutes)."""
        base = run(rate, seconds, relay=True)
        results["relay"].append(base)
        print(line(base), flush=True)
        a, b = fused["latency_ms"], base["latency_ms"]
        diff = {"rate_hz": rate, "p50_ms": a["p50"] - b["p50"], "p99_ms": a["p99"] - b["p99"]}
        print(f"node - relay at {rate:.0f} Hz: p50 {diff['p50_ms']:+.1f} ms, p99 "
              f"{diff['p99_ms']:+.1f} ms, delivered {fused['delivered_pct']:.1f} vs "
              f"{base['delivered_pct']:.1f} %", flush=True)
        return diff

    for _ in range(args.rounds if args.relay else 1):
        fused = run(args.rate, args.seconds, node_params=params)
        results["main"] = results["main"] or fused
        print(line(fused), flush=True)
        stages = fused["node_timing_ms"]
        print("node's own per-stage medians (ms, its /diagnostics): " +
              ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) +
              f"; sum {sum(stages.values()):.2f}", flush=True)
        if args.relay:
            results["rounds"].append(versus_relay(fused, args.rate, args.seconds))
    if len(results["rounds"]) > 1:
        p50s = [d["p50_ms"] for d in results["rounds"]]
        p99s = [d["p99_ms"] for d in results["rounds"]]
        print(f"node - relay at {args.rate:.0f} Hz over {len(p50s)} alternating rounds: p50 "
              f"median {np.median(p50s):+.1f} ms (rounds {min(p50s):+.1f} to {max(p50s):+.1f}),"
              f" p99 median {np.median(p99s):+.1f} ms ({min(p99s):+.1f} to {max(p99s):+.1f})",
              flush=True)
    for rate in [float(r) for r in args.sweep.split(",") if r]:
        results["sweep"].append(run(rate, args.sweep_seconds, node_params=params))
        print("sweep " + line(results["sweep"][-1]), flush=True)
        if args.relay:
            versus_relay(results["sweep"][-1], rate, args.sweep_seconds)
    if args.soak:
        results["soak"] = soak = run(args.rate, args.soak, node_params=params)
        print("soak " + line(soak), flush=True)
        for m in soak["latency_by_minute_ms"]:
            print(f"  minute {m['minute']:2d}: p50 {m['p50']:5.1f} p99 {m['p99']:5.1f} ms, node "
                  f"RSS {m['rss_mib']:.0f} MiB", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
