"""Where a GPU's time goes in one fast-mode frame: the CUDA kernels of the eager pass, per
kernel, for the fused CuPy kernels and for the torch ops (torch.profiler); and the context
network at full resolution (exact mode's cost) in each memory layout and precision.

    python benchmarks/gpu_profile.py [--size 640x480] [--frames 20] [--net-sizes 640x480 ...]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.synthetic import synthetic_pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--net-sizes", nargs="*", default=["640x480", "1280x1024"])
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    ir, vis = synthetic_pair(seed=1, shape=(h, w))
    model = load_model()
    for kernels in ("cupy", "torch"):
        try:
            fuser = Fuser(model, FusionConfig(backend="torch", device="cuda", cuda_graph=False,
                                              gpu_kernels=kernels))
        except ValueError as exc:
            print(f"{kernels}: {exc}")
            continue
        for _ in range(3):
            fuser.fuse(ir, vis)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(args.frames):
                fuser.fuse(ir, vis)
            torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.device_time_total > 0]
        total = sum(e.device_time_total for e in events) / args.frames
        print(f"== {fuser.engine}, {args.size}: {total:.1f} us of GPU time a frame, "
              f"{sum(e.count for e in events) / args.frames:.0f} kernels and copies a frame")
        for e in sorted(events, key=lambda e: -e.device_time_total)[:12]:
            print(f"{e.device_time_total / args.frames:8.1f} us  x{e.count // args.frames:<3d} "
                  f"{e.key[:90]}")
    for size in args.net_sizes:
        context_net_layouts(model, size)


def context_net_layouts(model, size: str, runs: int = 20) -> None:
    """Median ms of the context network on a full frame (exact mode), NCHW vs channels-last,
    fp32 vs fp16, cuDNN's default algorithm choice vs its benchmark."""
    w, h = (int(v) for v in size.split("x"))
    x = torch.rand(1, 4, h, w, device="cuda") * 255
    for benchmark in (False, True):
        torch.backends.cudnn.benchmark = benchmark
        for half in (False, True):
            for layout in (torch.contiguous_format, torch.channels_last):
                net = model.build_context_net("cuda").to(memory_format=layout)
                xin = x.contiguous(memory_format=layout)
                if half:
                    net, xin = net.half(), xin.half()
                times = []
                with torch.inference_mode():
                    for i in range(runs + 3):
                        start, end = torch.cuda.Event(True), torch.cuda.Event(True)
                        start.record()
                        net(xin)
                        end.record()
                        end.synchronize()
                        if i >= 3:
                            times.append(start.elapsed_time(end))
                times.sort()
                name = "channels_last" if layout is torch.channels_last else "NCHW"
                print(f"context net {size}: {'fp16' if half else 'fp32'} {name:13s} cudnn."
                      f"benchmark={benchmark!s:5s} {times[len(times) // 2]:.3f} ms")
    torch.backends.cudnn.benchmark = False


if __name__ == "__main__":
    main()
