"""16-bit thermal to 8-bit: fixed range, percentile AGC, equalisation, degenerate frames."""
import numpy as np
import pytest

from lutfuse_ros.core.preprocess import ThermalAGC, thermal_to_8bit
from lutfuse_ros.core.thermal import AGC_MODES, range_table, read_raw_thermal

from conftest import shared_path


def ramp16():
    return np.linspace(20000, 30000, 64 * 80).reshape(64, 80).astype(np.uint16)


def test_fixed_range_maps_ends_to_0_and_255():
    out = thermal_to_8bit(ramp16(), "fixed", low=20000, high=30000)
    assert out.dtype == np.uint8 and out[0, 0] == 0 and out[-1, -1] == 255


def test_percentile_range_ignores_stuck_and_hot_pixels():
    img = ramp16()
    img[0, :5] = 65535   # stuck
    img[1, :3] = 40000   # a hot spot, far outside the scene
    out = thermal_to_8bit(img, "percentile")
    clean = thermal_to_8bit(ramp16(), "percentile")
    assert out.max() == 255 and np.abs(out[2:].astype(int) - clean[2:]).max() <= 2


def test_equalize_spreads_levels():
    out = thermal_to_8bit(ramp16(), "equalize")
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) > 200


@pytest.mark.parametrize("mode", ["percentile", "plateau", "equalize"])
def test_flat_frame_is_mid_grey_not_a_crash(mode):
    flat = np.full((32, 32), 27000, np.uint16)
    np.testing.assert_array_equal(thermal_to_8bit(flat, mode), 128)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="uint8 or uint16"):
        thermal_to_8bit(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="needs high > low"):
        thermal_to_8bit(ramp16(), "fixed", low=5, high=5)
    with pytest.raises(ValueError, match="mode must be one of"):
        thermal_to_8bit(ramp16(), "gamma")
    with pytest.raises(ValueError, match="finite"):
        range_table(0, float("nan"))


@pytest.mark.parametrize("mode", AGC_MODES)
def test_one_frame_and_a_stream_map_real_frames_alike(mode):
    """A mode name means one mapping: ``thermal_to_8bit`` on a frame gives what a stream
    following every frame (smoothing 1) gives for it, on real raw frames of three cameras
    (the frames that leave a stream's mapping as it was, flat or repeated, aside)."""
    root = shared_path("data", "thermal16")
    stream = ThermalAGC(mode, smoothing=1.0)
    compared = 0
    for name in ("thermitage", "flirone", "arcticseals"):
        stream.reset()
        for path in sorted((root / name).glob("**/*.png"))[:8]:
            counts = read_raw_thermal(path)
            if counts.dtype != np.uint16:
                continue
            frozen = stream.frozen_frames
            streamed = stream(counts)
            if stream.frozen_frames == frozen:
                np.testing.assert_array_equal(thermal_to_8bit(counts, mode), streamed,
                                              err_msg=f"{mode}: {path}")
                compared += 1
    assert compared >= 12


