"""Quality of fp16 (torch backend: context network in half precision) against fp32.

Prints PSNR (dB) and the largest difference of the fused images, fp16 vs fp32, on the IVIF
test sets (../shared), fast and exact mode, with the device it ran on. fp16 is for GPUs; on
a CPU the numbers are the same maths but the run is slow, so exact mode takes a few pairs.

    python benchmarks/fp16_quality.py [--device cuda] [--exact-pairs 4]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from lutfuse_ros.bench import cpu_name
from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ivif"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--exact-pairs", type=int, default=4)
    args = parser.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    print(f"device: {args.device} ({name}), torch {torch.__version__}")
    model = load_model()
    for exact in (False, True):
        cfg = dict(backend="torch", device=args.device, exact=exact)
        fp32, fp16 = Fuser(model, FusionConfig(**cfg)), \
            Fuser(model, FusionConfig(**cfg, precision="fp16"))
        for dataset in ("MSRS_test", "RoadScene_test"):
            root = SHARED / dataset
            if not root.exists():
                print(f"skipping {dataset}: {root} absent")
                continue
            listing = match_pairs(root / "ir", root / "vis").pairs
            if exact:
                listing = listing[:args.exact_pairs]
            values, worst = [], 0
            for _, ir_p, vis_p in listing:
                ir, vis = read_ir(ir_p), read_visible(vis_p)
                a, b = fp32.fuse(ir, vis), fp16.fuse(ir, vis)
                values.append(psnr(a, b))
                worst = max(worst, int(np.abs(a.astype(np.int16) - b).max()))
            finite = [v for v in values if math.isfinite(v)]
            mean = f"{np.mean(finite):.1f} dB" if finite else "identical"
            print(f"{'exact' if exact else 'fast '} {dataset:15s} {len(values):2d} pairs: PSNR "
                  f"fp16 vs fp32 mean {mean}, min {min(values):.1f} dB, largest difference "
                  f"{worst} grey levels, {len(values) - len(finite)} identical")


if __name__ == "__main__":
    main()
