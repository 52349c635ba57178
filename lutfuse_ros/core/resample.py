"""Where the context network runs: an integer stride and the taps back to full resolution.

The context map is computed on a ``k x k`` box-averaged image (``k = 1 / context_scale``) and
bilinearly up-sampled with half-pixel centres. Both backends use these definitions, so the
numpy and torch paths agree to rounding.
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError, FusionInputError


def context_stride(context_scale: float) -> int:
    """``k`` such that ``context_scale == 1 / k``.

    Raises:
        ConfigError: ``context_scale`` is not in (0, 1] or not the inverse of an integer.

    Example:
        >>> context_stride(0.0625), context_stride(1.0)
        (16, 1)
    """
    if not 0.0 < context_scale <= 1.0:
        raise ConfigError(f"context_scale must be in (0, 1], got {context_scale}")
    k = round(1.0 / context_scale)
    if abs(1.0 / context_scale - k) > 1e-6:
        raise ConfigError(f"context_scale must be 1/k for an integer k (1, 0.5, 0.25, 0.125, "
                         f"...), got {context_scale}")
    return k


def context_shape(height: int, width: int, stride: int) -> tuple[int, int]:
    """Shape of the context map of an (height, width) frame: ``(height // k, width // k)``.

    Raises:
        FusionInputError: the frame is smaller than 4 context cells in either direction.

    Example:
        >>> context_shape(480, 640, 16)
        (30, 40)
    """
    ch, cw = height // stride, width // stride
    if min(ch, cw) < 4:
        raise FusionInputError(f"a {width}x{height} frame is too small for context_scale "
                               f"1/{stride}: the context map needs at least 4x4 cells")
    return ch, cw


def bilinear_taps(n_out: int, n_in: int, stride: int) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """Indices and weights that up-sample ``n_in`` cells of ``stride`` pixels to ``n_out``.

    Cell ``c`` covers pixels ``[c k, c k + k)``, so pixel ``p`` sits at cell coordinate
    ``(p + 0.5) / k - 0.5``, clamped to the first and last cell.
    Returns ``(i0, i1, w1)``, each ``(n_out,)``: value = v[i0] * (1 - w1) + v[i1] * w1.
    """
    src = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) / np.float32(stride) \
        - np.float32(0.5)
    src = np.clip(src, np.float32(0.0), np.float32(n_in - 1))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)
