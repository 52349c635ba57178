"""The torch backend (``core/torch_backend.py``): batches, a stream's gradient range, and the
CUDA-graph path.

The graph path replays the very ops the eager path runs (``torch_ops.fuse_u8``), so the CPU
tests below check its maths against the numba backend; the tests marked ``cuda`` check the
captured graphs, the pinned buffers and the GPU's arithmetic, and skip where torch sees no
GPU (CI). ``scripts/gpu_check.sh`` runs them on a lent GPU.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch backend needs torch")

from lutfuse_ros.core import (  # noqa: E402  # noqa: E402
    Fuser,
    FusionConfig,
    FusionInputError,
    fusion_kernels,
    load_model,
    torch_ops,
)
from lutfuse_ros.core.preprocess import GradientNormaliser  # noqa: E402
from lutfuse_ros.core.resample import bilinear_taps  # noqa: E402
from lutfuse_ros.core.synthetic import synthetic_pair  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs a CUDA GPU (torch sees none here); "
                                 "scripts/gpu_check.sh runs these on one")
# The GPU tests run with each per-pixel implementation: the fused CuPy kernels and torch ops.
KERNELS = ["cupy", "torch"]


@pytest.fixture(params=KERNELS)
def kernels_name(request):
    if request.param == "cupy":
        from lutfuse_ros.core.cuda_kernels import cupy_available
        if not cupy_available():
            pytest.skip("needs CuPy and a GPU")
    return request.param


@pytest.fixture(scope="module")
def model():
    return load_model()


def max_abs_diff(a, b):
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def frames(count, shape=(96, 128)):
    return [synthetic_pair(seed=s, shape=shape) for s in range(count)]


def test_upsampled_context_equals_the_numpy_backends_taps():
    """interpolate-by-k plus edge rows is the half-pixel bilinear of ``bilinear_taps``, also
    when the frame is not a multiple of the stride."""
    s = torch.rand(2, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    for k, (h, w) in ((4, (21, 30)), (4, (20, 28)), (3, (17, 22))):
        (r0, r1, rw), (c0, c1, cw) = bilinear_taps(h, 5, k), bilinear_taps(w, 7, k)
        s_np = s.numpy()
        rows = s_np[..., r0, :] * (1 - rw[:, None]) + s_np[..., r1, :] * rw[:, None]
        want = rows[..., c0] * (1 - cw) + rows[..., c1] * cw
        got = torch_ops.upsample_context(s, (h, w), k).numpy()
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_gradient_rows_equal_the_numpy_kernels_row_extremes(pair):
    _, vis = pair
    h, w = vis.shape[:2]
    y, g = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    lo, hi = np.empty(h, np.float32), np.empty(h, np.float32)
    fusion_kernels.luma_from_rgb(vis, 0, 2, y)
    fusion_kernels.sobel_magnitude(y, g, lo, hi)
    t_lo, t_hi = torch_ops.gradient_rows(torch.from_numpy(vis)[None])
    np.testing.assert_allclose(t_lo[0].numpy(), lo, atol=1e-5)
    np.testing.assert_allclose(t_hi[0].numpy(), hi, atol=1e-5)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_a_batch_fuses_as_its_frames_one_by_one(model, backend):
    fuser = Fuser(model, FusionConfig(backend=backend, context_scale=0.25))
    pairs = frames(3) + frames(2, shape=(64, 80))  # two runs of one size each
    fused = fuser.fuse_batch([p[0] for p in pairs], [p[1] for p in pairs], batch_size=2)
    assert [f.shape for f in fused] == [p[1].shape for p in pairs]
    for (ir, vis), f in zip(pairs, fused):
        np.testing.assert_array_equal(f, fuser.fuse(ir, vis))


def test_a_batch_names_the_pair_that_cannot_be_fused(model):
    (ir, vis), = frames(1)
    with pytest.raises(FusionInputError, match="pair 1: .*differ in size"):
        Fuser(model).fuse_batch([ir, ir[:, :-1]], [vis, vis])
    with pytest.raises(FusionInputError, match="2 IR images but 1 visible"):
        Fuser(model).fuse_batch([ir, ir], [vis])


def test_a_streams_gradient_range_gives_both_backends_one_result(model):
    """With the node's GradientNormaliser, frame after frame."""
    fusers = {b: Fuser(model, FusionConfig(backend=b, context_scale=0.25))
              for b in ("numba", "torch")}
    norms = {b: GradientNormaliser("stable") for b in fusers}
    for ir, vis in frames(4):
        out = {b: f.fuse(ir, vis, gradient=norms[b]) for b, f in fusers.items()}
        assert max_abs_diff(out["numba"], out["torch"]) <= 1
    assert norms["numba"].range == pytest.approx(norms["torch"].range, rel=1e-5, abs=1e-6)


