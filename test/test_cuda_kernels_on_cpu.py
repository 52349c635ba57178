"""The fused CUDA kernels' source (``core/cuda_kernels.py``) compiled for the CPU and held to
the numba backend: the GPU code's maths tested where there is no GPU (CI).

The kernels are plain CUDA C; a small prelude (``PRELUDE``) makes that C++ and each launch
a loop over the grid with one thread a block (the shared-memory reductions then reduce one
value). ``test/test_torch_backend.py`` runs the same kernels on a GPU, where there is one.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the context network runs in torch")

from lutfuse_ros.core import Fuser, FusionConfig, load_model  # noqa: E402
from lutfuse_ros.core import fusion_kernels as kernels  # noqa: E402
from lutfuse_ros.core.cuda_kernels import SOURCE, compile_options  # noqa: E402
from lutfuse_ros.core.fusion_kernels import lut_along_ir  # noqa: E402
from lutfuse_ros.core.synthetic import synthetic_pair  # noqa: E402

PRELUDE = r"""
#include <algorithm>
#include <cmath>
using std::max;
using std::min;
struct Dim { unsigned x, y, z; };
static Dim blockIdx, threadIdx, blockDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads()
"""

# One C wrapper per kernel: run the whole grid, one thread a block.
LAUNCHERS = r"""
#define U8 const unsigned char*
extern "C" void run_box_average(U8 vis, U8 ir, float* x, int n, int h, int w, int c,
                                int r_ch, int b_ch, int k, int ch, int cw, int blocks) {
    for (long long t = 0; t < (long long)n * ch * cw; ++t) {
        blockIdx = {(unsigned)t, 0, 0};
        if (blocks) box_average_blocks(vis, ir, x, n, h, w, c, r_ch, b_ch, k, ch, cw);
        else box_average(vis, ir, x, n, h, w, c, r_ch, b_ch, k, ch, cw);
    }
}
extern "C" void run_gradient_rows(U8 vis, float* lo, float* hi, int n, int h, int w, int c,
                                  int r_ch, int b_ch) {
    for (int s = 0; s < n; ++s)
        for (int i = 0; i < h; ++i) {
            blockIdx = {(unsigned)i, (unsigned)s, 0};
            gradient_rows(vis, lo, hi, h, w, c, r_ch, b_ch);
        }
}
extern "C" void run_fuse_pixels(U8 vis, U8 ir, const float* ctx, const float* grange,
                                const float* table, unsigned char* out, int n, int h, int w,
                                int c, int r_ch, int b_ch, int k, int ch, int cw) {
    for (long long t = 0; t < (long long)n * h * w; ++t) {
        blockIdx = {(unsigned)t, 0, 0};
        fuse_pixels(vis, ir, ctx, grange, table, out, n, h, w, c, r_ch, b_ch, k, ch, cw);
    }
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("needs a C++ compiler (g++) to build the CUDA kernels for the CPU")
    folder = tmp_path_factory.mktemp("cuda_on_cpu")
    src, so = folder / "kernels.cpp", folder / "kernels.so"
    src.write_text(PRELUDE + SOURCE + LAUNCHERS)
    defines = [o for o in compile_options() if o.startswith("-D")]
    subprocess.run([cxx, "-O2", "-std=c++14", "-shared", "-fPIC", *defines, str(src), "-o",
                    str(so)], check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(so))


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    assert a.flags.c_contiguous
    return ctypes.c_void_p(a.ctypes.data)


def layout(vis: np.ndarray) -> tuple[int, int, int, int]:
    n, h, w = vis.shape[:3]
    return n, h, w, vis.shape[3] if vis.ndim == 4 else 1


def box_average(lib, vis, ir, k, blocks, r_ch=0, b_ch=2):
    n, h, w, c = layout(vis)
    x = np.empty((n, 4, h // k, w // k), np.float32)
    lib.run_box_average(ptr(vis), ptr(ir), ptr(x), n, h, w, c, r_ch, b_ch, k, h // k, w // k,
                        int(blocks))
    return x


def gradient_rows(lib, vis, r_ch=0, b_ch=2):
    n, h, w, c = layout(vis)
    lo, hi = np.empty((n, h), np.float32), np.empty((n, h), np.float32)
    lib.run_gradient_rows(ptr(vis), ptr(lo), ptr(hi), n, h, w, c, r_ch, b_ch)
    return lo, hi


def fuse(lib, model, vis, ir, k, r_ch=0, b_ch=2):
    """The kernels' fast pass, as ``FusedKernels.fuse_u8`` runs it (context net on torch)."""
    n, h, w, c = layout(vis)
    x = box_average(lib, vis, ir, k, k * k >= 64, r_ch, b_ch)
    with torch.inference_mode():
        ctx = model.build_context_net()(torch.from_numpy(x)).numpy()
    lo, hi = gradient_rows(lib, vis, r_ch, b_ch)
    grange = np.ascontiguousarray(np.stack([lo.min(axis=1), hi.max(axis=1)], axis=1))
    table = lut_along_ir(model.lut).reshape(-1)
    out = np.empty((n, h, w, 3) if c > 1 else (n, h, w), np.uint8)
    lib.run_fuse_pixels(ptr(vis), ptr(ir), ptr(ctx), ptr(grange), ptr(table), ptr(out), n, h,
                        w, c, r_ch, b_ch, k, h // k, w // k)
    return out


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.mark.parametrize("k", [1, 4, 16])
def test_box_average_equals_the_numba_kernel(lib, k):
    ir, vis = synthetic_pair(seed=4, shape=(64, 96))
    want = np.empty((1, 64 // k, 96 // k, 4), np.float32)
    kernels.box_downsample_rgb_ir(vis, ir, 0, 2, k, want)
    for blocks in (False, True):
        got = box_average(lib, vis[None], ir[None], k, blocks)
        np.testing.assert_array_equal(got[0].transpose(1, 2, 0), want[0])


def test_gradient_rows_equal_the_numba_kernels_row_extremes(lib):
    _, vis = synthetic_pair(seed=5, shape=(48, 80))
    y, g = np.empty((48, 80), np.float32), np.empty((48, 80), np.float32)
    lo, hi = np.empty(48, np.float32), np.empty(48, np.float32)
    kernels.luma_from_rgb(vis, 0, 2, y)
    kernels.sobel_magnitude(y, g, lo, hi)
    got_lo, got_hi = gradient_rows(lib, vis[None])
    np.testing.assert_allclose(got_lo[0], lo, atol=1e-6)
    np.testing.assert_allclose(got_hi[0], hi, atol=1e-6)


@pytest.mark.parametrize("shape, k", [((64, 96), 16), ((70, 90), 8), ((48, 64), 1)])
def test_fused_kernels_fuse_as_the_numpy_backend(lib, model, shape, k):
    """Colour (RGB and BGR), grey and a batch of two, sizes that are not a multiple of k."""
    scale = 1.0 / k
    ref = Fuser(model, FusionConfig(exact=k == 1, context_scale=scale if k > 1 else 0.0625))
    pairs = [synthetic_pair(seed=s, shape=shape) for s in (7, 8)]
    irs = np.stack([p[0] for p in pairs])
    viss = np.stack([p[1] for p in pairs])
    got = fuse(lib, model, viss, irs, k)
    for (ir, vis), g in zip(pairs, got):
        want = ref.fuse(ir, vis)
        assert np.abs(g.astype(int) - want).max() <= 1
    bgr = np.ascontiguousarray(viss[..., ::-1])
    got_bgr = fuse(lib, model, bgr, irs, k, r_ch=2, b_ch=0)
    np.testing.assert_array_equal(got_bgr[..., ::-1], got)
    grey = np.ascontiguousarray(viss[..., 1])
    want = ref.fuse(irs[0], grey[0])
    assert np.abs(fuse(lib, model, grey, irs, k)[0].astype(int) - want).max() <= 1
