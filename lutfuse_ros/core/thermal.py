"""16-bit thermal counts: reading them, and the stateless maths of the AGC that maps them to
the 8-bit IR input of the fusion model.

Radiometric thermal cameras publish 16-bit counts (``mono16``/``16UC1``) that look black when
shown as is: a few hundred to a few thousand counts out of 65,535, 14-bit values in 16-bit
words (:func:`to_counts`, :func:`read_raw_thermal`), stuck pixels. The mappings
(:data:`AGC_MODES`: ``fixed``, ``percentile``, ``plateau``, ``equalize``) are applied by
:class:`~lutfuse_ros.core.preprocess.ThermalAGC`, for a stream (smoothed over frames) and,
through :func:`~lutfuse_ros.core.preprocess.thermal_to_8bit`, for one frame: one mapping per
mode name. This module holds their pieces: the histogram without stuck codes
(:func:`count_histogram`), percentiles of it, the compression of far tails, the plateau clip,
the gain-limited equalisation table, the linear table of a range (:func:`range_table`).
"""
from __future__ import annotations

import numpy as np

from .errors import ConfigError, InputError

AGC_MODES = ("fixed", "percentile", "plateau", "equalize")
DEAD_HOT_CODES = (0, 65535)  # stuck pixels' codes: never part of a frame's range


class ThermalReadError(InputError):
    """A raw thermal file that cannot be read as counts (missing, not 16-bit, not 2-D)."""


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


def read_raw_thermal(path, bits: int | None = None, byte_order: str = "auto") -> np.ndarray:
    """Raw counts of a 16-bit PNG/TIFF thermal frame (8-bit files are returned as they are).

    Args:
        path: the file.
        bits, byte_order: see :func:`to_counts`.

    Returns:
        :math:`(H, W)` uint16 counts (or uint8 for an 8-bit display image).

    Raises:
        ThermalReadError: unreadable, or not a single-channel 8/16-bit image.
    """
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ThermalReadError(f"cannot read {path} as an image")
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise ThermalReadError(f"{path}: a thermal frame must be single-channel 8 or 16 bit, "
                               f"got {img.dtype} {img.shape}")
    return img if img.dtype == np.uint8 else to_counts(img, bits, byte_order)


def to_counts(img: np.ndarray, bits: int | None = None, byte_order: str = "auto") -> np.ndarray:
    """16-bit words as a camera wrote them -> counts.

    Args:
        img: :math:`(H, W)` uint16.
        bits: 16, or 14 (a 14-bit sensor: values either in the low 14 bits, kept, or in the
            high 14 bits, shifted down); ``None`` guesses 14-bit-high when every value is a
            multiple of 4 and some exceed 16383.
        byte_order: ``"native"``, ``"swapped"`` (big-endian words read as little-endian), or
            ``"auto"``: swapped when the high bytes take more than twice as many values as the
            low bytes (raw counts sit in a narrow band: few high bytes, every low byte).

    Example:
        >>> counts = (6000 + np.arange(256) * 4).astype(np.uint16).reshape(16, 16)  # 14 bit
        >>> bool(np.array_equal(to_counts(counts.byteswap()), counts))  # big-endian words
        True
        >>> bool(np.array_equal(to_counts(counts << 2), counts))        # high-aligned
        True
    """
    check_thermal(img)
    if img.dtype != np.uint16:
        raise ThermalInputError(f"raw counts are uint16, got {img.dtype}")
    if byte_order not in ("auto", "native", "swapped"):
        raise ConfigError(f"byte_order must be auto, native or swapped, got {byte_order!r}")
    if bits not in (None, 14, 16):
        raise ConfigError(f"bits must be 14, 16 or None, got {bits!r}")
    if byte_order == "swapped":
        img = img.byteswap()
    elif byte_order == "auto":
        sub = img[::2, ::2]
        if len(np.unique(sub >> 8)) > 2 * len(np.unique(sub & 255)):
            img = img.byteswap()
    if bits != 16 and int(img.max()) > 16383:
        high_aligned = not np.any(img & 3)
        if bits == 14 and not high_aligned:
            raise ThermalInputError("14-bit counts above 16383 that are not high-aligned "
                                    "(not multiples of 4): not a 14-bit frame")
        if high_aligned:
            img = img >> 2
    return img


