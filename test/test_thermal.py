"""16-bit thermal to 8-bit: fixed range, percentile AGC, equalisation, degenerate frames."""
import numpy as np
import pytest

from lutfuse_ros.core.thermal import agc_range, apply_range, equalize, thermal_to_8bit


def ramp16():
    return np.linspace(20000, 30000, 64 * 80).reshape(64, 80).astype(np.uint16)


def test_fixed_range_maps_ends_to_0_and_255():
    out = thermal_to_8bit(ramp16(), "fixed", low=20000, high=30000)
    assert out.dtype == np.uint8 and out[0, 0] == 0 and out[-1, -1] == 255


def test_percentile_range_ignores_hot_outliers():
    img = ramp16()
    img[0, :5] = 65535
    lo, hi = agc_range(img, (1, 99), subsample=1)
    assert 20000 <= lo < hi < 30100
    assert thermal_to_8bit(img).max() == 255


def test_equalize_spreads_levels():
    out = equalize(ramp16())
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 200


@pytest.mark.parametrize("mode", ["percentile", "equalize"])
def test_flat_frame_is_mid_grey_not_a_crash(mode):
    flat = np.full((32, 32), 27000, np.uint16)
    np.testing.assert_array_equal(thermal_to_8bit(flat, mode), 128)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        thermal_to_8bit(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="needs low and high"):
        thermal_to_8bit(ramp16(), "fixed")
    with pytest.raises(ValueError, match="mode must be one of"):
        thermal_to_8bit(ramp16(), "gamma")
    with pytest.raises(ValueError, match="finite"):
        apply_range(ramp16(), 0, float("nan"))
