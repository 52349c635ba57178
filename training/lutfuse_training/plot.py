"""Line plots as PNG with OpenCV (no plotting library needed on a training server)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lutfuse_ros.core.geometry import Size

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def line_plot(series: dict[str, tuple[list[float], list[float]]], path: str | Path,
              title: str, log_y: bool = True, size: Size = Size(900, 520)) -> None:
    """One panel, one line per series ``{label: (x, y)}``, written to ``path`` (PNG)."""
    w, h = size
    left, right, top, bottom = 70, 170, 40, 40
    img = np.full((h, w, 3), 255, np.uint8)
    pts = {k: (np.asarray(x, float), np.asarray(y, float))
           for k, (x, y) in series.items() if len(x)}
    ys = np.concatenate([y[np.isfinite(y) & ((y > 0) if log_y else True)] for _, y in pts.values()]
                        or [np.ones(1)])
    f = (lambda v: np.log10(np.maximum(v, 1e-12))) if log_y else (lambda v: v)
    y_lo, y_hi = (f(ys.min()), f(ys.max())) if ys.size else (0.0, 1.0)
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    xs = np.concatenate([x for x, _ in pts.values()] or [np.zeros(1)])
    x_lo, x_hi = xs.min(), max(xs.max(), xs.min() + 1)
    to_px = lambda x, y: np.stack([left + (x - x_lo) / (x_hi - x_lo) * (w - left - right),  # noqa
                                   h - bottom - (f(y) - y_lo) / (y_hi - y_lo) * (h - top - bottom)],
                                  axis=1).astype(np.int32)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for frac in (0.0, 0.5, 1.0):
        yv = y_lo + frac * (y_hi - y_lo)
        label = f"{10 ** yv:.3g}" if log_y else f"{yv:.3g}"
        cv2.putText(img, label, (5, int(h - bottom - frac * (h - top - bottom)) + 4), font, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"{x_lo:.0f}", (left, h - bottom + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"{x_hi:.0f}", (w - right - 30, h - bottom + 18), font, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(img, title, (left, 25), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    for n, (label, (x, y)) in enumerate(pts.items()):
        colour = COLOURS[n % len(COLOURS)][::-1]
        ok = np.isfinite(y) & ((y > 0) if log_y else True)
        if ok.sum() > 1:
            cv2.polylines(img, [to_px(x[ok], y[ok])], False, colour, 1, cv2.LINE_AA)
        cv2.putText(img, label, (w - right + 10, top + 18 * n + 10), font, 0.45, colour, 1,
                    cv2.LINE_AA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
