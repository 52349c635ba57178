"""The forward pass: backends agree, colour orders, grey input, bad inputs, buffers."""
from __future__ import annotations

import numpy as np
import pytest

from lutfuse_ros.core import Fuser, FusionConfig, FusionInputError, FusionModel, load_model

from conftest import needs_torch


@pytest.fixture(scope="module")
def model():
    return load_model()


def max_abs_diff(a, b):
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@needs_torch
@pytest.mark.parametrize("exact, scale", [(True, 1.0), (False, 0.5), (False, 0.25)])
def test_numpy_and_torch_backends_agree_to_one_lsb(model, pair, exact, scale):
    ir, vis = pair
    a = Fuser(model, FusionConfig(exact=exact, context_scale=scale)).fuse(ir, vis)
    b = Fuser(model, FusionConfig(exact=exact, context_scale=scale, backend="torch")).fuse(ir, vis)
    assert a.shape == vis.shape and a.dtype == np.uint8
    assert max_abs_diff(a, b) <= 1


def test_bgr_in_gives_bgr_out(model, pair):
    ir, vis = pair
    fuser = Fuser(model)
    rgb_out = fuser.fuse(ir, vis)
    bgr_out = fuser.fuse(ir, np.ascontiguousarray(vis[:, :, ::-1]), vis_order="bgr")
    assert max_abs_diff(rgb_out, bgr_out[:, :, ::-1]) <= 1


def test_alpha_channel_is_ignored(model, pair):
    ir, vis = pair
    rgba = np.dstack([vis, np.full(ir.shape, 7, np.uint8)])
    fuser = Fuser(model)
    np.testing.assert_array_equal(fuser.fuse(ir, rgba), fuser.fuse(ir, vis))


@needs_torch
def test_grey_visible_gives_grey_output(model, pair):
    ir, vis = pair
    grey = vis.mean(axis=2).astype(np.uint8)
    for backend in ("numba", "torch"):
        out = Fuser(model, FusionConfig(backend=backend)).fuse(ir, grey)
        assert out.shape == grey.shape


@needs_torch
def test_identity_table_returns_the_visible_image(model, pair):
    """A table whose value is the luma node itself leaves the visible image unchanged."""
    ir, vis = pair
    nodes = np.arange(16, dtype=np.float32) * 16 / 255  # value at each node of the y axis
    lut = np.broadcast_to(nodes[:, None, None, None], (16,) * 4).astype(np.float32)
    identity = FusionModel(lut, model.context_state, model.context_config, {})
    out = Fuser(identity).fuse(ir, vis)
    # exact below the top node (240/255); above it the table is flat, as in the authors' code
    low = vis.max(axis=2) < 200
    assert max_abs_diff(out[low], vis[low]) <= 1


def test_hot_target_in_the_dark_shows_in_the_fused_image(model):
    ir = np.full((64, 64), 40, np.uint8)
    ir[20:40, 20:40] = 250
    vis = np.full((64, 64, 3), 10, np.uint8)
    out = Fuser(model, FusionConfig(exact=True)).fuse(ir, vis).mean(axis=2)
    assert out[25:35, 25:35].mean() > out[:10, :10].mean() + 50


def test_output_buffer_is_filled_in_place(model, pair):
    ir, vis = pair
    fuser = Fuser(model)
    out = np.zeros_like(vis)
    assert fuser.fuse(ir, vis, out=out) is out
    np.testing.assert_array_equal(out, fuser.fuse(ir, vis))


def test_read_only_inputs_fuse_like_writable_ones_with_the_same_kernels(model, pair):
    """Views of a received message's bytes are read-only; the core copies them before its
    kernels, so numba never compiles a second, read-only variant at a stream's first frame."""
    from numba import types

    from lutfuse_ros.core import agc_kernels, fusion_kernels
    from lutfuse_ros.core.preprocess import ThermalAGC

    ir, vis = pair
    fuser = Fuser(model)
    expected = fuser.fuse(ir, vis)
    ir_view, vis_view = ir.copy(), vis.copy()
    ir_view.flags.writeable = vis_view.flags.writeable = False
    np.testing.assert_array_equal(fuser.fuse(ir_view, vis_view), expected)
    counts = (ir.astype(np.uint16) * 16 + 3000)
    counts_view = counts.copy()
    counts_view.flags.writeable = False
    np.testing.assert_array_equal(ThermalAGC()(counts_view), ThermalAGC()(counts))
    for kernel in (fusion_kernels.fuse_lookup, fusion_kernels.luma_from_rgb,
                   fusion_kernels.box_downsample_rgb_ir, agc_kernels.count_histogram_u16,
                   agc_kernels.apply_table):
        assert kernel.signatures, kernel
        read_only = [sig for sig in kernel.signatures
                     if any(isinstance(arg, types.Array) and not arg.mutable for arg in sig)]
        assert not read_only, f"{kernel.__name__} compiled for read-only arrays: {read_only}"


def test_stage_timings_are_reported(model, pair):
    timings = {}
    Fuser(model).fuse(*pair, timings=timings)
    assert {"colour", "gradient", "context", "lookup+to_rgb"} <= set(timings)


@pytest.mark.parametrize("ir, vis, message", [
    (np.zeros((8, 8), np.uint16), np.zeros((8, 8, 3), np.uint8), "ir must be uint8"),
    (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), "vis must be uint8"),
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "single-channel"),
    (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 2), np.uint8), r"\(H, W, 3\|4\)"),
    (np.zeros((8, 9), np.uint8), np.zeros((8, 8, 3), np.uint8), "differ in size"),
    (np.zeros((2, 2), np.uint8), np.zeros((2, 2, 3), np.uint8), "at least 4x4"),
    ([[0]], np.zeros((8, 8, 3), np.uint8), "numpy array"),
])
def test_bad_inputs_raise_named_errors(model, ir, vis, message):
    with pytest.raises(FusionInputError, match=message):
        Fuser(model).fuse(ir, vis)


def test_frame_too_small_for_context_scale(model):
    ir, vis = np.zeros((16, 16), np.uint8), np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(FusionInputError, match="too small for context_scale"):
        Fuser(model, FusionConfig(context_scale=0.125)).fuse(ir, vis)


@pytest.mark.parametrize("kwargs, message", [
    ({"context_scale": 0.3}, "1/k"), ({"context_scale": 0.0}, r"\(0, 1\]"),
    ({"backend": "tensorrt"}, "backend"), ({"device": "cuda"}, "numba backend"),
    ({"threads": -1}, "threads"), ({"precision": "int8"}, "precision"),
    ({"precision": "fp16"}, "torch backend"), ({"context_engine": "tensorrt"}, "context_engine"),
])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FusionConfig(**kwargs)


def test_the_old_backend_name_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="'numpy' is now called 'numba'"):
        config = FusionConfig(backend="numpy")
    assert config == FusionConfig(backend="numba")


def test_bad_vis_order(model, pair):
    with pytest.raises(FusionInputError, match="vis_order"):
        Fuser(model).fuse(*pair, vis_order="yuv")


@needs_torch
def test_fp16_context_stays_within_two_grey_levels_of_fp32(model, pair):
    """fp16 is meant for GPUs; the maths (and so the quality) is the same on the CPU."""
    ir, vis = pair
    fp32 = Fuser(model, FusionConfig(backend="torch")).fuse(ir, vis)
    fuser = Fuser(model, FusionConfig(backend="torch", precision="fp16"))
    assert fuser.engine.precision == "fp16" and "fp16 context" in str(fuser.engine)
    assert max_abs_diff(fuser.fuse(ir, vis), fp32) <= 2