def count_histogram(img: np.ndarray, subsample: int = 2) -> np.ndarray:
    """Histogram over every count of a thermal frame, stuck pixels' codes left out.

    Args:
        img: :math:`(H, W)` uint16 or uint8.
        subsample: every n-th pixel in each direction.

    Returns:
        :math:`(L,)` int64, ``L`` = 65536 (uint16) or 256 (uint8).
    """
    check_thermal(img)
    levels = 65536 if img.dtype == np.uint16 else 256
    hist = np.bincount(img[::subsample, ::subsample].ravel(), minlength=levels)
    if levels == 65536:
        hist[list(DEAD_HOT_CODES)] = 0
    return hist


def occupied_span(hist: np.ndarray) -> tuple[int, int]:
    """First and last occupied bin of a histogram; ``(0, -1)`` when it is empty.

    Example:
        >>> occupied_span(np.array([0, 0, 3, 0, 1, 0])), occupied_span(np.zeros(4))
        ((2, 4), (0, -1))
    """
    occupied = hist > 0  # argmax of a mask: 10x faster than np.flatnonzero on 65,536 bins
    if not occupied.any():
        return 0, -1
    return int(occupied.argmax()), len(hist) - 1 - int(occupied[::-1].argmax())


def histogram_percentiles(hist: np.ndarray, percentiles: tuple[float, float]
                          ) -> tuple[float, float]:
    """The counts below which ``percentiles`` of a histogram lie (no interpolation)."""
    first, last = occupied_span(hist)
    if last < first:
        return 0.0, 0.0
    # the cumulative sum of the occupied span only: a few thousand counts
    cdf = np.cumsum(hist[first:last + 1], dtype=np.float64)
    q = np.asarray(percentiles, np.float64) / 100.0 * cdf[-1]
    lo, hi = np.searchsorted(cdf, q, side="left") + first
    return float(lo), float(hi)


# compress_tails' defaults: tails beyond 3 IQRs of the quartiles, 2 % of the bulk's weight,
# when they hold at most 10 % of the frame
TAIL_FENCE, TAIL_SHARE, TAIL_LARGEST = 3.0, 0.02, 0.1


def compress_tails(hist: np.ndarray, fence: float = TAIL_FENCE, share: float = TAIL_SHARE,
                   largest: float = TAIL_LARGEST) -> np.ndarray:
    """Counts far outside the bulk of a frame (beyond ``fence`` interquartile ranges from the
    quartiles: a hot person, the sun, a lamp) keep at most ``share`` of the bulk's weight on
    each side, when they are at most ``largest`` of the frame (more is the scene itself).

    So a hot object entering the view takes a small, fixed part of the grey range and the
    rest of the scene keeps its grey levels, instead of being squeezed into the bottom.
    """
    total = hist.sum()
    if total <= 0:
        return hist.astype(np.float64)
    q1, q3 = histogram_percentiles(hist, (25.0, 75.0))
    iqr = max(q3 - q1, 1.0)
    lo, hi = int(max(0, q1 - fence * iqr)), int(min(len(hist) - 1, q3 + fence * iqr))
    out = hist.astype(np.float64)
    bulk = out[lo:hi + 1].sum()
    for tail in (slice(0, lo), slice(hi + 1, None)):
        mass = out[tail].sum()
        if share * bulk < mass <= largest * total:
            out[tail] *= share * bulk / mass
    return out


def clip_histogram(hist: np.ndarray, plateau: float) -> np.ndarray:
    """Each count's bin clipped at ``plateau`` times the mean of the occupied bins: a large
    uniform region (sky, a wall, a hot engine) cannot take over the mapping."""
    occupied = np.count_nonzero(hist)
    if occupied == 0 or not np.isfinite(plateau):
        return hist.astype(np.float64)
    return np.minimum(hist, plateau * hist.sum() / occupied).astype(np.float64)