# -- raw counts as cameras write them -----------------------------------------------------
def facade_counts(seed: int = 0, size=(120, 160)) -> np.ndarray:
    """A night facade as a 14-bit camera sees it: ~700 counts around 3900, texture, noise."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    smooth = cv2.resize(rng.uniform(0, 1, (6, 8)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    return np.clip(3500 + 600 * smooth + rng.normal(0, 4, size), 0, 16383).astype(np.uint16)


@pytest.mark.parametrize("words", ["low-aligned", "high-aligned", "byte-swapped"])
def test_14_bit_frames_read_as_the_same_counts(words, tmp_path):
    import cv2

    from lutfuse_ros.core.thermal import read_raw_thermal

    counts = facade_counts()
    stored = {"low-aligned": counts, "high-aligned": counts << 2,
              "byte-swapped": counts.byteswap()}[words]
    cv2.imwrite(str(tmp_path / "frame.png"), stored)
    np.testing.assert_array_equal(read_raw_thermal(tmp_path / "frame.png"), counts)
    explicit = {"low-aligned": {"bits": 14}, "high-aligned": {"bits": 14},
                "byte-swapped": {"byte_order": "swapped"}}[words]
    np.testing.assert_array_equal(read_raw_thermal(tmp_path / "frame.png", **explicit), counts)


def test_unreadable_and_colour_files_are_named_errors(tmp_path):
    import cv2

    from lutfuse_ros.core.thermal import ThermalReadError, read_raw_thermal

    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ThermalReadError, match="cannot read"):
        read_raw_thermal(tmp_path / "cut.png")
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ThermalReadError, match="single-channel"):
        read_raw_thermal(tmp_path / "rgb.png")


# -- the AGC modes on a stream --------------------------------------------------------------
STREAM_MODES = ["percentile", "plateau", "equalize"]


@pytest.mark.parametrize("mode", STREAM_MODES)
def test_a_dead_and_a_hot_pixel_change_the_rest_by_at_most_a_level(mode):
    from lutfuse_ros.core.preprocess import ThermalAGC

    frame = facade_counts()
    stuck = frame.copy()
    stuck[10, 10], stuck[50, 70] = 0, 65535
    a = ThermalAGC(mode, smoothing=1.0)(frame).astype(int)
    b = ThermalAGC(mode, smoothing=1.0)(stuck).astype(int)
    rest = np.ones(frame.shape, bool)
    rest[10, 10] = rest[50, 70] = False
    assert np.abs(a - b)[rest].max() <= 1


@pytest.mark.parametrize("mode, levels", [("plateau", 6.0), ("percentile", 6.0)])
def test_a_hot_object_walking_in_leaves_the_background_within_a_few_levels(mode, levels):
    # The classic AGC failure: a person walks close, the 99th percentile jumps to them and the
    # rest of the scene goes dark (the old per-frame percentile stretch: ~70 levels here).
    import cv2

    from lutfuse_ros.core.preprocess import ThermalAGC

    frame = facade_counts()
    agc = ThermalAGC(mode)  # the node's smoothing
    for _ in range(20):
        before = agc(frame).astype(float)
    mask = np.zeros(frame.shape, np.uint8)
    cv2.ellipse(mask, (80, 60), (14, 22), 0, 0, 360, 1, -1)  # ~5 % of the view
    hot = frame.copy()
    hot[mask > 0] = 5200 + (frame[mask > 0] - 3800) // 8  # warmer than all, little texture
    for _ in range(20):
        after = agc(hot).astype(float)
    background = cv2.dilate(mask, np.ones((5, 5), np.uint8)) == 0
    assert np.abs(after - before)[background].mean() <= levels
    assert after[mask > 0].mean() > 240  # and the person is the brightest thing in view


@pytest.mark.parametrize("mode", STREAM_MODES)
def test_a_flat_frame_keeps_the_previous_mapping(mode):
    # Two streams, one of which sees a flat-field-correction frame: afterwards they map alike.
    from lutfuse_ros.core.preprocess import ThermalAGC

    seen, unseen = ThermalAGC(mode, smoothing=0.5), ThermalAGC(mode, smoothing=0.5)
    for seed in range(4):
        seen(facade_counts(seed)), unseen(facade_counts(seed))
    ffc = np.full((120, 160), 3700, np.uint16)  # shutter closed: one value
    assert len(np.unique(seen(ffc))) == 1 and seen.frozen_frames == 1
    assert seen.range == unseen.range
    np.testing.assert_array_equal(seen(facade_counts(9)), unseen(facade_counts(9)))


@pytest.mark.parametrize("mode", ["percentile", "plateau"])
def test_gain_limit_keeps_a_flat_scene_flat(mode):
    from lutfuse_ros.core.preprocess import ThermalAGC

    rng = np.random.default_rng(1)
    flat = (3000 + rng.normal(0, 3, (64, 80))).clip(0, 65535).astype(np.uint16)  # noise only
    out = ThermalAGC(mode, max_gain=2.0, smoothing=1.0)(flat).astype(float)
    span = float(flat.max()) - float(flat.min())
    assert np.ptp(out) <= 2.0 * span + 1
    assert out.std() <= 2.0 * flat.std() + 0.5
    assert abs(out.mean() - 128) < 20  # centred, not crushed to black


@pytest.mark.parametrize("mode", AGC_MODES)
def test_every_mode_maps_a_scene_to_8_bits(mode):
    from lutfuse_ros.core.preprocess import ThermalAGC

    frame = facade_counts()
    out = ThermalAGC(mode, low=3500, high=4100)(frame)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.ptp(out) > 150  # uses the grey range on a normal scene


def test_the_node_s_compiled_plateau_table_equals_the_numpy_reference():
    """ThermalAGC runs the plateau maths as one compiled call (kernels); core.thermal keeps
    the readable numpy version. Same histogram, same table, to the last bit: a warm scene,
    a hot object (tails compressed), a quantised camera (gaps between counts), two counts,
    stuck pixels, and the real raw frames when ../shared is present."""
    import cv2

    from lutfuse_ros.core import agc_kernels as kernels
    from lutfuse_ros.core.thermal import (
        TAIL_FENCE,
        TAIL_LARGEST,
        TAIL_SHARE,
        count_histogram,
        occupied_span,
        plateau_table,
        table_from_window,
    )

    from conftest import SHARED

    rng = np.random.default_rng(3)
    scene = (rng.normal(20000, 300, (120, 160)) + np.linspace(0, 900, 160)).astype(np.uint16)
    hot = scene.copy()
    hot[40:60, 50:80] = 29000
    quantised = (scene // 64 * 64).astype(np.uint16)
    two = np.where(rng.random((40, 40)) < 0.3, 9000, 9001).astype(np.uint16)
    stuck = scene.copy()
    stuck[::7, ::5] = 65535
    stuck[3, ::3] = 0
    frames = [scene, hot, quantised, two, stuck]
    for path in sorted((SHARED / "data" / "thermal16").glob("**/*.png"))[:20]:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is not None and img.dtype == np.uint16 and img.ndim == 2:
            frames.append(img)
    hist = np.zeros(65536, np.int64)
    for img in frames:
        first, last = kernels.count_histogram_u16(img, 2, hist)
        np.testing.assert_array_equal(hist, count_histogram(img))
        assert (first, last) == occupied_span(hist)
        for plateau, max_gain in ((1.0, 1.0), (0.5, 2.0), (3.0, 0.25), (1.0, np.inf)):
            compiled = table_from_window(
                kernels.plateau_window_table(hist[first:last + 1], plateau, max_gain,
                                             TAIL_FENCE, TAIL_SHARE, TAIL_LARGEST), first)
            np.testing.assert_array_equal(compiled, plateau_table(hist, plateau, max_gain))


def test_the_node_s_compiled_table_smoothing_equals_the_numpy_reference():
    """ThermalAGC smooths each frame's table into its running one, makes the uint8 table and
    finds the mapped count range in one compiled pass; core.thermal's blend_table and
    table_span say what that is. Bit-equal over a drifting sequence, from the first frame."""
    from lutfuse_ros.core import agc_kernels as kernels
    from lutfuse_ros.core.thermal import blend_table, table_from_window, table_span

    rng = np.random.default_rng(5)
    running_ref, running = None, np.empty(65536, np.float32)
    lut = np.empty(65536, np.uint8)
    for k in range(12):
        first = int(rng.integers(1000, 40000))
        window = np.sort(rng.uniform(0, 255, int(rng.integers(2, 5000)))).astype(np.float32)
        if k == 5:
            first, window = 0, np.full(1, 127.5, np.float32)  # a flat frame's table
        weight = 1.0 if k == 0 else 0.1
        running_ref = blend_table(running_ref, table_from_window(window, first), weight)
        span = kernels.blend_window_table(running, window, first, weight, k == 0, lut)
        np.testing.assert_array_equal(running, running_ref)
        np.testing.assert_array_equal(lut, (running_ref + 0.5).astype(np.uint8))
        assert span == table_span(running_ref)


def test_a_repeated_frame_is_recognised_and_a_new_one_kept():
    from lutfuse_ros.core import agc_kernels as kernels

    frame = np.random.default_rng(0).integers(0, 65535, (48, 64)).astype(np.uint16)
    kept = frame.copy()
    assert kernels.same_else_keep(frame, kept)
    moved = frame.copy()
    moved[47, 63] += 1  # the last pixel: read to the end
    assert not kernels.same_else_keep(moved, kept)
    np.testing.assert_array_equal(kept, moved)


def test_thermal_files_are_read_as_8_bit_with_16_bit_counts_through_the_agc(tmp_path):
    import cv2

    from lutfuse_ros.core.imageio import read_ir, read_thermal
    from lutfuse_ros.core.preprocess import ThermalAGC
    from lutfuse_ros.core.thermal import to_counts

    counts = ramp16() >> 2 << 2  # 14-bit counts high-aligned in 16-bit words, as cameras write
    cv2.imwrite(str(tmp_path / "raw.png"), counts)
    expected = ThermalAGC(smoothing=1.0)(to_counts(counts))
    assert np.array_equal(read_thermal(tmp_path / "raw.png", ThermalAGC(smoothing=1.0)),
                          expected)
    grey = np.arange(64 * 80, dtype=np.uint8).reshape(64, 80)
    cv2.imwrite(str(tmp_path / "ir8.png"), grey)
    cv2.imwrite(str(tmp_path / "ir8_colour.png"), np.dstack([grey] * 3))
    for name in ("ir8.png", "ir8_colour.png"):  # 8-bit files pass as they are, colour as grey
        assert np.array_equal(read_thermal(tmp_path / name, ThermalAGC()), grey)
        assert np.array_equal(read_ir(tmp_path / name), grey)
    with pytest.raises(ValueError, match="raw.png: IR must be 8-bit, got uint16"):
        read_ir(tmp_path / "raw.png")  # the fusion commands take 8-bit IR only
    cv2.imwrite(str(tmp_path / "float.tiff"), ramp16().astype(np.float32))
    with pytest.raises(ValueError, match="float.tiff: thermal must be 8- or 16-bit"):
        read_thermal(tmp_path / "float.tiff", ThermalAGC())
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        read_thermal(tmp_path / "broken.png", ThermalAGC())
