"""Targetless calibration on synthetic rigs made from real registered pairs.

Each rig: 1-5 registered IR/visible pairs of one test set (same RGB size), the IR re-imaged
through one random thermal view (50-90 % of the RGB width, +-4 degrees, keystone, thermal
160x120 / 320x256 / 640x512; some as 16-bit counts with noise, mapped by the node's AGC). The
error is the mean distance (RGB px) of the thermal corners mapped by the estimate and by the
truth. Prints a table by resolution, coverage, bit depth and pair count, and the seconds per
rig (2 cores, median). Needs ../shared/data/ivif.

    python benchmarks/calibration_rigs.py --rigs 30 [--json out/calibration_rigs.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lutfuse_ros.core.calibration import corner_error, estimate_homography
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible
from lutfuse_ros.core.preprocess import ThermalAGC
from lutfuse_ros.core.synthetic import random_thermal_view, reimage_thermal

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ivif"
THERMAL_SIZES = ((160, 120), (320, 256), (640, 512))
# RoadScene's pairs are registered to ~1 px (patch matching from the identity moves their
# corners by <= 1.5 px); MSRS's are off by a ~1.7 % scale (corners ~6 px, the same on three
# disjoint sets of 5 pairs), so MSRS rigs measure the dataset's registration as well.
POOLS = {"RoadScene 640x384": ("RoadScene_test", (640, 384)),
         "RoadScene 1280x768": ("RoadScene_test", (1280, 768)),
         "MSRS 640x480": ("MSRS_test", None)}


def load_set(name: str, size: tuple[int, int] | None = None
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A test set's registered pairs; ``size`` (W, H) resizes both images of every pair alike
    (the registration holds), so that pairs of different sizes can form one rig."""
    listing = match_pairs(SHARED / name / "ir", SHARED / name / "vis")
    pairs = [(read_ir(i), read_visible(v)) for _, i, v in listing.pairs]
    if size is not None:
        pairs = [(cv2.resize(i, size, interpolation=cv2.INTER_AREA),
                  cv2.resize(v, size, interpolation=cv2.INTER_AREA)) for i, v in pairs]
    return pairs


def make_rig(pool, rng, n_pairs, thermal_size, counts16, gray=False):
    rgb_size = (pool[0][1].shape[1], pool[0][1].shape[0])
    h_true = random_thermal_view(rgb_size, thermal_size, rng)
    picks = rng.choice(len(pool), size=n_pairs, replace=False)
    pairs = []
    agc = ThermalAGC("percentile", smoothing=1.0)
    for k in picks:
        ir, vis = pool[k]
        raw = reimage_thermal(ir, h_true, thermal_size, counts16=counts16, rng=rng)
        ir8 = agc(raw) if counts16 else raw
        pairs.append((ir8, vis[:, :, 1].copy() if gray else vis))
    return pairs, h_true


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rigs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sets", nargs="+", default=["RoadScene 640x384", "RoadScene 1280x768"],
                    choices=list(POOLS))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pools = {name: load_set(*spec) for name, spec in POOLS.items()}
    rows = []
    for r in tqdm(range(args.rigs), desc="rigs"):
        thermal_size = THERMAL_SIZES[r % 3]
        n_pairs = 1 + (r // 3) % 5
        counts16 = (r // 2) % 2 == 1  # not in step with the set (r % 2)
        pool_name = args.sets[r % len(args.sets)]
        pairs, h_true = make_rig(pools[pool_name], rng, n_pairs, thermal_size, counts16,
                                 gray=r % 7 == 6)
        t0 = time.perf_counter()
        res = estimate_homography(pairs)
        seconds = time.perf_counter() - t0
        rgb_w = pairs[0][1].shape[1]
        cov = np.ptp((h_true @ np.array([[0, thermal_size[0]], [0, 0], [1, 1]]))[0]) / rgb_w
        rows.append({"rig": r, "set": pool_name, "thermal": f"{thermal_size[0]}x{thermal_size[1]}",
                     "pairs": n_pairs, "bits": 16 if counts16 else 8,
                     "coverage": round(float(cov), 2),
                     "error_px": corner_error(res.homography, h_true, thermal_size),
                     "confident": res.confident, "reason": res.reason,
                     "score_before": res.score_before, "score_after": res.score_after,
                     "score_mismatched": res.score_mismatched, "spread_px": res.spread_px,
                     "patches": res.patches, "residual_px": res.residual_px,
                     "seconds": seconds})
        tqdm.write(f"rig {r:2d} {pool_name} {rows[-1]['thermal']:>7} pairs {n_pairs} "
                   f"{rows[-1]['bits']:2d}-bit cov {cov:.2f}: error "
                   f"{rows[-1]['error_px']:7.2f} px, score "
                   f"{res.score_before:.3f} -> {res.score_after:.3f} (chance "
                   f"{res.score_mismatched:.3f}), spread {res.spread_px:.1f}, "
                   f"{'ok' if res.confident else 'REFUSED: ' + res.reason}, {seconds:.1f} s")
    err = np.array([r["error_px"] for r in rows])
    ok = np.array([r["confident"] for r in rows])
    seconds = np.median([r["seconds"] for r in rows])
    print(f"\n{len(rows)} rigs on {os.cpu_count()} cores: median error {np.median(err):.2f} px, "
          f"<= 3 px on {np.mean(err <= 3) * 100:.0f} %, <= 1 px on {np.mean(err <= 1) * 100:.0f} %;"
          f" confident {ok.sum()}: median {np.median(err[ok]) if ok.any() else float('nan'):.2f}"
          f" px, worst {err[ok].max() if ok.any() else float('nan'):.2f} px; refused "
          f"{(~ok).sum()}: median {np.median(err[~ok]) if (~ok).any() else float('nan'):.2f} px;"
          f" {seconds:.1f} s/rig (median)")
    table: dict = {}
    for r in rows:
        for key in (("thermal", r["thermal"]), ("pairs", r["pairs"]), ("bits", r["bits"]),
                    ("coverage", "< 0.6" if r["coverage"] < 0.6 else ">= 0.6"),
                    ("set", r["set"])):
            table.setdefault(key, []).append(r)
    print("\n| group | rigs | median error px | <= 3 px | confident | median s |")
    print("|---|---:|---:|---:|---:|---:|")
    for (k, v), rs in sorted(table.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        e = np.array([r["error_px"] for r in rs])
        print(f"| {k} {v} | {len(rs)} | {np.median(e):.2f} | {np.mean(e <= 3) * 100:.0f} % | "
              f"{sum(r['confident'] for r in rs)} | "
              f"{np.median([r['seconds'] for r in rs]):.1f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