def equalization_table(hist: np.ndarray, max_gain: float = float("inf")) -> np.ndarray:
    """Histogram equalisation table of a (clipped) histogram, gain-limited.

    Each count gets output levels in proportion to its share of the histogram, but at most
    ``max_gain`` levels per count (of the distance from the previous occupied count), so a
    flat, noisy scene (a few dozen counts) is not stretched over 256 levels; the mapping is
    then centred on mid-grey.

    Example:
        >>> hist = np.zeros(65536); hist[[1000, 1001, 1002, 1003]] = 1  # a 3-count scene
        >>> t = equalization_table(hist, max_gain=2.0)
        >>> [round(float(t[c]), 1) for c in (1000, 1003)]                 # 6 levels, centred
        [124.5, 130.5]
        >>> [round(float(v), 1) for v in equalization_table(hist)[[1000, 1003]]]
        [0.0, 255.0]

    Returns:
        :math:`(L,)` float32 in [0, 255], indexed by the count.
    """
    levels = len(hist)
    nz = np.nonzero(hist)[0]
    if len(nz) < 2:
        return np.full(levels, 127.5, np.float32)
    lo, hi = int(nz[0]), int(nz[-1])  # the table is flat outside the occupied counts
    step = hist[lo:hi + 1].astype(np.float64)
    step[0] = 0.0  # the lowest occupied count maps to the bottom of the mapping
    step *= 255.0 / step.sum()
    # slope limit: from one occupied count to the next, at most max_gain levels per count
    # between them (quantised cameras leave gaps of many counts between occupied ones)
    inner = nz[1:] - lo
    step[inner] = np.minimum(step[inner], max_gain * np.diff(nz))
    span = np.cumsum(step)
    offset = (255.0 - span[-1]) / 2.0
    table = np.empty(levels, np.float64)
    table[:lo] = offset
    table[lo:hi + 1] = span + offset
    table[hi + 1:] = span[-1] + offset
    return table.astype(np.float32)


def plateau_table(hist: np.ndarray, plateau: float, max_gain: float) -> np.ndarray:
    """The ``plateau`` mode's table of a frame's histogram (:func:`count_histogram`): hot
    tails compressed, bins clipped at ``plateau``, equalised with at most ``max_gain`` levels
    per count. :math:`(L,)` float32 in [0, 255]."""
    first, last = occupied_span(hist)
    if last - first < 1:
        return np.full(len(hist), 127.5, np.float32)
    # The same maths on the occupied counts only (a few thousand of the 65,536): the table
    # is flat below and above them.
    window = equalization_table(clip_histogram(compress_tails(hist[first:last + 1]), plateau),
                                max_gain)
    return table_from_window(window, first, len(hist))


def table_from_window(window: np.ndarray, first: int, levels: int = 65536) -> np.ndarray:
    """A table over every count from its values on the occupied counts ``first`` ..
    ``first + len(window) - 1``: flat below and above them. -> (levels,) float32."""
    table = np.empty(levels, np.float32)
    last = first + len(window) - 1
    table[:first], table[first:last + 1], table[last + 1:] = window[0], window, window[-1]
    return table


def blend_table(running: np.ndarray | None, table: np.ndarray, weight: float) -> np.ndarray:
    """A frame's table into the running one: ``running + weight * (table - running)``, float32
    (the AGC's smoothing over time; ``None`` starts it). (L,) f32 -> (L,) f32."""
    if running is None:
        return table.astype(np.float32)
    return running + np.float32(weight) * (table - running)


def table_span(table: np.ndarray) -> tuple[int, int]:
    """First and last count where a rising [0, 255] table has left its bottom value and not
    yet reached its top one (by more than half a level): the counts it spreads over the grey
    levels, also when a gain limit keeps it from reaching 0 and 255; ``(-1, -1)`` for a flat
    table.

    Example:
        >>> table_span(np.array([40, 40, 41, 90, 200, 210, 210.2], np.float32))
        (2, 4)
    """
    half = np.float32(0.5)
    above = np.nonzero(table > table[0] + half)[0]
    below = np.nonzero(table < table[-1] - half)[0]
    return (int(above[0]), int(below[-1])) if len(above) and len(below) else (-1, -1)


def range_table(low: float, high: float, levels: int = 65536) -> np.ndarray:
    """A linear map of counts ``[low, high]`` to ``[0, 255]``, clipped, as a lookup table:
    ``(levels,)`` uint8 indexed by the count (``fixed`` and ``percentile`` modes of
    :class:`~lutfuse_ros.core.preprocess.ThermalAGC`, which keeps it while the range stays).

    A flat range (``high <= low``) maps every count to mid-grey rather than dividing by zero.

    Example:
        >>> range_table(0, 1000)[[0, 500, 1000, 4000]]
        array([  0, 128, 255, 255], dtype=uint8)
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ConfigError(f"range must be finite, got ({low}, {high})")
    if high <= low:
        return np.full(levels, 128, np.uint8)
    return np.clip((np.arange(levels, dtype=np.float32) - low) * (255.0 / (high - low)) + 0.5,
                   0, 255).astype(np.uint8)
