"""Targetless thermal -> RGB registration: one homography for a rig, from a few image pairs.

Thermal and visible images share edges, not intensities, and their edges often have opposite
signs (a warm person against a cool wall is bright in IR and may be dark in RGB). So both
images are turned into a polarity-free *orientation field*: the gradient direction as a
double angle, ``w * (cos 2θ, sin 2θ)``, weighted by the gradient magnitude clipped at a high
quantile (a few strong lamps do not outvote the structure). Two fields correlate where the
images have edges in the same place and direction, whatever their sign.

The estimate runs coarse to fine and uses all pairs of a rig jointly (one rig, one
homography):

1. Coarse: scale x rotation x shift of the thermal image inside the RGB image, at a working
   width of 256 px; for each scale and rotation the thermal field is a template, correlated
   over every shift with OpenCV's ``matchTemplate`` (normalised), averaged over the pairs.
2. Fine: the same search, narrowed around the best, at 512 px.
3. Homography: the thermal image, warped by the current estimate, is cut into patches; each
   patch's shift against the visible image is found by correlating the fields (summed over
   the pairs), and a homography is fitted to the moved patch centres (RANSAC to drop moving
   objects, then least squares that keeps the corners near the previous estimate where the
   patches do not reach); four rounds, coarse to fine. (OpenCV's ECC was tried for this
   stage first and diverged on most rigs: it needs intensities that agree.)
4. Dense: Gauss-Newton on the view's corners minimising the squared difference of the two
   fields over all pairs (the visible field warped into the thermal frame), coarse to fine;
   kept only if it raises the joint score.

The score of a registration (:func:`alignment_score`) is the normalised correlation of the two
fields over the thermal footprint: ~0 for unrelated images, higher the better they fit. A
result is *confident* when enough patches matched, the score is high enough and the pairs'
own estimates agree (:func:`is_confident`); otherwise the caller is told why.

A homography is exact for a planar or distant scene; near objects show parallax with the
cameras' baseline, which shows up as disagreement between pairs (``spread_px``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .errors import InputError
from .geometry import (
    Size,
    apply_h,
    corner_error,
    corners,
    homography_from_corners,
    resize_matrix,
    similarity,
    warp_to_rgb,
)

COARSE_WIDTH = 256        # working width of the RGB image for the coarse search (px)
FINE_WIDTH = 512          # ... and for the narrowed search
MIN_COVERAGE, MAX_COVERAGE = 0.4, 1.05  # thermal view width / RGB width searched
ROTATIONS_DEG = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)  # coarse rotation search (degrees)
COARSE_SCALES = 24        # scale steps between MIN_COVERAGE and MAX_COVERAGE (~4 % apart)
# (working width, patch, search) of the patch-matching rounds, coarse to fine
PATCH_ROUNDS = ((FINE_WIDTH // 2, 32, 12), (FINE_WIDTH, 64, 8), (FINE_WIDTH, 64, 4),
                (2 * FINE_WIDTH, 96, 4))
# (working width, field blur) of the dense Gauss-Newton rounds after the patches
DENSE_ROUNDS = ((FINE_WIDTH * 5 // 8, 2.5), (FINE_WIDTH * 5 // 4, 2.0), (FINE_WIDTH * 5 // 4, 1.2))
MIN_SCORE = 0.15          # below this no registration is trusted (unrelated images ~0.02)
MIN_PATCHES, MIN_PATCHES_ONE_PAIR = 8, 12  # matched patches a homography must rest on
# Pixel limits for a 640-px-wide RGB image; they scale with the RGB width.
MAX_SPREAD_PX = 8.0       # per-pair estimates further apart than this: not one rig/planar
MAX_RESIDUAL_PX = 2.5     # patches further from the fitted homography than this (RMS)


class CalibrationError(InputError):
    """No pairs, sizes that change within a rig, or an unusable point file."""


@dataclass
class CalibrationResult:
    """A rig's thermal -> RGB homography and what it rests on.

    Attributes:
        homography: 3x3 float64, thermal pixel -> RGB pixel (homogeneous, ``h[2, 2] = 1``).
        thermal_size, rgb_size: (width, height) of the images it was estimated on.
        pairs_used: pairs whose own estimate went into the choice.
        score_before: :func:`alignment_score` of a plain resize (the node's default).
        score_after: the same score with ``homography`` (mean over the pairs).
        score_mismatched: the best score the search finds on mismatched content (the
            thermal images against each other's visible images, or flipped): the level of
            chance agreement.
        spread_px: median distance (RGB px) of the thermal corners mapped by each pair's own
            estimate from the chosen one: parallax or a bad pair shows here.
        residual_px: RMS distance of the matched patch centres from the fitted homography.
        patches: matched patches (summed over the pairs) the homography rests on.
        view: ``"thermal inside rgb"`` or ``"rgb inside thermal"`` (which view was searched
            inside which; the figures above are in that search's pixels).
        confident: the result is trustworthy (see :func:`is_confident`); ``reason`` says why
            not otherwise.
    """

    homography: np.ndarray
    thermal_size: Size
    rgb_size: Size
    pairs_used: int
    score_before: float
    score_after: float
    score_mismatched: float
    spread_px: float
    residual_px: float = float("nan")
    patches: int = 0
    view: str = "thermal inside rgb"
    confident: bool = False
    reason: str = ""

    def to_yaml_dict(self) -> dict:
        """The node's calibration file (``registration.calibration_file``)."""
        h = self.homography / self.homography[2, 2]
        return {"mode": "homography",
                "homography": [float(f"{v:.9g}") for v in h.ravel()],
                "thermal_size": list(self.thermal_size), "rgb_size": list(self.rgb_size),
                "estimate": {"method": "targetless (orientation field, patch matching)",
                             "pairs_used": self.pairs_used,
                             "score_before": round(self.score_before, 4),
                             "score_after": round(self.score_after, 4),
                             "score_mismatched": round(self.score_mismatched, 4),
                             "spread_px": round(self.spread_px, 2),
                             "residual_px": round(self.residual_px, 2),
                             "patches": self.patches, "view": self.view,
                             "confident": self.confident,
                             **({"reason": self.reason} if self.reason else {})}}


# -- representation ------------------------------------------------------------------------
def to_gray_f32(img: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) uint8/uint16/float -> (H, W) float32 in [0, 1]-ish."""
    if img.ndim == 3:
        img = cv2.cvtColor(img[:, :, :3], cv2.COLOR_RGB2GRAY)
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    return np.clip((img - np.float32(lo)) / np.float32(max(hi - lo, 1e-6)), 0.0, 1.0)


def orientation_field(gray: np.ndarray, sigma: float = 1.0,
                      cap_quantile: float = 0.9) -> np.ndarray:
    """Polarity-free edge field ``w * (cos 2θ, sin 2θ)`` of a grey image.

    Args:
        gray: :math:`(H, W)` float32.
        sigma: Gaussian smoothing before the gradient (pixels).
        cap_quantile: magnitudes above this quantile count as 1 (strong edges saturate).

    Returns:
        :math:`(H, W, 2)` float32, each pixel of length <= 1.

    Example:
        >>> img = np.zeros((32, 32), np.float32); img[:, 16:] = 1.0   # a vertical edge
        >>> f = orientation_field(img)
        >>> bool(f[16, 16, 0] > 0.9), bool(abs(f[16, 16, 1]) < 1e-3)  # cos 2θ = 1: vertical
        (True, True)
        >>> np.allclose(orientation_field(1 - img), f, atol=1e-6)      # sign does not matter
        True
    """
    gray = gray.astype(np.float32, copy=False)
    g = cv2.GaussianBlur(gray, (0, 0), sigma) if sigma > 0 else gray
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag2 = gx * gx + gy * gy
    mag = np.sqrt(mag2)
    cap = float(np.quantile(mag, cap_quantile))
    if cap <= 1e-6:  # featureless
        return np.zeros(gray.shape + (2,), np.float32)
    w = np.minimum(mag / cap, 1.0) / np.maximum(mag2, 1e-12)
    return np.dstack(((gx * gx - gy * gy) * w, 2.0 * gx * gy * w)).astype(np.float32)


def _masked_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    a, b = a[mask], b[mask]
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def alignment_score(ir_registered: np.ndarray, vis: np.ndarray,
                    footprint: np.ndarray | None = None) -> float:
    """How well a thermal image registered into the RGB frame fits the visible image.

    Normalised correlation of the two orientation fields over the thermal footprint
    (``footprint``, or where the registered thermal is not 0). About 0 for unrelated images;
    0.3-0.6 for a good fit on real scenes.

    Args:
        ir_registered: :math:`(H, W)` uint8 thermal image in the RGB pixel grid.
        vis: :math:`(H, W)` or :math:`(H, W, 3)` uint8 visible image.
    """
    if ir_registered.shape[:2] != vis.shape[:2]:
        raise CalibrationError(f"registered thermal {ir_registered.shape[:2]} and visible "
                               f"{vis.shape[:2]} differ in size")
    scale = min(1.0, FINE_WIDTH / vis.shape[1])
    size = (max(8, round(vis.shape[1] * scale)), max(8, round(vis.shape[0] * scale)))
    ir = cv2.resize(ir_registered, size, interpolation=cv2.INTER_AREA)
    vv = cv2.resize(vis, size, interpolation=cv2.INTER_AREA)
    mask = (footprint if footprint is not None else ir_registered > 0).astype(np.uint8)
    mask = cv2.erode(cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST),
                     np.ones((5, 5), np.uint8)) > 0
    if mask.sum() < 64:
        return 0.0
    return _masked_ncc(orientation_field(to_gray_f32(ir)), orientation_field(to_gray_f32(vv)),
                       mask)


# -- the search ----------------------------------------------------------------------------
@dataclass
class _Level:
    """A pair at one working scale ``f`` (working px per RGB px)."""

    f: float
    vis_field: np.ndarray   # (h, w, 2), padded by `pad` on every side
    pad: int
    work_from_rgb: np.ndarray  # 3x3


def _rotated_template(th_gray: np.ndarray, s: float, angle: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thermal field scaled by ``s`` and rotated by ``angle`` (deg), its mask, and the 3x3
    map from thermal px to template px."""
    tw, th = th_gray.shape[1], th_gray.shape[0]
    w, h = max(8, round(tw * s)), max(8, round(th * s))
    small = cv2.resize(th_gray, (w, h), interpolation=cv2.INTER_AREA)
    fld = orientation_field(small)
    a = math.radians(angle)
    ca, sa = abs(math.cos(a)), abs(math.sin(a))
    cw, ch = w * ca + h * sa, w * sa + h * ca
    out = (int(math.ceil(cw)), int(math.ceil(ch)))
    m = similarity(1.0, angle, out[0] / 2, out[1] / 2, (w / 2, h / 2))[:2]
    c2, s2 = math.cos(2 * a), math.sin(2 * a)
    rot = cv2.warpAffine(fld, m, out, flags=cv2.INTER_LINEAR, borderValue=0)
    rot = np.dstack((rot[..., 0] * c2 - rot[..., 1] * s2, rot[..., 0] * s2 + rot[..., 1] * c2))
    mask = cv2.warpAffine(np.ones((h, w), np.float32), m, out, flags=cv2.INTER_NEAREST) > 0.5
    mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8))
    t_from_thermal = np.vstack((m, [0, 0, 1])) @ resize_matrix((tw, th), (w, h))
    return np.ascontiguousarray(rot, dtype=np.float32), mask, t_from_thermal


def _levels(vis_grays: list[np.ndarray], width: int) -> list[_Level]:
    out = []
    for g in vis_grays:
        f = width / g.shape[1]
        size = (width, max(8, round(g.shape[0] * f)))
        small = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
        pad = width // 8
        fld = cv2.copyMakeBorder(orientation_field(small), pad, pad, pad, pad,
                                 cv2.BORDER_CONSTANT, value=0)
        out.append(_Level(f, fld, pad, resize_matrix((g.shape[1], g.shape[0]), size)))
    return out


def _search(th_grays: list[np.ndarray], levels: list[_Level], scales: Sequence[float],
            angles: Sequence[float], tick: Callable[[], None] | None = None
            ) -> tuple[float, np.ndarray]:
    """Best similarity over ``scales`` (RGB px per thermal px) x ``angles`` x shifts.

    Returns ``(score, H thermal->RGB)``.
    """
    best = (-1.0, None)
    for s in scales:
        for angle in angles:
            total = None
            for th, lv in zip(th_grays, levels):
                tmpl, mask, t_from_thermal = _rotated_template(th, s * lv.f, angle)
                if tmpl.shape[0] >= lv.vis_field.shape[0] or tmpl.shape[1] >= lv.vis_field.shape[1]:
                    total = None
                    break
                r = cv2.matchTemplate(lv.vis_field, tmpl, cv2.TM_CCORR_NORMED, mask=mask)
                r = np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0)
                total = r if total is None else total + r
            if tick is not None:
                tick()
            if total is None:
                continue
            total /= len(th_grays)
            _, peak, _, (x, y) = cv2.minMaxLoc(total)
            if peak > best[0]:
                lv = levels[0]
                # template px -> padded working px (+x, +y) -> RGB px; every pair of a rig
                # has the same sizes, so the last template's thermal->template map holds
                to_rgb = np.linalg.inv(lv.work_from_rgb) @ np.array(
                    [[1, 0, x - lv.pad], [0, 1, y - lv.pad], [0, 0, 1.0]])
                best = (float(peak), to_rgb @ t_from_thermal)
    return best


