"""Fleet-scale training pieces measured on this machine: shard conversion, streaming memory,
and training steps/s at world size 1 and 2 (torchrun, gloo on the CPU; NCCL on GPUs).

1. Conversion: ``--bags`` recordings of ``--frames`` 640x480 pairs (procedural, written as
   ``ros2 bag record`` writes mono16 + bgr8) -> shards with 1 and 2 processes: pairs/s.
2. Memory: the process's peak RSS while streaming crops from the shard set for several
   passes, against the shard set's size on disk (the stream holds its shuffle buffer, not
   the data).
3. Training: the teacher (default config widths, crop 128, global batch 8) for ``--steps``
   steps from the shards, at world size 1 and 2: steps/s and pairs/s (crops/s) read.

    python benchmarks/fleet_training.py [--bags 4] [--frames 48] [--steps 30]
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lutfuse_ros.core.preprocess import PreprocessConfig
from lutfuse_ros.core.synthetic import synthetic_pair
from lutfuse_ros.stream.bagio import lutfuse_typestore
from lutfuse_ros.stream.shards import ShardSet, convert


def write_recording(path: Path, frames: int, seed: int) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = lutfuse_typestore()
    Image = ts.types["sensor_msgs/msg/Image"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]

    def msg(arr, encoding, t):
        step = arr.shape[1] * arr.itemsize * (1 if arr.ndim == 2 else 3)
        return Image(header=Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="f"),
                     height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0,
                     step=step, data=np.frombuffer(arr.tobytes(), np.uint8))

    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as w:
        ct = w.add_connection("/thermal/image", Image.__msgtype__, typestore=ts)
        cv = w.add_connection("/rgb/image", Image.__msgtype__, typestore=ts)
        for k in range(frames):
            ir, rgb = synthetic_pair(seed=seed * 1000 + k, shape=(480, 640))
            t = 10**9 + k * 200_000_000
            counts = (ir.astype(np.uint16) * 40 + 20000)
            w.write(ct, t, ts.serialize_cdr(msg(counts, "mono16", t + 2_000_000),
                                            Image.__msgtype__))
            w.write(cv, t, ts.serialize_cdr(msg(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8", t),
                                            Image.__msgtype__))


def stream_memory(shards: Path, passes: int = 3) -> tuple[list[float], float]:
    """Resident memory (MB) of a fresh process after each pass of streaming crops from the
    shard set, and its peak."""
    code = f"""
import resource
from lutfuse_ros.stream.shards import ShardSet
from lutfuse_training.data import ShardCrops

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

s = ShardSet.open({str(shards)!r})
stream = iter(ShardCrops(list(s.shards), crop=128, seed=0, buffer=256, crops_per_pair=4))
after = []
for _ in range({passes}):
    for _ in range(s.pairs * 4):
        next(stream)
    after.append(rss())
print(*after, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *after, peak = map(float, out.stdout.split())
    return after, peak


def baseline_memory() -> float:
    code = ("import resource; import lutfuse_training.data; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)


def train_rate(shards: Path, run: Path, world: int, steps: int) -> float:
    args = ["teacher", "--data", str(shards), "--out", str(run), "--steps", str(steps),
            "--set", "crop=128", "--set", "val_every=100000", "--set", "val_pairs=0",
            "--batch-size", "8", "--device", "cpu"]
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo")
    if world == 1:
        cmd = [sys.executable, "-m", "lutfuse_training.cli", *args]
    else:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // world))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={world}", "-m", "lutfuse_training.cli", *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    with open(run / "teacher_log.csv") as f:
        rows = list(csv.DictReader(f))
    # steps/s over the second half (start-up, first batches and graph warm-up left out)
    half = rows[len(rows) // 2:]
    dt = float(half[-1]["elapsed_s"]) - float(rows[len(rows) // 2 - 1]["elapsed_s"])
    return len(half) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bags", type=int, default=4, help="recordings to convert")
    ap.add_argument("--frames", type=int, default=48, help="640x480 pairs per recording")
    ap.add_argument("--steps", type=int, default=30, help="teacher steps per training run")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; {args.bags} recordings x {args.frames} pairs "
          "640x480")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k in range(args.bags):
            write_recording(tmp / "bags" / f"robot{k}", args.frames, k)
        bags = sorted((tmp / "bags").iterdir())
        for workers in (1, 2):
            out = tmp / f"shards{workers}"
            t0 = time.monotonic()
            convert(bags, out, PreprocessConfig(), pairs_per_shard=16, workers=workers,
                    progress=False)
            dt = time.monotonic() - t0
            pairs = ShardSet.open(out).pairs
            print(f"conversion, {workers} process(es): {pairs} pairs in {dt:.1f} s = "
                  f"{pairs / dt:.1f} pairs/s ({pairs / dt / workers:.1f} per process)")
        shards = tmp / "shards2"
        size_mb = sum(p.stat().st_size for p in shards.glob("*.tar")) / 2**20
        decoded_mb = ShardSet.open(shards).pairs * 480 * 640 * 4 / 2**20
        after, peak = stream_memory(shards)
        print(f"streaming 3 passes over {size_mb:.0f} MB of shards ({decoded_mb:.0f} MB "
              f"decoded), buffer 256 crops of 128 px: resident "
              f"{' -> '.join(f'{a:.0f}' for a in after)} MB after each pass, peak {peak:.0f} "
              f"MB; the imports alone {baseline_memory():.0f} MB")
        for world in (1, 2):
            rate = train_rate(shards, tmp / f"run{world}", world, args.steps)
            print(f"teacher, world size {world}: {rate:.2f} steps/s = {rate * 8:.1f} crops/s "
                  "(global batch 8, crop 128, default widths)")


if __name__ == "__main__":
    main()
