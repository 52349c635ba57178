"""The per-pixel work of the fast pass as three CUDA kernels (CuPy ``RawKernel``), for the
torch backend on GPUs.

The torch-ops pass (:func:`~.torch_ops.fuse_u8`) launches ~70 kernels a frame and moves
every intermediate through memory; these three do it in registers:

- ``box_average``: the context network's input, the ``k x k`` box mean of (R, G, B, IR);
- ``gradient_rows``: each row's min and max of the visible luma's Sobel magnitude (a
  stream's :class:`~.preprocess.GradientNormaliser` reads them; the per-image range is their
  min and max);
- ``fuse_pixels``: luma, Sobel, normalisation, the context map's bilinear up-sampling, the
  lookup in the table interpolated along IR (:func:`~.fusion_kernels.lut_along_ir`, 8 gathers a
  pixel) and the luma change added to each colour channel.

They are the numba kernels of :mod:`.fusion_kernels` (the numba backend) written for a GPU: the same
float32 operations in the same order, so the two agree to 1 grey level (fused multiply-adds
round differently). That CPU twin is what CI tests; ``test/test_torch_backend.py`` holds the
GPU kernels to it where a GPU is present (``scripts/gpu_check.sh``). The context network
stays in torch (cuDNN) between the first two and the last.

Kernels run on torch's current stream, so a CUDA graph captures them with the rest. CuPy
compiles them with NVRTC at first use (cached on disk); it has wheels for x86-64 and aarch64
(Jetson: ``cupy-cuda12x`` for JetPack 6), and nothing here needs Triton.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .fusion_kernels import lut_along_ir
from .model import LUT_NODES, LUT_SCALE, FusionModel

SOURCE = r"""
#define INV255 (1.0f / 255.0f)
#define LAST (NODES - 1)

__device__ __forceinline__ float luma_at(const unsigned char* vis, int h, int w, int c,
                                         int r_ch, int b_ch, int i, int j) {
    if (i < 0 || j < 0 || i >= h || j >= w) return 0.0f;  // zero padding
    const unsigned char* p = vis + ((long long)i * w + j) * c;
    if (c == 1) return (float)p[0] * INV255;
    float r = (float)p[r_ch] * INV255, g = (float)p[1] * INV255, b = (float)p[b_ch] * INV255;
    return r * 0.299f + g * 0.587f + b * 0.114f;
}

__device__ __forceinline__ float sobel_at(const unsigned char* vis, int h, int w, int c,
                                          int r_ch, int b_ch, int i, int j, float* y) {
    float a = luma_at(vis, h, w, c, r_ch, b_ch, i - 1, j - 1);
    float b = luma_at(vis, h, w, c, r_ch, b_ch, i - 1, j);
    float cc = luma_at(vis, h, w, c, r_ch, b_ch, i - 1, j + 1);
    float d = luma_at(vis, h, w, c, r_ch, b_ch, i, j - 1);
    float f = luma_at(vis, h, w, c, r_ch, b_ch, i, j + 1);
    float g = luma_at(vis, h, w, c, r_ch, b_ch, i + 1, j - 1);
    float hh = luma_at(vis, h, w, c, r_ch, b_ch, i + 1, j);
    float k = luma_at(vis, h, w, c, r_ch, b_ch, i + 1, j + 1);
    *y = luma_at(vis, h, w, c, r_ch, b_ch, i, j);
    float gx = (a + 2.0f * d + g) - (cc + 2.0f * f + k);
    float gy = (a + 2.0f * b + cc) - (g + 2.0f * hh + k);
    return sqrtf(gx * gx + gy * gy);
}

// x (B, 4, h, w) float32: box means of (R, G, B, IR) over k x k pixels, in [0, 255].
extern "C" __global__ void box_average(const unsigned char* vis, const unsigned char* ir,
                                       float* x, int n, int h, int w, int c, int r_ch,
                                       int b_ch, int k, int ch, int cw) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)n * ch * cw) return;
    int bb = (int)(t % cw), a = (int)((t / cw) % ch), s = (int)(t / ((long long)cw * ch));
    const unsigned char* v = vis + (long long)s * h * w * c;
    const unsigned char* q = ir + (long long)s * h * w;
    int sr = 0, sg = 0, sb = 0, si = 0;
    for (int u = a * k; u < a * k + k; ++u) {
        for (int e = bb * k; e < bb * k + k; ++e) {
            const unsigned char* p = v + ((long long)u * w + e) * c;
            if (c == 1) { sr += p[0]; } else { sr += p[r_ch]; sg += p[1]; sb += p[b_ch]; }
            si += q[(long long)u * w + e];
        }
    }
    if (c == 1) { sg = sr; sb = sr; }
    float inv = 1.0f / (float)(k * k);
    long long plane = (long long)ch * cw, o = (long long)s * 4 * plane + (long long)a * cw + bb;
    x[o] = (float)sr * inv;
    x[o + plane] = (float)sg * inv;
    x[o + 2 * plane] = (float)sb * inv;
    x[o + 3 * plane] = (float)si * inv;
}