def _subpixel(r: np.ndarray, x: int, y: int) -> tuple[float, float]:
    """Parabola-fitted peak position around the integer maximum (x, y) of ``r``."""
    def off(m1: float, c: float, p1: float) -> float:
        den = m1 - 2 * c + p1
        return 0.5 * (m1 - p1) / den if den < 0 else 0.0

    dx = off(r[y, x - 1], r[y, x], r[y, x + 1]) if 0 < x < r.shape[1] - 1 else 0.0
    dy = off(r[y - 1, x], r[y, x], r[y + 1, x]) if 0 < y < r.shape[0] - 1 else 0.0
    return x + dx, y + dy


def _patch_refine(th_grays: list[np.ndarray], vis_grays: list[np.ndarray], h: np.ndarray,
                  width: int, patch: int, search: int, min_peak: float = 0.15
                  ) -> tuple[np.ndarray, float, int] | None:
    """One round of patch matching: the thermal image warped by ``h`` into the RGB frame,
    cut into patches; each patch's shift found by correlating its orientation field with
    the visible one, the correlation summed over all pairs (the rig shares the shift);
    a homography fitted to the moved patch centres with RANSAC.

    Returns ``(h, rms residual in RGB px, patches used)``, or ``None`` with too few patches.
    """
    W, H = vis_grays[0].shape[1], vis_grays[0].shape[0]
    tw, th = th_grays[0].shape[1], th_grays[0].shape[0]
    f = min(1.0, width / W)
    size = (max(8, round(W * f)), max(8, round(H * f)))
    s_v = resize_matrix((W, H), size)
    hw = s_v @ h  # thermal px -> working px
    foot = cv2.warpPerspective(np.ones((th, tw), np.uint8), hw, size, flags=cv2.INTER_NEAREST)
    foot = cv2.erode(foot, np.ones((7, 7), np.uint8)) > 0
    vis_f = [orientation_field(cv2.resize(v, size, interpolation=cv2.INTER_AREA)) for v in
             vis_grays]
    th_f = [orientation_field(cv2.warpPerspective(t, hw, size, flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REPLICATE))
            for t in th_grays]
    half, step = patch // 2, max(8, patch // 2)
    src, dst = [], []
    for cy in range(half + search, size[1] - half - search, step):
        for cx in range(half + search, size[0] - half - search, step):
            if not foot[cy - half:cy + half, cx - half:cx + half].all():
                continue
            total = None
            for tf, vf in zip(th_f, vis_f):
                tmpl = tf[cy - half:cy + half, cx - half:cx + half]
                if float(np.abs(tmpl).sum()) < 1e-3 * tmpl.size:
                    continue  # featureless in this pair: no vote
                region = vf[cy - half - search:cy + half + search,
                            cx - half - search:cx + half + search]
                r = np.nan_to_num(cv2.matchTemplate(region, np.ascontiguousarray(tmpl),
                                                    cv2.TM_CCORR_NORMED))
                total = r if total is None else total + r
            if total is None:
                continue
            total /= len(th_f)
            _, peak, _, (x, y) = cv2.minMaxLoc(total)
            if peak < min_peak or not (0 < x < 2 * search and 0 < y < 2 * search):
                continue  # weak, or at the edge of the search: not a reliable shift
            px, py = _subpixel(total, x, y)
            src.append((cx, cy))
            dst.append((cx + px - search, cy + py - search))
    if len(src) < 8:
        return None
    src_w = np.array(src, np.float64)
    dst_w = np.array(dst, np.float64)
    # working-frame correspondences -> thermal px -> RGB px
    src_t = apply_h(np.linalg.inv(hw), src_w)
    dst_rgb = apply_h(np.linalg.inv(s_v), dst_w)
    return fit_model(src_t, dst_rgb, h, thermal_size=Size(tw, th), threshold=2.0 / f)


