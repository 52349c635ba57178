"""Procedural IR/visible scenes: demo and test data with no licence question.

A street at day or night: sky, buildings with windows, a road, and warm objects (people,
a car's engine) that the visible camera barely shows in the dark but the thermal one does.
"""
from __future__ import annotations

import cv2
import numpy as np

from .geometry import Size


def synthetic_pair(seed: int = 0, shape: tuple[int, int] = (480, 640),
                   night: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One registered pair of ``shape`` (H, W). Returns ``(ir (H, W) uint8, vis (H, W, 3)
    uint8 RGB)``."""
    rng = np.random.default_rng(seed)
    h, w = shape
    night = bool(rng.integers(2)) if night is None else night
    light = 0.25 if night else 1.0
    vis = np.zeros((h, w, 3), np.float32)
    ir = np.zeros((h, w), np.float32)
    horizon = int(h * rng.uniform(0.35, 0.5))
    rows = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    vis[:horizon] = (np.array([90, 140, 220]) * (1 - rows) + np.array([200, 215, 235]) * rows)
    ir[:horizon] = 20 + 15 * rows[:, :, 0]
    vis[horizon:] = (85, 85, 90)
    # Sun-warmed asphalt by day; at night the road has cooled below the building walls, as
    # in real night scenes (MSRS): a camera's AGC then shows it mid-grey, people bright.
    ir[horizon:] = 80 if night else 110
    x = 0
    while x < w:  # buildings
        bw, bh = int(rng.integers(w // 10, w // 4)), int(rng.integers(h // 6, horizon))
        colour = rng.uniform(60, 200, 3)
        cv2.rectangle(vis, (x, horizon - bh), (x + bw, horizon), colour.tolist(), -1)
        cv2.rectangle(ir, (x, horizon - bh), (x + bw, horizon), float(rng.uniform(70, 120)), -1)
        for wy in range(horizon - bh + 8, horizon - 12, 18):
            for wx in range(x + 6, x + bw - 10, 16):
                lit = rng.random() < (0.5 if night else 0.1)
                c = (255, 230, 150) if lit else (40, 50, 70)
                cv2.rectangle(vis, (wx, wy), (wx + 7, wy + 9), c, -1)
                cv2.rectangle(ir, (wx, wy), (wx + 7, wy + 9), 140.0 if lit else 90.0, -1)
        x += bw + int(rng.integers(0, 20))
    for k in range(0, w, 60):  # lane marks
        cv2.rectangle(vis, (k, (h + horizon) // 2), (k + 30, (h + horizon) // 2 + 4),
                      (230, 230, 230), -1)
    for _ in range(int(rng.integers(2, 5))):  # people: warm, dark-clothed
        cx, cy = int(rng.integers(w // 20, w - w // 20)), int(rng.integers(horizon + 1, h))
        ph = int(rng.integers(h // 10, h // 5 + 1))
        cv2.ellipse(vis, (cx, cy - ph // 2), (ph // 6, ph // 2), 0, 0, 360, (50, 45, 40), -1)
        cv2.ellipse(ir, (cx, cy - ph // 2), (ph // 6, ph // 2), 0, 0, 360, 235.0, -1)
        cv2.circle(ir, (cx, cy - ph - ph // 8), ph // 8, 250.0, -1)
    cw, ch = w // 13, h // 16  # a car, its engine hot on the right
    cx, cy = int(rng.integers(cw, w - cw)), int(rng.integers(horizon + ch, h))
    cv2.rectangle(vis, (cx - cw, cy - ch), (cx + cw, cy), rng.uniform(40, 220, 3).tolist(), -1)
    cv2.rectangle(ir, (cx - cw, cy - ch), (cx + cw, cy), 150.0, -1)
    cv2.rectangle(ir, (cx + cw // 3, cy - ch + 2), (cx + cw - 1, cy - 2), 220.0, -1)
    vis = vis * light + rng.normal(0, 3 if not night else 2, vis.shape)
    ir = cv2.GaussianBlur(ir, (5, 5), 1.5) + rng.normal(0, 2, ir.shape)
    return (np.clip(ir, 0, 255).astype(np.uint8), np.clip(vis, 0, 255).astype(np.uint8))


def demo_pairs(count: int = 4, shape: tuple[int, int] = (480, 640)):
    """``count`` pairs alternating day and night: list of ``(name, ir, vis_rgb)``."""
    return [(f"synthetic_{i:02d}_{'night' if i % 2 else 'day'}",
             *synthetic_pair(seed=i, shape=shape, night=bool(i % 2))) for i in range(count)]


def random_thermal_view(rgb_size: Size, thermal_size: Size,
                        rng: np.random.Generator, coverage: tuple[float, float] = (0.5, 0.9),
                        max_angle_deg: float = 4.0, keystone: float = 0.03) -> np.ndarray:
    """A random thermal camera view inside an RGB image, as a 3x3 thermal -> RGB homography.

    The view spans ``coverage`` of the RGB width (same aspect as the thermal sensor), is
    rotated by up to ``max_angle_deg``, shifted at random within the RGB image, and its
    corners moved by up to ``keystone`` of its width (a small perspective).
    """
    w, h = rgb_size
    tw, th = thermal_size
    vw = rng.uniform(*coverage) * w
    vh = vw * th / tw
    if vh > 0.95 * h:  # a tall sensor in a wide image: limit by height instead
        vh = rng.uniform(0.5, 0.9) * h
        vw = vh * tw / th
    a = np.deg2rad(rng.uniform(-max_angle_deg, max_angle_deg))
    half = np.array([[-vw, -vh], [vw, -vh], [vw, vh], [-vw, vh]]) / 2
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    quad = half @ rot.T + rng.uniform(-keystone, keystone, (4, 2)) * vw
    fit = min(1.0, (w - 6) / np.ptp(quad[:, 0]), (h - 6) / np.ptp(quad[:, 1]))
    quad = quad * fit  # rotation and keystone must not push the view out of the RGB image
    ext = np.ptp(quad, axis=0) / 2
    centre = [rng.uniform(ext[0] + 2, w - ext[0] - 2), rng.uniform(ext[1] + 2, h - ext[1] - 2)]
    src = np.array([[0, 0], [tw, 0], [tw, th], [0, th]], np.float32) - 0.5
    dst = (quad + centre).astype(np.float32) - 0.5
    return cv2.getPerspectiveTransform(src, dst).astype(np.float64)


def reimage_thermal(ir_registered: np.ndarray, h_thermal_to_rgb: np.ndarray,
                    thermal_size: Size, counts16: bool = False,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """What a thermal camera with that view would see of a registered IR image.

    ``counts16``: return 16-bit raw counts (a radiometric-looking gain and offset, plus
    sensor noise) instead of 8 bits. (H, W) uint8 -> (th, tw) uint8 or uint16.
    """
    # Blur to the thermal pixel size first (a thermal pixel covers several RGB pixels).
    rgb_per_thermal = float(np.sqrt(abs(np.linalg.det(h_thermal_to_rgb[:2, :2]))))
    src = ir_registered
    if rgb_per_thermal > 1.2:
        src = cv2.GaussianBlur(src, (0, 0), 0.5 * rgb_per_thermal)
    out = cv2.warpPerspective(src, h_thermal_to_rgb, thermal_size,
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REFLECT)
    if not counts16:
        return out
    rng = rng if rng is not None else np.random.default_rng(0)
    counts = out.astype(np.float32) * 24.0 + 21000.0 + rng.normal(0, 12.0, out.shape)
    return np.clip(counts, 0, 65535).astype(np.uint16)


def pseudo_thermal(vis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A thermal-looking image registered *exactly* to a real visible image.

    The registered datasets are registered only to a few pixels per pair (see
    ``benchmarks/calibration_rigs.py``), too coarse to measure a sub-pixel calibration
    against. This keeps the visible image's real structure but changes everything an
    IR/visible pair differs in: textures smoothed away (edge-preserving filter), intensities
    remapped non-monotonically (edges change sign, some vanish), about half the view
    isothermal (no edges where the visible image has them), warm objects that the visible
    image does not show (people, engines: edges only one modality has), a slow heat gradient,
    and optical blur. Real thermal/visible pairs score 0.2-0.5 with
    :func:`~lutfuse_ros.core.calibration.alignment_score`; these ~0.3-0.6.

    Args:
        vis: :math:`(H, W, 3)` uint8 RGB or :math:`(H, W)` uint8.
        rng: the random draw (remap, warm objects, heat field).

    Returns:
        :math:`(H, W)` uint8, pixel-registered to ``vis``.
    """
    g = vis if vis.ndim == 2 else cv2.cvtColor(vis, cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    g = cv2.bilateralFilter(g, 9, 40, 5).astype(np.float32) / 255.0
    freq, phase = rng.uniform(0.6, 1.2), rng.uniform(0.0, 2 * np.pi)
    t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * g + phase)
    heat = cv2.resize(rng.uniform(0, 1, (4, 6)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    t = 0.65 * t + 0.35 * heat
    flat = cv2.resize(rng.uniform(0, 1, (5, 7)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    flat = np.clip((flat - np.median(flat)) * 8 + 0.5, 0, 1)  # ~half the view, soft borders
    t = flat * cv2.GaussianBlur(t, (0, 0), 0.05 * w) + (1 - flat) * t
    for _ in range(int(rng.integers(3, 9))):  # warm objects only the thermal camera sees
        centre = (int(rng.integers(0, w)), int(rng.integers(h // 3, h)))
        axes = (int(rng.integers(w // 80 + 2, w // 25 + 3)), int(rng.integers(h // 30 + 2,
                                                                           h // 8 + 3)))
        cv2.ellipse(t, centre, axes, 0, 0, 360, float(rng.uniform(0.85, 1.0)), -1)
    t = cv2.GaussianBlur(t, (0, 0), 1.2)
    return np.clip(t * 255, 0, 255).astype(np.uint8)
