"""Stream preprocessing shared by the node and training: AGC, registration, gradient range."""
from __future__ import annotations

import numpy as np
import pytest

from lutfuse_ros.core import Fuser, load_model
from lutfuse_ros.core.model import official_model_path
from lutfuse_ros.core.preprocess import (
    GradientNormaliser,
    Preprocessor,
    Registration,
    RegistrationError,
    ThermalAGC,
)
from lutfuse_ros.core.synthetic import synthetic_pair

from conftest import needs_torch


def counts(seed: int, level: int = 20000, size=(48, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level + rng.normal(0, 300, size)).clip(0, 65535).astype(np.uint16)


# -- AGC -----------------------------------------------------------------------------------
def test_the_agc_warm_up_prepares_every_kernel_a_stream_calls():
    """The node warms the AGC up before its first frame; what it leaves out would compile (or
    load) on a live frame. In a fresh process, so that other tests' calls do not count."""
    import subprocess
    import sys

    code = ("from lutfuse_ros.core import agc_kernels as kernels\n"
            "from lutfuse_ros.core.preprocess import warm_up_agc\n"
            "warm_up_agc()\n"
            "names = ('count_histogram_u16', 'same_else_keep', 'plateau_window_table',\n"
            "         'blend_window_table', 'apply_table')\n"
            "print(' '.join(n for n in names if not getattr(kernels, n).signatures))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert run.stdout.strip() == "", f"not warmed up: {run.stdout.strip()}"


def test_percentile_agc_maps_16_bit_to_full_8_bit_range():
    out = ThermalAGC("percentile", smoothing=1.0)(counts(0))
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255


def test_agc_range_is_smoothed_over_time():
    agc = ThermalAGC("percentile", smoothing=0.2)
    agc(counts(0, 20000))
    lo0, hi0 = agc.range
    agc(counts(1, 30000))  # the scene warms by 10,000 counts in one frame
    lo1, _ = agc.range
    assert lo0 < lo1 < lo0 + 0.3 * 10000  # moved a fifth of the way, not all of it


def test_frozen_and_flat_frames_neither_crash_nor_poison_the_range():
    agc = ThermalAGC("percentile", smoothing=0.5)
    frame = counts(0)
    first = agc(frame)
    rng_before = agc.range
    for _ in range(10):  # flat-field correction: the same frame repeated
        np.testing.assert_array_equal(agc(frame.copy()), first)
    flat = np.full((48, 64), 31000, np.uint16)  # shutter closed: one value
    out = agc(flat)
    assert agc.range == rng_before and agc.frozen_frames == 11
    assert out.dtype == np.uint8


def test_a_flat_first_frame_gives_mid_grey_not_an_error():
    assert ThermalAGC("percentile")(np.full((8, 8), 5, np.uint16)).dtype == np.uint8


def test_fixed_and_equalize_modes_and_8_bit_pass_through():
    img = np.array([[1000, 2000], [3000, 4000]], np.uint16)
    np.testing.assert_array_equal(ThermalAGC("fixed", low=1000, high=4000)(img),
                                  [[0, 85], [170, 255]])
    assert ThermalAGC("equalize")(counts(0)).max() == 255
    ir8 = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert ThermalAGC("fixed", low=0, high=10)(ir8) is ir8


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="auto"), "agc mode must be one of"),
    (dict(mode="fixed", low=5, high=5), "high > low"),
    (dict(smoothing=0), "smoothing"),
    (dict(percentiles=(50, 10)), "percentiles"),
])
def test_agc_settings_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThermalAGC(**kwargs)


def test_agc_refuses_non_thermal_arrays():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        ThermalAGC()(np.zeros((4, 4), np.float32))


# -- registration --------------------------------------------------------------------------
def test_resize_crop_and_none_modes():
    ir = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    assert Registration("resize")(ir, (128, 96)).shape == (96, 128)
    assert Registration("none")(ir, (64, 48)) is ir
    with pytest.raises(RegistrationError, match="differ in size and registration mode is 'none'"):
        Registration("none")(ir, (128, 96))
    crop = Registration("crop_resize", crop=(8, 4, 32, 24))
    np.testing.assert_array_equal(crop(ir, (32, 24)), ir[4:28, 8:40])
    with pytest.raises(RegistrationError, match="exceeds"):
        Registration("crop_resize", crop=(40, 0, 32, 24))(ir, (32, 24))