def test_a_device_this_machine_lacks_is_refused_when_the_fuser_is_built(model):
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        FusionConfig(backend="torch", device="gpu")
    with pytest.raises(ValueError, match="gpu_kernels must be one of"):
        FusionConfig(backend="torch", gpu_kernels="triton")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA device"):
            Fuser(model, FusionConfig(backend="torch", device="cuda"))


# -- on a GPU ------------------------------------------------------------------------------
def gpu(model, kernels_name, **kw):
    fuser = Fuser(model, FusionConfig(backend="torch", device="cuda", gpu_kernels=kernels_name,
                                      **kw))
    assert ("CuPy" in fuser.engine.pixel_kernels) == (kernels_name == "cupy"), fuser.engine
    return fuser


@cuda
@pytest.mark.parametrize("exact", [False, True])
def test_cuda_graph_equals_the_numpy_backend_and_the_eager_pass(model, kernels_name, exact):
    numpy_fuser = Fuser(model, FusionConfig(exact=exact))
    graph = gpu(model, kernels_name, exact=exact)
    eager = gpu(model, kernels_name, exact=exact, cuda_graph=False)
    for ir, vis in frames(3, shape=(240, 320)):
        want = numpy_fuser.fuse(ir, vis)
        assert max_abs_diff(graph.fuse(ir, vis), want) <= 1
        assert max_abs_diff(eager.fuse(ir, vis), want) <= 1
    assert graph.backend._graphs, "no graph was captured"


@cuda
def test_cuda_graph_keeps_channel_orders_grey_and_alpha(model, kernels_name):
    fuser, ref = gpu(model, kernels_name), Fuser(model)
    ir, vis = synthetic_pair(seed=5, shape=(128, 160))
    bgr = np.ascontiguousarray(vis[:, :, ::-1])
    grey = np.ascontiguousarray(vis[:, :, 1])
    rgba = np.dstack([vis, np.full(ir.shape, 9, np.uint8)])
    for _ in range(2):  # eager at a size's first frame, the graph from its second
        assert max_abs_diff(fuser.fuse(ir, bgr, vis_order="bgr"),
                            ref.fuse(ir, bgr, vis_order="bgr")) <= 1
        assert max_abs_diff(fuser.fuse(ir, grey), ref.fuse(ir, grey)) <= 1
        assert max_abs_diff(fuser.fuse(ir, rgba), ref.fuse(ir, vis)) <= 1


@cuda
def test_cuda_graph_follows_a_streams_gradient_range(model, kernels_name):
    fuser, ref = gpu(model, kernels_name), Fuser(model)
    norm_gpu, norm_cpu = GradientNormaliser("stable"), GradientNormaliser("stable")
    for ir, vis in frames(5, shape=(160, 224)):
        out = fuser.fuse(ir, vis, gradient=norm_gpu)
        assert max_abs_diff(out, ref.fuse(ir, vis, gradient=norm_cpu)) <= 1
    assert norm_gpu.range == pytest.approx(norm_cpu.range, rel=1e-5, abs=1e-6)


@cuda
def test_cuda_graph_batches_and_size_changes(model, kernels_name):
    fuser, ref = gpu(model, kernels_name), Fuser(model)
    pairs = frames(6, shape=(96, 128)) + frames(2, shape=(128, 96))
    for _ in range(2):
        fused = fuser.fuse_batch([p[0] for p in pairs], [p[1] for p in pairs], batch_size=3)
        for (ir, vis), f in zip(pairs, fused):
            assert max_abs_diff(f, ref.fuse(ir, vis)) <= 1
    fuser.backend.reset()
    assert not fuser.backend._graphs


@cuda
def test_cuda_graph_with_an_fp16_context_network(model, kernels_name):
    ir, vis = synthetic_pair(seed=2, shape=(128, 160))
    fp32 = Fuser(model).fuse(ir, vis)
    fuser = gpu(model, kernels_name, precision="fp16")
    for _ in range(3):
        assert max_abs_diff(fuser.fuse(ir, vis), fp32) <= 2
