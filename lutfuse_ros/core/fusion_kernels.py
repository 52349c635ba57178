"""Compiled CPU kernels of the MM-LUT forward pass (numba, ``parallel`` over rows, ``nogil``):
colour, Sobel gradient, the context network's box-averaged input, lookup and chroma. The
thermal AGC's kernels are in :mod:`.agc_kernels`.

The kernels write into caller-owned buffers, so a steady stream of frames allocates no
full-resolution temporaries. Arithmetic is float32, in the order of the authors' code, so the
result matches :mod:`lutfuse_ros.core.torch_ops` to rounding.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .model import LUT_NODES, LUT_SCALE

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)
_INV255 = np.float32(1.0 / 255.0)
_LUT_SCALE = np.float32(LUT_SCALE)
_LUT_LAST = np.uint32(LUT_NODES - 1)  # upper index clamp (globals are compile-time constants)
# strides of the flat table of lut_along_ir: (luma, gradient, IR value, context)
_SY, _SG, _SQ = (np.uint32(LUT_NODES * 256 * LUT_NODES), np.uint32(256 * LUT_NODES),
                 np.uint32(LUT_NODES))
_KR, _KG, _KB = np.float32(0.299), np.float32(0.587), np.float32(0.114)


def writable(a: np.ndarray) -> np.ndarray:
    """``a`` itself, or a copy when it is read-only (a view of a received message's bytes).

    numba types read-only arrays apart, so one would compile every kernel again (seconds, at
    the first frame of a stream); the core's entry points (``check_pair``, ``ThermalAGC``) pass
    their inputs through this, so the kernels see one kind of array (~0.1 ms a megabyte, only
    for read-only inputs).
    """
    return a if a.flags.writeable else a.copy()


@njit(parallel=True, nogil=True, cache=True)
def luma_from_rgb(vis: np.ndarray, r_ch: int, b_ch: int, y_out: np.ndarray) -> None:
    """BT.601 luma of a uint8 colour image. vis (H, W, C>=3) uint8 -> y_out (H, W) f32 [0, 1]."""
    h, w = y_out.shape
    for i in prange(h):
        for j in range(w):
            r = np.float32(vis[i, j, r_ch]) * _INV255
            g = np.float32(vis[i, j, 1]) * _INV255
            b = np.float32(vis[i, j, b_ch]) * _INV255
            y_out[i, j] = r * _KR + g * _KG + b * _KB


@njit(parallel=True, nogil=True, cache=True)
def luma_from_gray(vis: np.ndarray, y_out: np.ndarray) -> None:
    """vis (H, W) uint8 -> y_out (H, W) f32 in [0, 1]."""
    h, w = y_out.shape
    for i in prange(h):
        for j in range(w):
            y_out[i, j] = np.float32(vis[i, j]) * _INV255


@njit(inline="always")
def _at(y: np.ndarray, i: int, j: int) -> np.float32:
    """Zero-padded read."""
    if i < 0 or j < 0 or i >= y.shape[0] or j >= y.shape[1]:
        return _F0
    return y[i, j]


@njit(inline="always")
def _sobel_at(y: np.ndarray, i: int, j: int) -> np.float32:
    """Sobel magnitude at (i, j) with zero padding (the border pixels)."""
    a, b, c = _at(y, i - 1, j - 1), _at(y, i - 1, j), _at(y, i - 1, j + 1)
    d, f = _at(y, i, j - 1), _at(y, i, j + 1)
    gg, hh, k = _at(y, i + 1, j - 1), _at(y, i + 1, j), _at(y, i + 1, j + 1)
    gx = (a + np.float32(2.0) * d + gg) - (c + np.float32(2.0) * f + k)
    gy = (a + np.float32(2.0) * b + c) - (gg + np.float32(2.0) * hh + k)
    return np.sqrt(gx * gx + gy * gy)


@njit(parallel=True, nogil=True, cache=True, fastmath=True)
def sobel_magnitude(y: np.ndarray, g_out: np.ndarray, row_min: np.ndarray,
                    row_max: np.ndarray) -> None:
    """Sobel magnitude of y (H, W) f32 with zero padding into g_out (H, W) f32.

    Also writes each row's min and max into row_min/row_max (H,) so the caller can normalise
    without another pass over the image. Interior pixels run in a loop without branches and
    the min/max in one of their own: the compiler vectorises both (1.8x the one-loop form).
    """
    h, w = y.shape
    for i in prange(h):
        g_row = g_out[i]
        if 0 < i < h - 1:
            up, mid, dn = y[i - 1], y[i], y[i + 1]
            for j in range(1, w - 1):
                gx = (up[j - 1] + np.float32(2.0) * mid[j - 1] + dn[j - 1]) - \
                    (up[j + 1] + np.float32(2.0) * mid[j + 1] + dn[j + 1])
                gy = (up[j - 1] + np.float32(2.0) * up[j] + up[j + 1]) - \
                    (dn[j - 1] + np.float32(2.0) * dn[j] + dn[j + 1])
                g_row[j] = np.sqrt(gx * gx + gy * gy)
            g_row[0] = _sobel_at(y, i, 0)
            g_row[w - 1] = _sobel_at(y, i, w - 1)
        else:
            for j in range(w):
                g_row[j] = _sobel_at(y, i, j)
        lo = g_row[0]
        hi = g_row[0]
        for j in range(1, w):
            lo = min(lo, g_row[j])
            hi = max(hi, g_row[j])
        row_min[i] = lo
        row_max[i] = hi


@njit(inline="always")
def _lerp(a, b, t):
    return a * (_F1 - t) + b * t


@njit(inline="always")
def _split(v: np.float32):
    """Table coordinate of v in [0, 1]: (lower index, upper index clamped to 15, fraction).
    Unsigned indices: no negative-index wrap-around to test per gather."""
    c = v * _LUT_SCALE
    lo = min(np.uint32(c), _LUT_LAST)  # v >= 0, so the conversion is floor
    return lo, min(lo + np.uint32(1), _LUT_LAST), c - np.float32(lo)


def lut_along_ir(lut: np.ndarray) -> np.ndarray:
    """Interpolate the table along the IR axis for every uint8 IR value, once per model.

    An 8-bit IR value q sits at coordinate q * LUT_SCALE / 255 = q / 16 exactly, so the
    innermost lerp of the authors' lookup takes only 256 values: tabulating it turns 16
    gathers per pixel into 8, with the same float32 arithmetic.
    (16 y, 16 g, 16 s, 16 ir) f32 -> (16 y, 16 g, 256 q, 16 s) f32: the context axis last, so
    the two context neighbours of a lookup share a cache line (4 lines per pixel, not 8).
    """
    q = np.arange(256)
    i0 = q // LUT_NODES
    i1 = np.minimum(i0 + 1, lut.shape[3] - 1)
    frac = ((q % LUT_NODES) / np.float32(LUT_NODES)).astype(np.float32)
    one = np.float32(1.0)
    table = lut[..., i0] * (one - frac) + lut[..., i1] * frac
    return np.ascontiguousarray(table.transpose(0, 1, 3, 2), dtype=np.float32)


@njit(inline="always")
def _to_u8(v: np.float32) -> np.uint8:
    v = min(max(v, _F0), _F1)
    return np.uint8(np.int32(v * np.float32(255.0) + np.float32(0.5)))


@njit(parallel=True, nogil=True, cache=True, fastmath=True)
def fuse_lookup(vis, ir, y, grad, g_min, g_inv, ctx, ry0, ry1, rwy, cx0, cx1, cwx, lut_flat, out):
    """Quadrilinear lookup of the fused luma and recombination with the visible chroma.

    Args:
        vis: (H, W, C) uint8 colour (C >= 3, any channel order) or (H, W) uint8 gray.
        ir: (H, W) uint8 infrared image.
        y, grad: (H, W) f32 visible luma in [0, 1] and raw Sobel magnitude.
        g_min, g_inv: gradient normaliser, g_norm = (grad - g_min) * g_inv, clipped to [0, 1].
        ctx: (h, w) f32 context map in (0, 1) at reduced resolution.
        ry0, ry1, rwy / cx0, cx1, cwx: per-row / per-column bilinear taps from (H, W) to (h, w).
        lut_flat: (16 * 16 * 256 * 16,) f32, the table of :func:`lut_along_ir` flattened.
        out: (H, W, 3) uint8 in the channel order of ``vis``, or (H, W) uint8 for gray.

    Keeping the visible Cb and Cr and replacing Y is, in BT.601, the same as adding the
    luma change ``fused_y - y`` to each of R, G and B: no per-pixel colour matrices.
    Each row runs as simple loops (context, coordinates, gathers, chroma) over row buffers,
    which the compiler turns into tighter code than one loop doing all of it. ``fastmath``
    lets LLVM reorder the float maths: outputs move by at most 1 LSB.
    """
    h, w = y.shape
    cw = ctx.shape[1]
    colour = vis.ndim == 3
    for i in prange(h):
        # Context map up-sampled for this row: vertical taps once per row, horizontal per pixel.
        ctx_row = np.empty(cw, np.float32)
        wy = rwy[i]
        for k in range(cw):
            ctx_row[k] = ctx[ry0[i], k] * (_F1 - wy) + ctx[ry1[i], k] * wy
        fy_row = np.empty(w, np.float32)  # the context, then the fused luma, of each pixel
        for j in range(w):
            fy_row[j] = ctx_row[cx0[j]] * (_F1 - cwx[j]) + ctx_row[cx1[j]] * cwx[j]
        # Coordinates first, in a loop without memory gathers that the compiler vectorises
        # (base address, the steps to the upper neighbours, fractions), then the gathers
        # and lerps: 30 % faster than one loop doing both, same arithmetic.
        y_row, g_row, ir_row = y[i], grad[i], ir[i]
        base = np.empty(w, np.uint32)
        step_y, step_g, step_s = (np.empty(w, np.uint32), np.empty(w, np.uint32),
                                  np.empty(w, np.uint32))
        frac_y, frac_g, frac_s = (np.empty(w, np.float32), np.empty(w, np.float32),
                                  np.empty(w, np.float32))
        for j in range(w):
            g = min(max((g_row[j] - g_min) * g_inv, _F0), _F1)
            y0, y1, frac_y[j] = _split(y_row[j])
            g0, g1, frac_g[j] = _split(g)
            s0, s1, frac_s[j] = _split(fy_row[j])
            base[j] = y0 * _SY + g0 * _SG + np.uint32(ir_row[j]) * _SQ + s0
            step_y[j] = (y1 - y0) * _SY  # 0 at the table's last node
            step_g[j] = (g1 - g0) * _SG
            step_s[j] = s1 - s0
        for j in range(w):
            a00 = base[j]
            a01 = a00 + step_g[j]
            a10 = a00 + step_y[j]
            a11 = a10 + step_g[j]
            ds, sa, ga = step_s[j], frac_s[j], frac_g[j]
            # The authors' nesting (IR innermost, then context, gradient, luma).
            fy_row[j] = _lerp(
                _lerp(_lerp(lut_flat[a00], lut_flat[a00 + ds], sa),
                      _lerp(lut_flat[a01], lut_flat[a01 + ds], sa), ga),
                _lerp(_lerp(lut_flat[a10], lut_flat[a10 + ds], sa),
                      _lerp(lut_flat[a11], lut_flat[a11 + ds], sa), ga),
                frac_y[j])
        if colour:
            vis_row, out_row = vis[i], out[i]
            for j in range(w):
                d = np.int32(np.floor((fy_row[j] - y_row[j]) * np.float32(255.0)
                                      + np.float32(0.5)))
                for c in range(3):
                    out_row[j, c] = min(max(np.int32(vis_row[j, c]) + d, 0), 255)
        else:
            for j in range(w):
                out[i, j] = _to_u8(fy_row[j])


@njit(parallel=True, nogil=True, cache=True)
def box_downsample_rgb_ir(vis, ir, r_ch, b_ch, k, x_out):
    """k x k box average of (vis, ir) into the context network's NHWC input.

    vis (H, W, C>=3) or (H, W) uint8 C-contiguous, ir (H, W) uint8 -> x_out
    (1, H // k, W // k, 4) f32, channels (R, G, B, IR) in [0, 255]. Rows and columns past a
    multiple of k are dropped, as ``avg_pool2d(kernel_size=k)`` does. Each block row first
    sums its k image rows as flat integer rows (a loop the compiler vectorises; 4x the
    per-block form), then k columns per cell: integer sums, so the result is exact.
    """
    ch, cw = x_out.shape[1], x_out.shape[2]
    colour = vis.ndim == 3
    n = cw * k
    inv = np.float32(1.0) / np.float32(k * k)
    for a in prange(ch):
        nc = vis.shape[2] if colour else 1
        flat = np.zeros(n * nc, np.int32)  # column sums over the block's k rows
        ir_sum = np.zeros(n, np.int32)
        for u in range(a * k, a * k + k):
            row = vis[u].reshape(-1)
            for v in range(n * nc):
                flat[v] += row[v]
            ir_row = ir[u]
            for v in range(n):
                ir_sum[v] += ir_row[v]
        sums = flat.reshape((n, nc))
        for b in range(cw):
            sr = 0
            sg = 0
            sb = 0
            si = 0
            for v in range(b * k, b * k + k):
                if colour:
                    sr += sums[v, r_ch]
                    sg += sums[v, 1]
                    sb += sums[v, b_ch]
                else:
                    sr += sums[v, 0]
                si += ir_sum[v]
            if not colour:
                sg = sr
                sb = sr
            x_out[0, a, b, 0] = np.float32(sr) * inv
            x_out[0, a, b, 1] = np.float32(sg) * inv
            x_out[0, a, b, 2] = np.float32(sb) * inv
            x_out[0, a, b, 3] = np.float32(si) * inv