def test_homography_shifts_thermal_into_the_rgb_frame():
    ir = np.zeros((48, 64), np.uint8)
    ir[10, 20] = 255
    h = [1, 0, 5, 0, 1, 3, 0, 0, 1]  # thermal (x, y) -> RGB (x + 5, y + 3)
    out = Registration("homography", homography=h)(ir, (64, 48))
    assert out[13, 25] == 255 and out[10, 20] == 0
    assert out[:3].max() == 0  # rows the thermal camera does not see are cold (0)


def test_calibration_yaml_and_size_check(tmp_path):
    path = tmp_path / "calib.yaml"
    path.write_text("mode: homography\nhomography: [2, 0, 0, 0, 2, 0, 0, 0, 1]\n"
                    "thermal_size: [32, 24]\n")
    reg = Registration.from_yaml(path)
    assert reg(np.full((24, 32), 9, np.uint8), (64, 48)).mean() > 8
    with pytest.raises(RegistrationError, match="calibrated for 32x24"):
        reg(np.zeros((48, 64), np.uint8), (64, 48))
    path.write_text("homography: [1, 2, 3]\n")
    with pytest.raises(RegistrationError, match=r"calib.yaml: homography mode needs 9"):
        Registration.from_yaml(path)
    path.write_text("homografy: []\n")
    with pytest.raises(RegistrationError, match="unknown keys"):
        Registration.from_yaml(path)
    with pytest.raises(RegistrationError, match="cannot read calibration file"):
        Registration.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(RegistrationError, match="singular"):
        Registration("homography", homography=[0] * 8 + [1])


# -- gradient normaliser -------------------------------------------------------------------
def test_per_image_range_is_the_authors_min_max():
    norm = GradientNormaliser("per_image")
    assert norm.update(np.array([0.1, 0.2]), np.array([1.0, 3.0])) == (0.1, 3.0)


def test_stable_range_starts_at_the_frame_range_and_then_moves_slowly():
    norm = GradientNormaliser("stable", smoothing=0.1)
    assert norm.update(np.zeros(4), np.full(4, 2.0)) == (0.0, 2.0)
    lo, hi = norm.update(np.zeros(4), np.full(4, 6.0))  # a bright edge enters
    assert hi == pytest.approx(2.4)
    norm.reset()
    assert norm.update(np.zeros(4), np.full(4, 6.0)) == (0.0, 6.0)


def test_stable_normaliser_fuses_a_single_image_like_the_authors(pair):
    ir, vis = pair
    fuser = Fuser()
    np.testing.assert_array_equal(fuser.fuse(ir, vis, gradient=GradientNormaliser("stable")),
                                  fuser.fuse(ir, vis))


def test_stable_normaliser_softens_the_jump_when_an_edge_enters():
    """A high-contrast block enters a dark scene from the left: with the per-image range the
    static right part of the frame jumps at once; the stable range spreads the change over
    frames (benchmarks/gradient_normaliser.py measures it on a real scene)."""
    ir, vis = synthetic_pair(seed=1, shape=(240, 320), night=True)
    # The authors' table leans on the gradient axis more than ours: the effect shows best.
    fuser = Fuser(load_model(official_model_path()))

    def largest_jump(norm):
        prev, change = None, []
        for x in range(0, 60, 4):
            v = vis.copy()
            v[100:140, :x] = ((np.arange(x) // 2) % 2 * 255).astype(np.uint8)[None, :, None]
            f = fuser.fuse(ir, v, gradient=norm).astype(int)
            if prev is not None:
                change.append(np.abs(f - prev)[:, 120:].mean())
            prev = f
        return max(change)

    per_image = largest_jump(GradientNormaliser("per_image"))
    assert per_image > 1.0  # the effect is real: > 1 grey level over the static region
    assert largest_jump(GradientNormaliser("stable")) < 0.5 * per_image


@needs_torch
def test_torch_backend_takes_the_same_gradient_range(pair):
    from lutfuse_ros.core import FusionConfig

    ir, vis = pair
    a = Fuser().fuse(ir, vis, gradient=GradientNormaliser("stable"))
    b = Fuser(config=FusionConfig(backend="torch")).fuse(ir, vis,
                                                        gradient=GradientNormaliser("stable"))
    assert np.abs(a.astype(int) - b).max() <= 1


def test_preprocessor_registers_16_bit_thermal_to_the_rgb_size():
    pre = Preprocessor()
    out = pre.thermal(counts(0, size=(40, 50)), rgb_size=(100, 80))
    assert out.shape == (80, 100) and out.dtype == np.uint8
    pre.reset()
    assert pre.agc.range is None and pre.gradient.range is None
