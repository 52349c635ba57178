"""``lutfuse calibrate``: the thermal -> RGB homography of a rig, from recorded pairs or from
corresponding points, written as the node's calibration file, with an overlay to check it.

Pairs come from image folders (matched by file name, as ``lutfuse fuse``; 16-bit thermal goes
through the node's default AGC) or from a rosbag2 (the bag reader the training uses). The
estimate is :func:`lutfuse_ros.core.calibration.estimate_homography`; this module reads the
inputs, draws the overlay and writes the file.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .core.calibration import (
    CalibrationError,
    CalibrationResult,
    homography_from_points,
    orientation_field,
    rig_scores,
    to_gray_f32,
)
from .core.geometry import Size, resize_matrix, warp_to_rgb
from .core.imageio import match_pairs, mosaic, read_thermal, read_visible, write_image
from .core.preprocess import ThermalAGC

Pair = tuple[np.ndarray, np.ndarray]  # (thermal (h, w) uint8, RGB (H, W, 3) uint8)


def folder_pairs(ir_dir: Path, vis_dir: Path, max_pairs: int) -> tuple[list[Pair], list[str]]:
    """Up to ``max_pairs`` pairs, spread evenly over the folders; and the skipped names."""
    listing = match_pairs(ir_dir, vis_dir)
    chosen = listing.pairs
    if len(chosen) > max_pairs:
        chosen = [chosen[round(i)] for i in np.linspace(0, len(chosen) - 1, max_pairs)]
    # 16-bit thermal through the node's default AGC, each file its own frame
    pairs = [(read_thermal(i, ThermalAGC(smoothing=1.0)), read_visible(v)) for _, i, v in chosen]
    return pairs, [p.name for p in (*listing.ir_only, *listing.vis_only)]


def bag_pairs(bag: Path, thermal_topic: str, rgb_topic: str, every: int,
              max_pairs: int) -> list[Pair]:
    """Every ``every``-th synchronised pair of a bag (AGC applied, not registered)."""
    from .core.preprocess import Preprocessor
    from .stream.bagio import read_pairs

    pre = Preprocessor(agc=ThermalAGC(smoothing=1.0))
    pairs = []
    for n, (_, ir, rgb) in enumerate(read_pairs(bag, thermal_topic, rgb_topic, pre=pre,
                                                register=False)):
        if n % every == 0:
            pairs.append((ir, rgb))
            if len(pairs) >= max_pairs:
                break
    return pairs


def read_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Corresponding points, one per line: ``x_thermal y_thermal x_rgb y_rgb`` (``#`` starts
    a comment)."""
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        values = line.replace(",", " ").split()
        try:
            rows.append([float(v) for v in values])
        except ValueError:
            raise CalibrationError(f"{path}:{k}: not four numbers: {line!r}") from None
        if len(values) != 4:
            raise CalibrationError(f"{path}:{k}: need x_thermal y_thermal x_rgb y_rgb, got "
                                   f"{len(values)} values")
    pts = np.array(rows, np.float64).reshape(-1, 4)
    return pts[:, :2], pts[:, 2:]


def from_points(path: Path, thermal_size: Size, rgb_size: Size,
                pairs: list[Pair] | None = None) -> CalibrationResult:
    """A result from point correspondences (scored on ``pairs`` when there are any)."""
    src, dst = read_points(path)
    h, residual = homography_from_points(src, dst)
    before = after = float("nan")
    if pairs:
        before = float(np.mean(rig_scores(resize_matrix(thermal_size, rgb_size), pairs,
                                          rgb_size)))
        after = float(np.mean(rig_scores(h, pairs, rgb_size)))
    ok = residual <= 3.0
    return CalibrationResult(h, Size(*thermal_size), Size(*rgb_size), pairs_used=len(pairs or []),
                             score_before=before, score_after=after,
                             score_mismatched=float("nan"), spread_px=0.0,
                             residual_px=residual, patches=len(src), confident=ok,
                             reason="" if ok else f"the points fit a homography only to "
                             f"{residual:.1f} px (RMS): check them")


def overlay(pairs: list[Pair], result: CalibrationResult, count: int = 3) -> np.ndarray:
    """Before (the node's default resize) | after (the estimate), per pair: the edges of the
    registered thermal image in red over the visible image in grey."""
    rows = []
    picks = np.linspace(0, len(pairs) - 1, min(count, len(pairs))).round().astype(int)
    for k in picks:
        ir, vis = pairs[k]
        row = []
        for h in (resize_matrix(result.thermal_size, result.rgb_size), result.homography):
            reg = warp_to_rgb(ir, h, result.rgb_size)
            gray = vis if vis.ndim == 2 else cv2.cvtColor(vis, cv2.COLOR_RGB2GRAY)
            out = np.dstack([(gray * 0.7).astype(np.uint8)] * 3)
            # the strongest 10 % of the thermal gradients: what the estimate matches on
            edges = np.linalg.norm(orientation_field(to_gray_f32(reg), sigma=1.5), axis=2) > 0.98
            foot = warp_to_rgb(np.full(ir.shape, 255, np.uint8), h, result.rgb_size) > 0
            border = foot & ~(cv2.erode(foot.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
            out[edges & ~border] = (255, 40, 40)
            out[border] = (255, 255, 0)
            row.append(out)
        rows.append(row)
    height = min(result.rgb_size[1], 720)  # full resolution where it fits: edges are thin
    return mosaic(rows, labels=["before: resize (edges of thermal in red)",
                                "after: calibrated (thermal border in yellow)"], height=height)


def _px(value: float, digits: int) -> str:
    """A pixel figure, or "n/a" where the search produced none (no patches, one pair)."""
    return f"{value:.{digits}f} px" if np.isfinite(value) else "n/a"


def report(result: CalibrationResult) -> str:
    lines = [f"thermal {result.thermal_size[0]}x{result.thermal_size[1]} -> RGB "
             f"{result.rgb_size[0]}x{result.rgb_size[1]}, {result.pairs_used} pair(s)",
             f"alignment score {result.score_before:.3f} (resize) -> {result.score_after:.3f}"
             f" (calibrated); chance level {result.score_mismatched:.3f}",
             f"matched patches {result.patches}, residual {_px(result.residual_px, 2)}, "
             f"pairs disagree by {_px(result.spread_px, 1)}"]
    if np.isfinite(result.spread_px) and result.spread_px > 2.0:
        lines.append("  (the pairs do not agree to the pixel: a homography is exact for a "
                     "distant or planar scene; near objects show parallax)")
    lines.append("confident" if result.confident else f"NOT confident: {result.reason}")
    return "\n".join(lines)


def write_overlay(pairs: list[Pair], result: CalibrationResult, path: Path) -> None:
    write_image(path, overlay(pairs, result))