def fit_model(src: np.ndarray, dst: np.ndarray, prior: np.ndarray,
              thermal_size: Size, threshold: float, stiffness: float = 0.05
              ) -> tuple[np.ndarray, float, int] | None:
    """A homography fitted to correspondences, kept close to ``prior`` where the points do
    not say otherwise.

    Patches come from where the images have structure, often the middle of the view; a free
    homography fitted to them can swing the corners far off. So the four corners of the view
    start where ``prior`` puts them (the previous, coarser estimate) and move as the points
    ask, each pixel of corner movement costing ``stiffness`` of a pixel of residual
    (``scipy.optimize.least_squares``); outliers (moving objects, repeated texture) are
    dropped first by a RANSAC affine fit.

    Returns ``(h 3x3, rms residual of the inliers, inliers)`` or ``None``.
    """
    from scipy.optimize import least_squares

    m, inl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold)
    if m is None:
        return None
    ok = inl.ravel() > 0
    if ok.sum() < 8:
        return None
    s, d = src[ok], dst[ok]
    box = corners(thermal_size)
    start = apply_h(prior, box)

    def h_of(delta: np.ndarray) -> np.ndarray:
        return homography_from_corners(box, start + delta.reshape(4, 2))

    def residuals(delta: np.ndarray) -> np.ndarray:
        return np.concatenate(((apply_h(h_of(delta), s) - d).ravel(), stiffness * delta))

    fit = least_squares(residuals, np.zeros(8), method="lm")
    h = h_of(fit.x)
    rms = float(np.sqrt(np.mean(np.sum((apply_h(h, s) - d) ** 2, axis=1))))
    return h / h[2, 2], rms, int(ok.sum())


