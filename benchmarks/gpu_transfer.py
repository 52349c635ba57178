"""Moving one pair to a GPU and the fused frame back: pageable vs pinned host memory, and
how the host copy into the pinned buffers is made (numpy vs torch's threaded copy).

Prints the median of ``--runs`` round trips (bgr8 + mono8 up, bgr8 down) per size; the
torch backend's CUDA-graph path uses the pinned buffers (``core/torch_backend.py``).

    python benchmarks/gpu_transfer.py [--sizes 640x480 1280x1024] [--runs 200]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def median_ms(fn, runs: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x1024"])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {os.cpu_count()} CPU "
          f"cores, {torch.get_num_threads()} torch threads; median of {args.runs} round trips")
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        rng = np.random.default_rng(0)
        vis = rng.integers(0, 256, (h, w, 3), np.uint8)
        ir = rng.integers(0, 256, (h, w), np.uint8)
        out = np.empty_like(vis)
        d_vis, d_ir = torch.empty(vis.shape, dtype=torch.uint8, device="cuda"), \
            torch.empty(ir.shape, dtype=torch.uint8, device="cuda")
        d_out = torch.empty(vis.shape, dtype=torch.uint8, device="cuda")
        p_vis, p_ir, p_out = (torch.empty(a.shape, dtype=torch.uint8, pin_memory=True)
                              for a in (vis, ir, out))

        def pageable():
            d_vis.copy_(torch.from_numpy(vis))
            d_ir.copy_(torch.from_numpy(ir))
            torch.from_numpy(out).copy_(d_out)

        def dma_only():
            d_vis.copy_(p_vis, non_blocking=True)
            d_ir.copy_(p_ir, non_blocking=True)
            p_out.copy_(d_out, non_blocking=True)
            torch.cuda.current_stream().synchronize()

        def pinned_numpy():
            np.copyto(p_vis.numpy(), vis)
            np.copyto(p_ir.numpy(), ir)
            dma_only()
            np.copyto(out, p_out.numpy())

        def pinned_torch():
            p_vis.copy_(torch.from_numpy(vis))
            p_ir.copy_(torch.from_numpy(ir))
            dma_only()
            torch.from_numpy(out).copy_(p_out)

        for name, fn in (("pageable", pageable), ("pinned, DMA only (floor)", dma_only),
                         ("pinned, numpy host copies", pinned_numpy),
                         ("pinned, torch host copies", pinned_torch)):
            print(f"{size} {name:28s} {median_ms(fn, args.runs):7.3f} ms")


if __name__ == "__main__":
    main()