// The same with one block of 256 threads per cell (grid: cells), for large k: a thread per
// cell would sum k * k pixels alone (256 at the default 1/16) while most of the GPU idles.
extern "C" __global__ void box_average_blocks(const unsigned char* vis,
                                              const unsigned char* ir, float* x, int n, int h,
                                              int w, int c, int r_ch, int b_ch, int k, int ch,
                                              int cw) {
    __shared__ int sums[4][256];
    long long t = blockIdx.x;
    int bb = (int)(t % cw), a = (int)((t / cw) % ch), s = (int)(t / ((long long)cw * ch));
    const unsigned char* v = vis + (long long)s * h * w * c;
    const unsigned char* q = ir + (long long)s * h * w;
    int sr = 0, sg = 0, sb = 0, si = 0;
    for (int e = threadIdx.x; e < k * k; e += blockDim.x) {
        int u = a * k + e / k, col = bb * k + e % k;
        const unsigned char* p = v + ((long long)u * w + col) * c;
        if (c == 1) { sr += p[0]; } else { sr += p[r_ch]; sg += p[1]; sb += p[b_ch]; }
        si += q[(long long)u * w + col];
    }
    sums[0][threadIdx.x] = sr; sums[1][threadIdx.x] = sg;
    sums[2][threadIdx.x] = sb; sums[3][threadIdx.x] = si;
    __syncthreads();
    for (int m = blockDim.x / 2; m > 0; m >>= 1) {
        if (threadIdx.x < m) {
            for (int z = 0; z < 4; ++z) sums[z][threadIdx.x] += sums[z][threadIdx.x + m];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        sr = sums[0][0]; sg = sums[1][0]; sb = sums[2][0]; si = sums[3][0];
        if (c == 1) { sg = sr; sb = sr; }
        float inv = 1.0f / (float)(k * k);
        long long plane = (long long)ch * cw;
        long long o = (long long)s * 4 * plane + (long long)a * cw + bb;
        x[o] = (float)sr * inv;
        x[o + plane] = (float)sg * inv;
        x[o + 2 * plane] = (float)sb * inv;
        x[o + 3 * plane] = (float)si * inv;
    }
}

// One block per row (grid: h, n): the row's min and max Sobel magnitude.
extern "C" __global__ void gradient_rows(const unsigned char* vis, float* row_lo,
                                         float* row_hi, int h, int w, int c, int r_ch,
                                         int b_ch) {
    __shared__ float lo_s[256];
    __shared__ float hi_s[256];
    int i = blockIdx.x, s = blockIdx.y;
    const unsigned char* v = vis + (long long)s * h * w * c;
    float lo = 3.4e38f, hi = 0.0f, y;
    for (int j = threadIdx.x; j < w; j += blockDim.x) {
        float g = sobel_at(v, h, w, c, r_ch, b_ch, i, j, &y);
        lo = fminf(lo, g);
        hi = fmaxf(hi, g);
    }
    lo_s[threadIdx.x] = lo;
    hi_s[threadIdx.x] = hi;
    __syncthreads();
    for (int m = blockDim.x / 2; m > 0; m >>= 1) {
        if (threadIdx.x < m) {
            lo_s[threadIdx.x] = fminf(lo_s[threadIdx.x], lo_s[threadIdx.x + m]);
            hi_s[threadIdx.x] = fmaxf(hi_s[threadIdx.x], hi_s[threadIdx.x + m]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        row_lo[(long long)s * h + i] = lo_s[0];
        row_hi[(long long)s * h + i] = hi_s[0];
    }
}

__device__ __forceinline__ float lerp_(float a, float b, float t) {
    return a * (1.0f - t) + b * t;
}

__device__ __forceinline__ unsigned int split(float v, unsigned int* hi, float* frac) {
    float c = v * LUT_SCALE;
    unsigned int lo = min((unsigned int)c, (unsigned int)LAST);  // v >= 0: floor
    *hi = min(lo + 1u, (unsigned int)LAST);
    *frac = c - (float)lo;
    return lo;
}

__device__ __forceinline__ float bilinear_tap(int p, int n_in, int k, int* i0, int* i1) {
    float src = ((float)p + 0.5f) / (float)k - 0.5f;
    src = fminf(fmaxf(src, 0.0f), (float)(n_in - 1));
    *i0 = min((int)src, n_in - 1);
    *i1 = min(*i0 + 1, n_in - 1);
    return src - (float)*i0;
}

// out (B, H, W, 3) uint8 in vis's channel order, or (B, H, W) for grey (c == 1).
// ctx (B, 1, ch, cw) float32 context map; grange (B, 2) gradient (min, max);
// table: lut_along_ir flattened, (luma, gradient, IR value 0..255, context).
extern "C" __global__ void fuse_pixels(const unsigned char* vis, const unsigned char* ir,
                                       const float* ctx, const float* grange,
                                       const float* table, unsigned char* out, int n, int h,
                                       int w, int c, int r_ch, int b_ch, int k, int ch,
                                       int cw) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)n * h * w) return;
    int j = (int)(t % w), i = (int)((t / w) % h), s = (int)(t / ((long long)w * h));
    const unsigned char* v = vis + (long long)s * h * w * c;
    float y;
    float grad = sobel_at(v, h, w, c, r_ch, b_ch, i, j, &y);
    float g_min = grange[2 * s], g_inv = 1.0f / (grange[2 * s + 1] - g_min + 1e-8f);
    float g = fminf(fmaxf((grad - g_min) * g_inv, 0.0f), 1.0f);
    int r0, r1, c0, c1;
    float wy = bilinear_tap(i, ch, k, &r0, &r1), wx = bilinear_tap(j, cw, k, &c0, &c1);
    const float* m = ctx + (long long)s * ch * cw;
    float top = m[r0 * cw + c0] * (1.0f - wy) + m[r1 * cw + c0] * wy;
    float bot = m[r0 * cw + c1] * (1.0f - wy) + m[r1 * cw + c1] * wy;
    float sv = top * (1.0f - wx) + bot * wx;
    unsigned int y1, g1, s1;
    float fy_, fg, fs;
    unsigned int y0 = split(y, &y1, &fy_), g0 = split(g, &g1, &fg), s0 = split(sv, &s1, &fs);
    unsigned int q = ir[t];
    const unsigned int SQ = NODES, SG = 256 * NODES, SY = NODES * 256 * NODES;
    unsigned int a00 = y0 * SY + g0 * SG + q * SQ + s0, ds = s1 - s0;
    unsigned int a01 = a00 + (g1 - g0) * SG, a10 = a00 + (y1 - y0) * SY;
    unsigned int a11 = a10 + (g1 - g0) * SG;
    float fused = lerp_(
        lerp_(lerp_(table[a00], table[a00 + ds], fs), lerp_(table[a01], table[a01 + ds], fs), fg),
        lerp_(lerp_(table[a10], table[a10 + ds], fs), lerp_(table[a11], table[a11 + ds], fs), fg),
        fy_);
    if (c == 1) {
        float f = fminf(fmaxf(fused, 0.0f), 1.0f);
        out[t] = (unsigned char)(int)(f * 255.0f + 0.5f);
        return;
    }
    int d = (int)floorf((fused - y) * 255.0f + 0.5f);
    const unsigned char* p = v + ((long long)i * w + j) * c;
    unsigned char* o = out + t * 3;
    for (int e = 0; e < 3; ++e) o[e] = (unsigned char)min(max((int)p[e] + d, 0), 255);
}
"""

_BLOCK = 256           # threads a block (the kernels' shared arrays hold 256)
_BLOCK_PER_CELL = 64   # box averages over this many pixels or more take a block per cell


def compile_options() -> tuple[str, ...]:
    """The table's constants, and the C++ dialect, for NVRTC (and the CPU build in tests)."""
    return (f"-DNODES={LUT_NODES}", f"-DLUT_SCALE={LUT_SCALE:.9g}f", "--std=c++14")


