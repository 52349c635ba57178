"""How far the torch backend (CPU, or a GPU's CUDA graphs and eager pass) is from the numpy
backend on real pairs: the largest difference and the share of differing values, fast and
exact mode, each frame fused twice (eager at a size's first frame, the graph from its second).

    python benchmarks/backend_parity.py [--data DIR ...] [--device cuda] [--exact-pairs 6]

DIR holds ``ir/`` and ``vis/`` (default: the IVIF test sets in ../shared/data/ivif).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible

IVIF = Path(__file__).resolve().parents[2] / "shared" / "data" / "ivif"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", type=Path,
                        default=[IVIF / "MSRS_test", IVIF / "RoadScene_test"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--exact-pairs", type=int, default=6)
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device {args.device} ({gpu}), torch {torch.__version__}")
    model = load_model()
    pairs = []
    for folder in args.data:
        listing = match_pairs(folder / "ir", folder / "vis")
        pairs += [(read_ir(i), read_visible(v)) for _, i, v in listing.pairs]
    print(f"{len(pairs)} pairs from {', '.join(str(d) for d in args.data)}")
    print("| mode | variant | pairs | max diff (LSB) | values differing | values > 1 LSB |")
    print("|---|---|---:|---:|---:|---:|")
    for exact in (False, True):
        subset = pairs if not exact else pairs[::max(1, len(pairs) // args.exact_pairs)]
        ref = Fuser(model, FusionConfig(exact=exact))
        want = [ref.fuse(ir, vis) for ir, vis in subset]
        on_gpu = args.device.startswith("cuda")
        for graph, kernels in ([(True, "cupy"), (False, "cupy"), (True, "torch"),
                                (False, "torch")] if on_gpu else [(False, "torch")]):
            try:
                fuser = Fuser(model, FusionConfig(exact=exact, backend="torch",
                                                  device=args.device, cuda_graph=graph,
                                                  gpu_kernels=kernels))
            except ValueError as exc:
                print(f"| {'exact' if exact else 'fast'} | {kernels}: {exc} | | | | |")
                continue
            diffs = []
            for (ir, vis), w in zip(subset, want):
                for _ in range(2):
                    diffs.append(np.abs(fuser.fuse(ir, vis).astype(np.int16) - w))
            flat = np.concatenate([d.ravel() for d in diffs])
            variant = f"torch {args.device}, {fuser.backend.pixel_kernels}" + (
                ", CUDA graph" if graph else ", eager")
            print(f"| {'exact' if exact else 'fast'} | {variant} | {len(subset)} | "
                  f"{int(flat.max())} | {100 * np.mean(flat > 0):.4f} % | "
                  f"{100 * np.mean(flat > 1):.4f} % |")


if __name__ == "__main__":
    main()