def _dense_refine(th_grays: list[np.ndarray], vis_grays: list[np.ndarray], h0: np.ndarray,
                  width: int, sigma: float, iterations: int = 30) -> np.ndarray:
    """Gauss-Newton on the four corners of the view: the sum over all pairs of squared
    differences between the thermal field and the visible field warped into the thermal
    frame (OpenCV warps; the image gradients of the visible field give the Jacobian)."""
    W, H = vis_grays[0].shape[1], vis_grays[0].shape[0]
    tw, th = th_grays[0].shape[1], th_grays[0].shape[0]
    f = min(1.0, width / W)
    vsize = (round(W * f), round(H * f))
    s_v = resize_matrix((W, H), vsize)
    ft = f * math.sqrt(abs(np.linalg.det(h0[:2, :2])))
    tsize = (max(8, round(tw * ft)), max(8, round(th * ft)))
    s_t = resize_matrix((tw, th), tsize)
    vis_f = [orientation_field(cv2.resize(v, vsize, interpolation=cv2.INTER_AREA), sigma)
             for v in vis_grays]
    vis_g = [np.dstack([cv2.Sobel(a[..., c], cv2.CV_32F, dx, dy, ksize=3) / 8.0
                        for c in (0, 1) for dx, dy in ((1, 0), (0, 1))]) for a in vis_f]
    th_f = [orientation_field(cv2.resize(t, tsize, interpolation=cv2.INTER_AREA), sigma)
            for t in th_grays]
    box = corners(tsize)
    start = apply_h(s_v @ h0 @ np.linalg.inv(s_t), box)
    ys, xs = np.mgrid[0:tsize[1], 0:tsize[0]]
    pts = np.c_[xs.ravel(), ys.ravel()].astype(np.float64)
    sel = np.arange(0, len(pts), max(1, int(math.sqrt(len(pts) / 20000))))
    ones = np.ones(vis_f[0].shape[:2], np.float32)

    def warp(p: np.ndarray) -> np.ndarray:
        return homography_from_corners(box, start + p.reshape(4, 2))

    p = np.zeros(8)
    for _ in range(iterations):
        w64 = warp(p)
        w = w64.astype(np.float32)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        moved = apply_h(w64, pts[sel])
        dxy = np.stack([(apply_h(warp(p + 0.1 * e), pts[sel]) - moved) / 0.1
                        for e in np.eye(8)], axis=2)  # (N, 2, 8): point motion per parameter
        jtj, jtr = np.zeros((8, 8)), np.zeros(8)
        for a, ag, b in zip(vis_f, vis_g, th_f):
            valid = cv2.warpPerspective(ones, w, tsize, flags=cv2.INTER_NEAREST |
                                        cv2.WARP_INVERSE_MAP).reshape(-1)[sel, None] > 0
            r = (cv2.warpPerspective(a, w, tsize, flags=flags) - b).reshape(-1, 2)[sel] * valid
            g = cv2.warpPerspective(ag, w, tsize, flags=flags).reshape(-1, 4)[sel] * valid
            for c in (0, 1):
                j = g[:, 2 * c, None] * dxy[:, 0, :] + g[:, 2 * c + 1, None] * dxy[:, 1, :]
                jtj += j.T @ j
                jtr += j.T @ r[:, c]
        if not np.trace(jtj) > 0:
            break
        delta = -np.linalg.solve(jtj + 1e-3 * np.trace(jtj) / 8 * np.eye(8), jtr)
        p = p + delta
        if np.abs(delta).max() < 0.01:
            break
    h = np.linalg.inv(s_v) @ warp(p) @ s_t
    return h / h[2, 2]