def cupy_available() -> bool:
    """Whether CuPy imports and sees a GPU."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - ImportError, or a CUDA runtime error without a GPU
        return False


class FusedKernels:
    """The three kernels for one model on one GPU, launched on torch's current stream.

    Args:
        model: its table is interpolated along IR once (:func:`~.fusion_kernels.lut_along_ir`).
        device: a CUDA torch device.
    """

    def __init__(self, model: FusionModel, device: torch.device) -> None:
        import cupy

        self._cupy = cupy
        self.device = device
        with cupy.cuda.Device(device.index or 0):
            module = cupy.RawModule(code=SOURCE, options=compile_options())
            self._box = module.get_function("box_average")
            self._box_blocks = module.get_function("box_average_blocks")
            self._rows = module.get_function("gradient_rows")
            self._fuse = module.get_function("fuse_pixels")
        self.table = torch.from_numpy(lut_along_ir(model.lut).reshape(-1)).to(device)
        self._streams: dict[int, object] = {}  # CuPy's view of each torch stream used

    def _launch(self, kernel, grid, block, args) -> None:
        """Launch on torch's current stream (a capturing one too)."""
        handle = torch.cuda.current_stream(self.device).cuda_stream
        stream = self._streams.get(handle)
        if stream is None:
            with warnings.catch_warnings():  # CuPy 14 prefers from_external; older lack it
                warnings.simplefilter("ignore", DeprecationWarning)
                stream = self._streams[handle] = self._cupy.cuda.ExternalStream(handle)
        with self._cupy.cuda.Device(self.device.index or 0), stream:
            kernel(grid, block, args)

    @staticmethod
    def _layout(vis: torch.Tensor) -> tuple[int, int, int, int]:
        n, h, w = vis.shape[:3]
        return n, h, w, (vis.shape[3] if vis.ndim == 4 else 1)

    def box_average(self, vis: torch.Tensor, ir: torch.Tensor, r_ch: int, b_ch: int,
                    k: int) -> torch.Tensor:
        """(B, H, W[, C]) and (B, H, W) uint8 -> (B, 4, H // k, W // k) float32."""
        n, h, w, c = self._layout(vis)
        ch, cw = h // k, w // k
        x = torch.empty((n, 4, ch, cw), dtype=torch.float32, device=vis.device)
        cells = n * ch * cw
        args = (_ptr(vis), _ptr(ir), _ptr(x), *_ints(n, h, w, c, r_ch, b_ch, k, ch, cw))
        if k * k >= _BLOCK_PER_CELL:
            self._launch(self._box_blocks, (cells,), (_BLOCK,), args)
        else:
            self._launch(self._box, ((cells + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)
        return x

    def gradient_rows(self, vis: torch.Tensor, r_ch: int, b_ch: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W[, C]) uint8 -> each row's min and max Sobel magnitude, two (B, H)."""
        n, h, w, c = self._layout(vis)
        lo = torch.empty((n, h), dtype=torch.float32, device=vis.device)
        hi = torch.empty_like(lo)
        self._launch(self._rows, (h, n), (_BLOCK,),
                     (_ptr(vis), _ptr(lo), _ptr(hi), *_ints(h, w, c, r_ch, b_ch)))
        return lo, hi

    def fuse_pixels(self, vis: torch.Tensor, ir: torch.Tensor, ctx: torch.Tensor,
                    grange: torch.Tensor, r_ch: int, b_ch: int, k: int) -> torch.Tensor:
        """The fused frames, (B, H, W, 3) or (B, H, W) uint8, from the context map ``ctx``
        (B, 1, H // k, W // k) and the gradient range ``grange`` (B, 2)."""
        n, h, w, c = self._layout(vis)
        ctx, grange = ctx.float().contiguous(), grange.float().contiguous()
        out = torch.empty((n, h, w, 3) if c > 1 else (n, h, w), dtype=torch.uint8,
                          device=vis.device)
        pixels = n * h * w
        self._launch(self._fuse, ((pixels + _BLOCK - 1) // _BLOCK,), (_BLOCK,),
                     (_ptr(vis), _ptr(ir), _ptr(ctx), _ptr(grange), _ptr(self.table),
                      _ptr(out), *_ints(n, h, w, c, r_ch, b_ch, k, ctx.shape[2],
                                        ctx.shape[3])))
        return out

    def fuse_u8(self, context_net: torch.nn.Module, vis: torch.Tensor, ir: torch.Tensor,
                stride: int, r_ch: int = 0, b_ch: int = 2,
                gradient_range: torch.Tensor | None = None, half: bool = False
                ) -> torch.Tensor:
        """:func:`~.torch_ops.fuse_u8` with these kernels (same arguments but the table,
        which this object holds; inputs C-contiguous on the GPU)."""
        x = self.box_average(vis, ir, r_ch, b_ch, stride)
        s = context_net(x.half()).float() if half else context_net(x)
        if gradient_range is None:
            lo, hi = self.gradient_rows(vis, r_ch, b_ch)
            gradient_range = torch.stack((lo.amin(dim=1), hi.amax(dim=1)), dim=1)
        return self.fuse_pixels(vis, ir, s, gradient_range, r_ch, b_ch, stride)


def _ptr(t: torch.Tensor) -> np.uint64:
    if not t.is_contiguous():
        raise ValueError("the CUDA kernels take C-contiguous tensors")
    return np.uint64(t.data_ptr())


def _ints(*values: int) -> tuple[np.int32, ...]:
    return tuple(np.int32(v) for v in values)
