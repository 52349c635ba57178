"""Compiled CPU kernels of the thermal AGC (numba, ``nogil``): the table applied to a frame,
the histogram without stuck codes, the repeated-frame check, the plateau table and the
smoothing of the running table, each bit-equal to its numpy reference in :mod:`.thermal`
(tested). One thread each: in the node the cameras' callbacks hold the other cores.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def apply_table(table: np.ndarray, img: np.ndarray, out: np.ndarray) -> None:
    """out[i, j] = table[img[i, j]]: a 16-bit frame through the AGC's 65,536-entry table.

    table (L,) uint8, img (H, W) uint16/uint8 -> out (H, W) uint8 (~2.5x ``np.take``). One
    thread: in the node a 0.15 ms parallel region waited on a core the cameras had taken
    (AGC 2.4-2.8 ms there with it, 2.0-2.3 without).
    """
    h, w = img.shape
    for i in range(h):
        for j in range(w):
            out[i, j] = table[img[i, j]]


# -- AGC: the plateau table in one call (no GIL), equal to core.thermal's numpy reference -----
@njit(nogil=True, cache=True)
def count_histogram_u16(img: np.ndarray, subsample: int, hist: np.ndarray) -> tuple[int, int]:
    """``thermal.count_histogram`` into ``hist`` (65536,) int64: every ``subsample``-th pixel
    of img (H, W) uint16 in each direction, stuck codes 0 and 65535 left out. Returns the
    first and last occupied count, ``(0, -1)`` when none is."""
    hist[:] = 0
    h, w = img.shape
    first, last = 65535, 0  # of the counts between the stuck codes, found while counting
    for i in range(0, h, subsample):
        for j in range(0, w, subsample):
            v = img[i, j]
            hist[v] += 1
            if 0 < v < 65535:
                first = min(first, v)
                last = max(last, v)
    hist[0] = 0
    hist[65535] = 0
    if last == 0:
        return 0, -1
    return int(first), int(last)


@njit(nogil=True, cache=True)
def same_else_keep(img: np.ndarray, kept: np.ndarray) -> bool:
    """True when img equals kept (both (H, W), same shape and dtype); otherwise copies img
    into kept and returns False. Row by row, each row compared in a loop without branches
    (vectorised), stopping at the first row that differs."""
    for i in range(img.shape[0]):
        a, b = img[i], kept[i]
        diff = 0
        for j in range(len(a)):
            diff |= a[j] ^ b[j]
        if diff:
            kept[:] = img
            return False
    return True


@njit(nogil=True, cache=True)
def blend_window_table(running: np.ndarray, window: np.ndarray, first: int, weight: float,
                       start: bool, lut: np.ndarray) -> tuple[int, int]:
    """One frame's table into the AGC's running one, and the uint8 table the frames go through.

    The frame's table is ``window`` (n,) f32 on the counts first .. first + n - 1 and flat
    beyond (``thermal.table_from_window``). running (L,) f32 <- running + weight * (table -
    running) (or the table itself when ``start``), lut (L,) uint8 <- running + 0.5 truncated,
    float32 as numpy computes them. Returns the first and last count where the running
    table has left its bottom value and not yet reached its top one (by more than half a
    level): the counts it spreads over the grey levels, ``(-1, -1)`` for a flat table. What
    ``thermal.blend_table`` and ``thermal.table_span`` give.
    """
    n = len(window)
    w = np.float32(weight)
    half = np.float32(0.5)
    lo = -1
    bottom = np.float32(0.0)
    for k in range(len(running)):
        if k < first:
            t = window[0]
        elif k >= first + n:
            t = window[n - 1]
        else:
            t = window[k - first]
        r = t if start else running[k] + w * (t - running[k])
        running[k] = r
        lut[k] = np.uint8(r + half)
        if k == 0:
            bottom = r
        elif lo < 0 and r > bottom + half:
            lo = k
    top = running[len(running) - 1]
    for k in range(len(running) - 1, -1, -1):  # from the top: stops where the table leaves it
        if running[k] < top - half:
            return (lo, k) if lo >= 0 else (-1, -1)
    return -1, -1


@njit(inline="always")
def _pairwise_leaf(a: np.ndarray, start: int, n: int) -> float:
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    r = a[start:start + 8].copy()
    i = 8
    while i < n - (n % 8):
        for k in range(8):
            r[k] += a[start + i + k]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[start + i]
        i += 1
    return res


@njit(nogil=True, cache=True)
def _pairwise_sum(a: np.ndarray, start: int, n: int) -> float:
    """numpy's pairwise summation of a[start:start + n] (float64), to the last bit, so the
    tables below equal numpy's: blocks of <= 128 summed in 8 lanes, halves (cut at a multiple
    of 8) added up the tree. Iterative: numba's cache does not load recursive functions."""
    if n <= 128:
        return _pairwise_leaf(a, start, n)
    starts, sizes, phases = np.empty(64, np.int64), np.empty(64, np.int64), np.empty(64, np.int64)
    values = np.empty(64, np.float64)
    top, nv = 0, 0
    starts[0], sizes[0], phases[0] = start, n, 0
    while top >= 0:
        s0, m = starts[top], sizes[top]
        half = m // 2
        half -= half % 8
        if m <= 128:
            values[nv] = _pairwise_leaf(a, s0, m)
            nv += 1
            top -= 1
        elif phases[top] == 0:  # the left half first
            phases[top] = 1
            top += 1
            starts[top], sizes[top], phases[top] = s0, half, 0
        elif phases[top] == 1:  # then the right half
            phases[top] = 2
            top += 1
            starts[top], sizes[top], phases[top] = s0 + half, m - half, 0
        else:  # left + right
            values[nv - 2] = values[nv - 2] + values[nv - 1]
            nv -= 1
            top -= 1
    return values[0]


