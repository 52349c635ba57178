"""16-bit thermal AGC modes measured on real raw frames, and in the fused result.

Real frames (``../shared/data/thermal16``: thermitage 45 x 640x512 night facade, flirone 16 x
80x60, arcticseals 1 x 640x512) through :class:`ThermalAGC` with each mode's defaults (the
stills are seconds apart, a different view each: no smoothing across them):
- detail: EN and SF of the 8-bit result (higher: more of the scene shown);
- saturation: share of pixels within 2 levels of 0 or 255, and of frames with more than 3 %
  of them;
- noise: on the flattest 5 % of 16x16 blocks of the narrow-range facade, the output's standard
  deviation (grey levels) against the raw one (counts);
- stability (the node's smoothing): a real facade frame, a warm object (5 % of the view, a
  person's size) walks in over 10 frames, stays 10 and leaves: the largest mean change (grey
  levels) of the pixels it never covers, against the frame without it;
- fusion: the registered 8-bit IVIF IR (``../shared/data/ivif``: MSRS_test, RoadScene_test)
  sent as raw counts (3000 + 2 x level + noise of 3 counts), mapped by each mode, fused with
  the default model; metrics against the original 8-bit IR and the visible image, beside the
  plain 8-bit path and the Max and Average rules.

Writes a before/after picture per mode with ``--mosaic``.

    python benchmarks/thermal_agc.py [--mosaic docs/images/thermal_agc.jpg] [--fusion-pairs 24]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from lutfuse_ros.core import Fuser, load_model
from lutfuse_ros.core.imageio import match_pairs, mosaic, read_ir, read_visible, write_image
from lutfuse_ros.core.metrics import (
    TABLE_METRICS,
    entropy,
    evaluate,
    markdown_table,
    spatial_frequency,
    to_gray,
)
from lutfuse_ros.core.preprocess import ThermalAGC
from lutfuse_ros.core.thermal import range_table, read_raw_thermal

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# (label, ThermalAGC keywords); "percentile, before" is the per-frame 1-99 % stretch this
# package had before (no outlier handling, no gain limit), for reference
MODES = {"percentile, before": None,
         "percentile": dict(mode="percentile"),
         "plateau": dict(mode="plateau"),  # the default: plateau 1, max_gain 1
         "plateau 2, gain 2": dict(mode="plateau", plateau=2.0, max_gain=2.0),
         "plateau 0.5, gain 2": dict(mode="plateau", plateau=0.5, max_gain=2.0),
         "plateau 4, gain 4": dict(mode="plateau", plateau=4.0, max_gain=4.0),
         "equalize": dict(mode="equalize")}


def make_agc(spec, smoothing: float | None = None):
    if spec is None:  # np.percentile over every pixel, stuck codes included
        return lambda img: range_table(*np.percentile(img[::4, ::4], (1.0, 99.0)))[img]
    return ThermalAGC(**spec, **({} if smoothing is None else {"smoothing": smoothing}))


def folder(name: str) -> list[np.ndarray]:
    root = SHARED / "thermal16" / name
    root = root / "thermal16" if (root / "thermal16").is_dir() else root
    return [read_raw_thermal(p) for p in sorted(root.glob("*.png"))]


def saturation(out: np.ndarray) -> float:
    """Share of pixels within 2 levels of black or white (crushed, whatever the exact end)."""
    return float(np.mean((out <= 2) | (out >= 253)))


def flat_blocks(raw: np.ndarray, block: int = 16, share: float = 0.05) -> list[tuple[int, int]]:
    h, w = raw.shape
    stds = [(float(raw[y:y + block, x:x + block].std()), y, x)
            for y in range(0, h - block + 1, block) for x in range(0, w - block + 1, block)]
    stds.sort()
    return [(y, x) for _, y, x in stds[:max(1, int(len(stds) * share))]]


def noise(raw: np.ndarray, out: np.ndarray, blocks) -> tuple[float, float]:
    r = np.mean([raw[y:y + 16, x:x + 16].std() for y, x in blocks])
    o = np.mean([out[y:y + 16, x:x + 16].astype(np.float32).std() for y, x in blocks])
    return float(r), float(o)


def hot_object_sequence(frame: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The frame 35 times: an ellipse of ~5 % of the view, warmer than anything in the scene
    (a person: little texture of its own), walks in from the left over 10 frames, stays 10,
    walks out. Returns the frames and the mask of pixels it never covers."""
    h, w = frame.shape
    ax, ay = int(w * 0.09), int(h * 0.18)
    span = float(frame.max()) - float(frame.min())
    person = float(frame.max()) + 0.4 * span
    xs = [None] * 5 + list(np.linspace(-ax, w // 2, 10).astype(int)) + [w // 2] * 10 + \
        list(np.linspace(w // 2, -ax, 10).astype(int))
    frames, covered = [], np.zeros((h, w), bool)
    texture = 0.15 * (frame.astype(np.float32) - float(np.median(frame)))
    for x in xs:
        f = frame.copy()
        if x is not None:
            m = np.zeros((h, w), np.uint8)
            cv2.ellipse(m, (int(x), h // 2), (ax, ay), 0, 0, 360, 1, -1)
            m = m > 0
            f[m] = np.clip(person + texture[m], 0, 65535).astype(np.uint16)
            covered |= m
        frames.append(f)
    return frames, ~cv2.dilate(covered.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)


def real_frames_table(args) -> tuple[str, list]:
    sets = {name: folder(name) for name in ("thermitage", "flirone", "arcticseals")
            if (SHARED / "thermal16" / name).is_dir()}
    facade = sets["thermitage"]
    blocks = flat_blocks(facade[0])
    seq, background = hot_object_sequence(facade[0])
    rows, pictures = [], []
    for label, spec in tqdm(MODES.items(), desc="modes (real frames)"):
        row, shown = {"mode": label}, []
        for name, frames in sets.items():
            agc = make_agc(spec, smoothing=1.0)  # stills seconds apart: each its own mapping
            outs = [agc(f) for f in frames]
            row[f"{name} EN"] = np.mean([entropy(o.astype(np.float32)) for o in outs])
            row[f"{name} SF"] = np.mean([spatial_frequency(o.astype(np.float32)) for o in outs])
            sats = [saturation(o) for o in outs]
            row[f"{name} sat"] = 100 * np.mean(sats)
            row[f"{name} >3%"] = 100 * np.mean([s > 0.03 for s in sats])
            if name == "thermitage":
                r, o = noise(frames[0], outs[0], blocks)
                row["raw noise"], row["out noise"] = r, o
            shown.append(outs[min(5, len(outs) - 1)] if name == "flirone" else outs[0])
        agc = make_agc(spec)
        outs = [agc(f).astype(np.float32) for f in seq]
        ref = outs[4]  # settled, no object yet
        row["shift"] = max(float(np.abs(o - ref)[background].mean()) for o in outs)
        pictures.append((label, [shown[0], outs[24].astype(np.uint8), *shown[1:]]))
        rows.append(row)
    cols = ["mode"] + [f"{n} {m}" for n in sets for m in ("EN", "SF", "sat", ">3%")] + \
        ["raw noise", "out noise", "shift"]
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    for r in rows:
        lines.append("| " + " | ".join([r["mode"]] + [f"{r[c]:.2f}" for c in cols[1:]]) + " |")
    return "\n".join(lines) + "\n", pictures


def fusion_table(n_pairs: int, shown: list | None = None) -> str:
    model = load_model()
    fuser = Fuser(model)
    rng = np.random.default_rng(0)
    means: dict[str, dict[str, list[float]]] = {}
    pairs = []
    for name in ("MSRS_test", "RoadScene_test"):
        root = SHARED / "ivif" / name
        if root.is_dir():
            pairs += [(read_ir(i), read_visible(v))
                      for _, i, v in match_pairs(root / "ir", root / "vis").pairs[:n_pairs]]
    picks = {0, n_pairs - 1}  # two MSRS pairs (day, night) go into the picture
    for k, (ir, vis) in enumerate(tqdm(pairs, desc="pairs (fusion)")):
        a, b = ir.astype(np.float32), to_gray(vis)
        raw = np.clip(3000 + 2.0 * ir + rng.normal(0, 3, ir.shape), 0, 65535).astype(np.uint16)
        results = {"8-bit IR (no AGC)": fuser.fuse(ir, vis), "Max rule": np.maximum(a, b),
                   "Average rule": (a + b) / 2}
        for label, spec in MODES.items():
            results[f"raw -> {label}"] = fuser.fuse(make_agc(spec, smoothing=1.0)(raw), vis)
        if shown is not None and k in picks:
            shown.append([results[m] for m in ("8-bit IR (no AGC)", "raw -> percentile, before",
                                               "raw -> percentile", "raw -> plateau")])
        for label, fused in results.items():
            f = fused if fused.ndim == 2 else to_gray(fused)
            for k, v in evaluate(f, a, b).items():
                means.setdefault(label, {}).setdefault(k, []).append(v)
    return markdown_table({m: {k: float(np.mean(v)) for k, v in d.items()}
                           for m, d in means.items()}, TABLE_METRICS, digits=3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mosaic", type=Path, default=None)
    ap.add_argument("--fusion-pairs", type=int, default=24, help="per test set; 0: skip")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores")
    table, pictures = real_frames_table(args)
    print("\nReal raw frames (EN, SF: mean per frame; sat: % pixels at 0/255; >3%: % frames with"
          " more than 3 % saturated; noise: facade's flattest blocks, raw counts -> output "
          "levels; shift: hot object walking through, largest mean change of the rest, levels)\n")
    print(table)
    fused_rows: list = []
    if args.fusion_pairs:
        print("Fusion of simulated raw counts (default model; metrics against the 8-bit IR and "
              "the visible image)\n")
        print(fusion_table(args.fusion_pairs, fused_rows))
    if args.mosaic:
        height = 200
        img = mosaic([tiles for _, tiles in pictures], height=height,
                     labels=["thermitage facade", "a hot object walks in", "flirone (hand)",
                             "arcticseals (sea ice)"])
        for k, (label, _) in enumerate(pictures):
            for colour, width in (((0, 0, 0), 3), ((255, 255, 0), 1)):
                cv2.putText(img, label, (6, height * k + height - 10),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, width)
        write_image(args.mosaic, img)
        print(f"wrote {args.mosaic}")
        if fused_rows:
            fused = args.mosaic.with_name(args.mosaic.stem + "_fused" + args.mosaic.suffix)
            write_image(fused, mosaic(fused_rows, height=240, labels=[
                "8-bit IR, fused", "raw -> percentile before", "raw -> percentile",
                "raw -> plateau"]))
            print(f"wrote {fused}")


if __name__ == "__main__":
    main()