def rig_scores(h: np.ndarray, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
               rgb_size: Size) -> list[float]:
    """:func:`alignment_score` of each pair with the thermal warped by ``h`` (over its
    footprint)."""
    footprint = warp_to_rgb(np.full(pairs[0][0].shape, 255, np.uint8), h, rgb_size) > 0
    return [alignment_score(warp_to_rgb(ir, h, rgb_size), vis, footprint) for ir, vis in pairs]


def check_rig(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[Size, Size]:
    """Thermal and RGB sizes of a rig; raise :class:`CalibrationError` unless all pairs
    share them."""
    if not pairs:
        raise CalibrationError("no image pairs to calibrate from")
    th = {Size.of(ir) for ir, _ in pairs}
    rgb = {Size.of(v) for _, v in pairs}
    if len(th) > 1 or len(rgb) > 1:
        raise CalibrationError(f"image sizes change within the rig (thermal {sorted(th)}, "
                               f"RGB {sorted(rgb)}): one calibration is for one pair of cameras")
    for ir, vis in pairs:
        if ir.ndim != 2:
            raise CalibrationError(f"thermal images must be single-channel, got {ir.shape}")
    (tw, th_), (w, h) = th.pop(), rgb.pop()
    if min(tw, th_) < 16 or min(w, h) < 32:
        raise CalibrationError(f"images too small to calibrate: thermal {tw}x{th_}, RGB {w}x{h}")
    return Size(tw, th_), Size(w, h)


def estimate_homography(pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                        progress: Callable[[int, int], None] | None = None
                        ) -> CalibrationResult:
    """The thermal -> RGB homography of a rig from its pairs, with confidence figures.

    The thermal view is searched inside the RGB view first (the usual rig: a narrower
    thermal lens); if that finds no confident fit, the RGB view is searched inside the
    thermal one (a wide thermal lens, e.g. an aerial rig) and the better result is kept.

    Args:
        pairs: ``(ir, vis)``: :math:`(h, w)` uint8 thermal (8-bit, after AGC) and
            :math:`(H, W)` / :math:`(H, W, 3)` uint8 RGB, all of one rig.
        progress: called as ``progress(done, total)`` during the search.

    Raises:
        CalibrationError: no pairs, or sizes that change within the rig.
    """
    thermal_size, rgb_size = check_rig(pairs)
    forward = _estimate(pairs, progress)
    if forward.confident:
        return forward
    swapped = [(v if v.ndim == 2 else cv2.cvtColor(v[:, :, :3], cv2.COLOR_RGB2GRAY),
                np.dstack([ir] * 3)) for ir, v in pairs]
    back = _estimate(swapped, progress)
    h = np.linalg.inv(back.homography)
    h /= h[2, 2]
    after = rig_scores(h, pairs, rgb_size)
    reverse = CalibrationResult(
        homography=h, thermal_size=thermal_size, rgb_size=rgb_size, pairs_used=len(pairs),
        score_before=forward.score_before, score_after=float(np.mean(after)),
        score_mismatched=back.score_mismatched, spread_px=back.spread_px,
        residual_px=back.residual_px, patches=back.patches,
        view="rgb inside thermal")
    reverse.confident, reverse.reason = is_confident(reverse)
    if reverse.confident or reverse.score_after > forward.score_after:
        return reverse
    return forward


def _estimate(pairs: Sequence[tuple[np.ndarray, np.ndarray]],
              progress: Callable[[int, int], None] | None = None) -> CalibrationResult:
    """:func:`estimate_homography` with the thermal view searched inside the RGB view."""
    thermal_size, rgb_size = check_rig(pairs)
    th_grays = [to_gray_f32(ir) for ir, _ in pairs]
    vis_grays = [to_gray_f32(v) for _, v in pairs]
    tw = thermal_size[0]
    coarse_scales = np.geomspace(MIN_COVERAGE * rgb_size[0] / tw, MAX_COVERAGE * rgb_size[0] / tw,
                                 COARSE_SCALES)
    fine_n = 5 * 7
    total = len(coarse_scales) * len(ROTATIONS_DEG) * 2 + fine_n + 4 + 2
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    coarse = _levels(vis_grays, COARSE_WIDTH)
    score, h_coarse = _search(th_grays, coarse, coarse_scales, ROTATIONS_DEG, tick)
    # Chance level: the same search with every thermal image flipped upside down and
    # left-right (same statistics, no true match).
    flipped = [np.ascontiguousarray(g[::-1, ::-1]) for g in th_grays[:2]]
    chance, _ = _search(flipped, coarse[:2], coarse_scales, ROTATIONS_DEG, tick)

    # Fine: +-3 % scale, +-1.5 degrees around the coarse best, at twice the width.
    s0 = math.sqrt(abs(np.linalg.det(h_coarse[:2, :2])))
    a0 = math.degrees(math.atan2(h_coarse[1, 0], h_coarse[0, 0]))
    fine = _levels(vis_grays, min(FINE_WIDTH, rgb_size[0]))
    _, h_fine = _search(th_grays, fine, s0 * np.linspace(0.97, 1.03, 5),
                           a0 + np.linspace(-1.5, 1.5, 7), tick)

    # Homography: patch matching on all pairs jointly, coarse to fine; then the same on each
    # pair alone, to see how far single pairs disagree (parallax, moving objects).
    h_best, residual, used = h_fine, float("nan"), 0
    for width, patch, search in PATCH_ROUNDS:
        got = _patch_refine(th_grays, vis_grays, h_best, width, patch, search)
        tick()
        if got is not None:
            h_best, residual, used = got
    # Dense: Gauss-Newton on the fields of all pairs, coarse to fine; kept if the joint score
    # rises and the corners stay within a few pixels (30 rigs: median 6.45 -> 3.76 px).
    u8 = [((t * 255).astype(np.uint8), (v * 255).astype(np.uint8))
          for t, v in zip(th_grays, vis_grays)]
    after = rig_scores(h_best, u8, rgb_size)
    try:
        h_dense = h_best
        for width, sigma in DENSE_ROUNDS:
            h_dense = _dense_refine(th_grays, vis_grays, h_dense, width, sigma)
        px = rgb_size[0] / 640.0
        if np.all(np.isfinite(h_dense)) and \
                corner_error(h_dense, h_best, thermal_size) < MAX_SPREAD_PX * px:
            dense_scores = rig_scores(h_dense, u8, rgb_size)
            if np.mean(dense_scores) > np.mean(after):
                h_best, after = h_dense, dense_scores
    except np.linalg.LinAlgError:
        pass  # a degenerate step: keep the patch estimate
    tick()
    singles = []
    if len(pairs) > 1:
        for th, vg in zip(th_grays, vis_grays):
            got = _patch_refine([th], [vg], h_best, *PATCH_ROUNDS[-2])
            if got is not None:
                singles.append(got[0])
    spread = float(np.median([corner_error(h, h_best, thermal_size) for h in singles])) \
        if singles else (0.0 if len(pairs) == 1 else float("inf"))
    before = float(np.mean(rig_scores(resize_matrix(thermal_size, rgb_size), u8, rgb_size)))
    tick()
    result = CalibrationResult(
        homography=h_best, thermal_size=thermal_size, rgb_size=rgb_size,
        pairs_used=len(pairs), score_before=before, score_after=float(np.mean(after)),
        score_mismatched=chance * float(np.mean(after)) / max(score, 1e-6),
        spread_px=spread, residual_px=residual, patches=used)
    result.confident, result.reason = is_confident(result)
    return result


def is_confident(result: CalibrationResult) -> tuple[bool, str]:
    """Whether to trust a result, and why not.

    Measured on synthetic rigs (``benchmarks/calibration_rigs.py``): wrong results (tens of
    pixels and more) came with few matched patches, a low score, or pairs that disagree;
    the chance level (``score_mismatched``) did not separate them and is only reported.
    """
    min_patches = MIN_PATCHES_ONE_PAIR if result.pairs_used == 1 else MIN_PATCHES
    px = result.rgb_size[0] / 640.0  # the pixel limits are for a 640-px-wide image
    if result.score_after < MIN_SCORE:
        return False, (f"alignment score {result.score_after:.3f} is below {MIN_SCORE}: the "
                       "pairs have too little shared structure (featureless, or not the same "
                       "scene)")
    if result.patches < min_patches:
        return False, (f"only {result.patches} image patches matched (need {min_patches}): "
                       "too little structure for a homography; add pairs with more edges")
    if not result.residual_px <= MAX_RESIDUAL_PX * px:
        return False, (f"the matched patches fit the homography only to "
                       f"{result.residual_px:.1f} px (more than {MAX_RESIDUAL_PX * px:.1f}): "
                       "parallax of near objects, or wrong matches")
    if result.pairs_used > 1 and not result.spread_px <= MAX_SPREAD_PX * px:
        if math.isinf(result.spread_px):
            return False, "no pair gives an estimate on its own: too little structure per pair"
        return False, (f"the pairs disagree by {result.spread_px:.1f} px (more than "
                       f"{MAX_SPREAD_PX * px:.1f}): parallax of near objects, a moved rig, or "
                       "bad pairs")
    return True, ""


def homography_from_points(thermal_pts: np.ndarray, rgb_pts: np.ndarray) -> tuple[np.ndarray,
                                                                                  float]:
    """Least-squares homography (RANSAC over >= 4 correspondences) and its RMS residual (px).

    Raises:
        CalibrationError: fewer than 4 points, or a degenerate configuration.
    """
    thermal_pts = np.asarray(thermal_pts, np.float64).reshape(-1, 2)
    rgb_pts = np.asarray(rgb_pts, np.float64).reshape(-1, 2)
    if len(thermal_pts) < 4 or len(thermal_pts) != len(rgb_pts):
        raise CalibrationError(f"need >= 4 point correspondences, got {len(thermal_pts)} "
                               f"thermal and {len(rgb_pts)} RGB points")
    h, inliers = cv2.findHomography(thermal_pts, rgb_pts, cv2.RANSAC if len(thermal_pts) > 4
                                    else 0, 3.0)
    if h is None or not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-12:
        raise CalibrationError("the points do not determine a homography (collinear?)")
    residual = float(np.sqrt(np.mean(np.sum((apply_h(h, thermal_pts) - rgb_pts) ** 2, axis=1))))
    return h / h[2, 2], residual


def write_calibration(result: CalibrationResult, path: str | Path) -> Path:
    """Write the node's calibration YAML."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# thermal -> RGB registration, written by lutfuse calibrate\n"
                    + yaml.safe_dump(result.to_yaml_dict(), sort_keys=False))
    return path