@njit(inline="always")
def _search_left(cdf: np.ndarray, q: float) -> int:
    """np.searchsorted(cdf, q, side="left") of an ascending cdf."""
    lo, hi = 0, len(cdf)
    while lo < hi:
        mid = (lo + hi) // 2
        if cdf[mid] < q:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(nogil=True, cache=True)
def plateau_window_table(window: np.ndarray, plateau: float, max_gain: float,
                         fence: float, share: float, largest: float) -> np.ndarray:
    """``thermal.plateau_table`` on the occupied counts ``window`` (n,) int64 (first and last
    occupied, n >= 2): compress_tails(fence, share, largest) -> clip_histogram ->
    equalization_table, the same float64 operations in the same order. -> (n,) float32 in
    [0, 255]. No defaults: a call that leaves an argument out takes numba's slow Python
    dispatch (0.35 ms a call, measured)."""
    n = len(window)
    out = window.astype(np.float64)
    total = 0
    for k in range(n):
        total += window[k]
    # compress_tails: quartiles of the window (cumulative sum, searchsorted left)
    cdf = np.cumsum(out)
    q1 = float(_search_left(cdf, 25.0 / 100.0 * cdf[-1]))
    q3 = float(_search_left(cdf, 75.0 / 100.0 * cdf[-1]))
    iqr = max(q3 - q1, 1.0)
    lo = int(max(0.0, q1 - fence * iqr))
    hi = int(min(float(n - 1), q3 + fence * iqr))
    bulk = _pairwise_sum(out, lo, hi + 1 - lo)
    for t0, t1 in ((0, lo), (hi + 1, n)):
        mass = _pairwise_sum(out, t0, max(t1 - t0, 0))
        if share * bulk < mass <= largest * total:
            scale = share * bulk / mass
            for k in range(t0, t1):
                out[k] *= scale
    # clip_histogram
    occupied = 0
    for k in range(n):
        if out[k] != 0.0:
            occupied += 1
    if np.isfinite(plateau):
        limit = plateau * _pairwise_sum(out, 0, n) / occupied
        for k in range(n):
            out[k] = min(out[k], limit)
    # equalization_table: every bin of the window stays occupied, so lo = 0 and hi = n - 1
    out[0] = 0.0
    scale = 255.0 / _pairwise_sum(out, 0, n)
    for k in range(n):
        out[k] *= scale
    prev = 0
    for k in range(1, n):
        if window[k] > 0:
            out[k] = min(out[k], max_gain * (k - prev))
            prev = k
    span = np.cumsum(out)
    offset = (255.0 - span[-1]) / 2.0
    return (span + offset).astype(np.float32)
