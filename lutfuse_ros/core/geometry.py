"""Image sizes and the plane geometry of registration (homographies, corners, warps).

A **size** is ``Size(width, height)``, the order OpenCV takes (``cv2.resize``,
``cv2.warpPerspective``); an array's **shape** is ``(height, width)``, numpy's order. Every
``*_size`` name holds a :class:`Size`; ``shape`` names hold (H, W).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np


class Size(NamedTuple):
    """An image size in pixels, ``(width, height)``.

    Example:
        >>> s = Size.of(np.zeros((480, 640, 3), np.uint8))
        >>> s, s.shape, str(s)
        (Size(width=640, height=480), (480, 640), '640x480')
    """

    width: int
    height: int

    @classmethod
    def of(cls, img: np.ndarray) -> "Size":
        """The size of an image array (its shape's first two axes, swapped)."""
        return cls(int(img.shape[1]), int(img.shape[0]))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``: the shape of an array of this size."""
        return self.height, self.width

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def parse_size(text: str) -> Size:
    """``"WxH"`` (as the command-line tools take sizes) -> :class:`Size`.

    Example:
        >>> parse_size("1280x1024")
        Size(width=1280, height=1024)
        >>> parse_size("1280")
        Traceback (most recent call last):
        ...
        ValueError: expected WxH, e.g. 640x480, got '1280'
    """
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected WxH, e.g. 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"a size must be positive, got {text!r}")
    return Size(width, height)


# -- homographies --------------------------------------------------------------------------
def similarity(scale: float, angle_deg: float, tx: float, ty: float,
               centre: tuple[float, float]) -> np.ndarray:
    """3x3: scale and rotate about ``centre`` (thermal px), then put that centre at (tx, ty)."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    return np.array([[c, -s, tx - c * cx + s * cy], [s, c, ty - s * cx - c * cy],
                     [0.0, 0.0, 1.0]])


def resize_matrix(src: Size, dst: Size) -> np.ndarray:
    """3x3 map of pixel coordinates under ``cv2.resize`` from ``src`` to ``dst`` (width, height):
    pixel centres at integers, ``x' = (x + 0.5) * dst / src - 0.5``. Also the homography of
    the node's ``resize`` registration (thermal size -> RGB size)."""
    a, b = dst[0] / src[0], dst[1] / src[1]
    return np.array([[a, 0.0, 0.5 * a - 0.5], [0.0, b, 0.5 * b - 0.5], [0.0, 0.0, 1.0]])


def homography_from_corners(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography taking 4 points ``src`` to ``dst`` (:math:`(4, 2)`), in float64
    (OpenCV's ``getPerspectiveTransform`` rounds to float32: too coarse to differentiate)."""
    a = np.zeros((8, 8))
    b = np.asarray(dst, np.float64).ravel()
    for k, ((x, y), (u, v)) in enumerate(zip(np.asarray(src, np.float64), b.reshape(4, 2))):
        a[2 * k] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * k + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
    return np.append(np.linalg.solve(a, b), 1.0).reshape(3, 3)


def corners(size: Size) -> np.ndarray:
    """The four corners (x, y) of a (width, height) image, :math:`(4, 2)` float64."""
    w, h = size
    return np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])


def apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map :math:`(N, 2)` points through a 3x3 homography."""
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


def corner_error(h_est: np.ndarray, h_true: np.ndarray, thermal_size: Size) -> float:
    """Mean distance (RGB px) of the thermal image's corners mapped by two homographies.

    Example:
        >>> corner_error(np.eye(3), np.eye(3) + [[0, 0, 2], [0, 0, 0], [0, 0, 0]], (160, 120))
        2.0
    """
    c = corners(thermal_size)
    return float(np.linalg.norm(apply_h(h_est, c) - apply_h(h_true, c), axis=1).mean())


def warp_to_rgb(ir: np.ndarray, h: np.ndarray, rgb_size: Size) -> np.ndarray:
    """The thermal image in the RGB pixel grid (0 outside its view), as the node warps it."""
    return cv2.warpPerspective(ir, h, rgb_size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
