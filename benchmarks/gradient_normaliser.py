"""Per-image vs stable gradient normaliser: quality on the test sets and flicker on video.

Quality: every test pair fused with a fresh normaliser (no history), metrics as in
``lutfuse eval``, with the Max and Average rules beside. Flicker: a static real scene with one
moving high-contrast hot object; the mean absolute frame-to-frame change of the fused image
outside the object (and a margin) is what the normaliser adds, since nothing else moves.

    python benchmarks/gradient_normaliser.py --out out/gradient_normaliser
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lutfuse_ros.core import Fuser, load_model
from lutfuse_ros.core.imageio import match_pairs, mosaic, read_ir, read_visible, write_image
from lutfuse_ros.core.metrics import evaluate, to_gray
from lutfuse_ros.core.model import official_model_path
from lutfuse_ros.core.preprocess import GradientNormaliser
from lutfuse_ros.core.synthetic import synthetic_pair

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ivif"
QUALITY = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")


def settings() -> dict[str, object]:
    return {"per_image": lambda: GradientNormaliser("per_image"),
            "stable q0.9": lambda: GradientNormaliser("stable", quantile=0.9),
            "stable q0.99": lambda: GradientNormaliser("stable", quantile=0.99),
            "stable q1.0": lambda: GradientNormaliser("stable", quantile=1.0),
            "Max": "max", "Average": "avg"}


def quality(fuser: Fuser, dataset: Path, limit: int) -> dict[str, dict[str, float]]:
    pairs = match_pairs(dataset / "ir", dataset / "vis").pairs[:limit]
    sums: dict[str, list[dict[str, float]]] = {k: [] for k in settings()}
    for _, ir_path, vis_path in pairs:
        ir, vis = read_ir(ir_path), read_visible(vis_path)
        a, b = ir.astype(np.float32), to_gray(vis)
        for name, make in settings().items():
            if make == "max":
                f = np.maximum(a, b)
            elif make == "avg":
                f = (a + b) / 2
            else:
                f = to_gray(fuser.fuse(ir, vis, gradient=make()))
            sums[name].append(evaluate(f, a, b))
    return {k: {m: float(np.nanmean([r[m] for r in v])) for m in QUALITY} for k, v in sums.items()}


def moving_object_video(ir: np.ndarray, vis: np.ndarray, frames: int):
    """Yield (ir_t, vis_t, box): a hot, high-contrast checker block enters from the left,
    crosses the scene and leaves on the right (box = x0, y0, size; x0 may be off-image)."""
    h, w = ir.shape
    size = max(16, h // 6)
    yy, xx = np.mgrid[0:size, 0:size]
    checker = (((yy // 4) + (xx // 4)) % 2 * 255).astype(np.uint8)
    y0 = h // 2 - size // 2
    for t in range(frames):
        x0 = int(-size + (w + size) * t / max(frames - 1, 1))
        a, b = max(x0, 0), min(x0 + size, w)
        it, vt = ir.copy(), vis.copy()
        if b > a:
            it[y0:y0 + size, a:b] = 250
            vt[y0:y0 + size, a:b] = checker[:, a - x0:b - x0, None]
        yield it, vt, (x0, y0, size)


def flicker(fuser: Fuser, ir: np.ndarray, vis: np.ndarray, make, frames: int = 60,
            margin: int = 24) -> tuple[float, float, list[np.ndarray]]:
    """Mean and max (over frames) of mean |F_t - F_{t-1}| outside the moving object."""
    norm = make()
    prev, prev_box, changes, shots = None, None, [], []
    for t, (it, vt, box) in enumerate(moving_object_video(ir, vis, frames)):
        f = fuser.fuse(it, vt, gradient=norm).astype(np.int16)
        if prev is not None:
            static = np.ones(ir.shape, bool)
            for x0, y0, s in (box, prev_box):
                static[max(0, y0 - margin):y0 + s + margin, max(0, x0 - margin):x0 + s + margin] = 0
            changes.append(float(np.abs(f - prev)[static].mean()))
        if t in (0, frames // 2, frames - 1):
            shots.append(f.astype(np.uint8))
        prev, prev_box = f, box
    return float(np.mean(changes)), float(np.max(changes)), shots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/gradient_normaliser"))
    ap.add_argument("--limit", type=int, default=1000, help="pairs per test set")
    ap.add_argument("--flicker-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    fuser = Fuser(load_model(official_model_path()))  # the numbers in the README
    result: dict[str, dict] = {"quality": {}, "flicker": {}}
    lines = ["# Gradient normaliser: quality (fresh normaliser per image) and flicker", ""]
    for name in ("MSRS_test", "RoadScene_test"):
        if args.flicker_only or not (SHARED / name).exists():
            print(f"skipping {name}: {SHARED / name} absent")
            continue
        q = quality(fuser, SHARED / name, args.limit)
        result["quality"][name] = q
        lines += [f"## {name}", "", "| setting | " + " | ".join(QUALITY) + " |",
                  "|---" * (len(QUALITY) + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(f"{v[m]:.3f}" for m in QUALITY) + " |"
                  for k, v in q.items()]
        lines.append("")
        print("\n".join(lines[-len(q) - 4:]), flush=True)
    if (SHARED / "MSRS_test").exists():
        # A night scene: its own edges are weak, so a bright edge entering the view is what
        # the per-image normaliser reacts to.
        pairs = match_pairs(SHARED / "MSRS_test" / "ir", SHARED / "MSRS_test" / "vis").pairs
        _, ir_p, vis_p = next((p for p in pairs if p[0].endswith("N")), pairs[0])
        scene = (read_ir(ir_p), read_visible(vis_p))
    else:
        scene = synthetic_pair(seed=1, shape=(240, 320), night=True)
    lines += ["## Flicker: a night scene with a hot checker block entering, crossing and "
              "leaving it, 60 frames", "",
              "## Flicker (mean |F_t - F_t-1| outside the moving object, 8-bit levels)", "",
              "| setting | mean | max |", "|---|---|---|"]
    rows = []
    for name, make in settings().items():
        if not callable(make):
            continue
        mean, worst, shots = flicker(fuser, *scene, make)
        result["flicker"][name] = {"mean": mean, "max": worst}
        lines.append(f"| {name} | {mean:.3f} | {worst:.3f} |")
        print(lines[-1], flush=True)
        rows.append(shots)
    write_image(args.out / "flicker_mosaic.png",
                mosaic(rows, labels=["first frame", "middle", "last"]))
    (args.out / "gradient_normaliser.md").write_text("\n".join(lines) + "\n")
    (args.out / "gradient_normaliser.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
