"""16-bit thermal images to the 8-bit IR input of the fusion model.

Radiometric thermal cameras publish 16-bit counts (``mono16``/``16UC1``) that look black when
shown as is. Three mappings:

- ``fixed``: a given ``[low, high]`` count range, for calibrated scenes;
- ``percentile``: the range between two percentiles of the frame (robust AGC);
- ``equalize``: histogram equalisation over all 65,536 levels.

:func:`agc_range` and :func:`apply_range` are separate so a stream can smooth the range over
time before applying it (the node does).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

AGC_MODES = ("fixed", "percentile", "equalize")


class ThermalInputError(InputError):
    """A thermal frame is not a (H, W) uint8 or uint16 array."""


def check_thermal(img: np.ndarray) -> None:
    """Raise :class:`ThermalInputError` unless ``img`` is a (H, W) uint8 or uint16 array.

    Example:
        >>> check_thermal(np.zeros((2, 3), np.uint16))
        >>> check_thermal(np.zeros((2, 3), np.float32))
        Traceback (most recent call last):
        ...
        lutfuse_ros.core.thermal.ThermalInputError: thermal image must be uint8 or uint16, ...
    """
    if not isinstance(img, np.ndarray) or img.ndim != 2:
        raise ThermalInputError(
            f"thermal image must be a (H, W) array, got {getattr(img, 'shape', img)}")
    if img.dtype not in (np.uint8, np.uint16):
        raise ThermalInputError(f"thermal image must be uint8 or uint16, got {img.dtype}")


def agc_range(img: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0),
              subsample: int = 4) -> tuple[float, float]:
    """Percentile range ``(low, high)`` of a thermal frame.

    Args:
        img: :math:`(H, W)` uint16 or uint8.
        percentiles: lower and upper percentile, 0 <= lo < hi <= 100.
        subsample: use every n-th pixel in each direction (the range barely changes; 16x less
            work at the default).

    Example:
        >>> img = (np.arange(100, dtype=np.uint16) * 100).reshape(10, 10)
        >>> agc_range(img, (0.0, 100.0), subsample=1)
        (0.0, 9900.0)
    """
    check_thermal(img)
    lo_p, hi_p = percentiles
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    lo, hi = np.percentile(img[::subsample, ::subsample], (lo_p, hi_p))
    return float(lo), float(hi)


def apply_range(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map of ``[low, high]`` to ``[0, 255]``, clipped. (H, W) -> (H, W) uint8.

    A flat range (``high <= low``, e.g. a frozen frame during flat-field correction) maps
    every pixel to mid-grey rather than dividing by zero.

    Example:
        >>> apply_range(np.array([[0, 500, 1000, 4000]], np.uint16), 0, 1000)
        array([[  0, 128, 255, 255]], dtype=uint8)
    """
    check_thermal(img)
    return range_table(low, high, 65536 if img.dtype == np.uint16 else 256)[img]


def range_table(low: float, high: float, levels: int = 65536) -> np.ndarray:
    """The lookup table of :func:`apply_range`: ``(levels,)`` uint8, indexed by the count.

    Streams keep it while the range stays put (``preprocess.ThermalAGC``).
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"range must be finite, got ({low}, {high})")
    if high <= low:
        return np.full(levels, 128, np.uint8)
    return np.clip((np.arange(levels, dtype=np.float32) - low) * (255.0 / (high - low)) + 0.5,
                   0, 255).astype(np.uint8)


def equalize(img: np.ndarray) -> np.ndarray:
    """Histogram equalisation over every level of a uint16/uint8 image -> (H, W) uint8.

    Example:
        >>> equalize(np.array([[10, 20], [20, 30]], np.uint16))
        array([[  0, 170],
               [170, 255]], dtype=uint8)
    """
    check_thermal(img)
    levels = 65536 if img.dtype == np.uint16 else 256
    cdf = np.cumsum(np.bincount(img.ravel(), minlength=levels)).astype(np.float64)
    first = cdf[np.nonzero(cdf)[0][0]]
    span = cdf[-1] - first
    if span <= 0:
        return np.full(img.shape, 128, np.uint8)
    lut = np.clip(np.round((cdf - first) / span * 255.0), 0, 255).astype(np.uint8)
    return lut[img]


def thermal_to_8bit(img: np.ndarray, mode: str = "percentile",
                    low: float | None = None, high: float | None = None,
                    percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Map a thermal frame to the 8-bit IR input. (H, W) uint16/uint8 -> (H, W) uint8.

    Args:
        mode: ``"fixed"`` (needs ``low`` and ``high``), ``"percentile"`` or ``"equalize"``.

    Example:
        >>> thermal_to_8bit(np.array([[0, 250, 1000]], np.uint16), "fixed", low=0, high=1000)
        array([[  0,  64, 255]], dtype=uint8)
    """
    if mode == "fixed":
        if low is None or high is None:
            raise ValueError("mode 'fixed' needs low and high")
        return apply_range(img, low, high)
    if mode == "percentile":
        return apply_range(img, *agc_range(img, percentiles))
    if mode == "equalize":
        return equalize(img)
    raise ValueError(f"mode must be one of {AGC_MODES}, got {mode!r}")
