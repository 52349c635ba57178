"""Metrics: reproduce the literature evaluator's values (ivif-anchors) and basic properties."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lutfuse_ros.core import metrics as M

from conftest import shared_path


def test_every_anchor_row_is_reproduced():
    root = shared_path("ivif-anchors")
    ref = json.loads((root / "metrics-reference.json").read_text())
    worst = {m: 0.0 for m in M.METRICS}
    for row in ref["rows"]:
        img = row["image"]
        got = M.evaluate(M.read_gray(root / "fused" / row["method"] / img),
                         M.read_gray(root / "inputs" / "ir" / img),
                         M.read_gray(root / "inputs" / "vi" / img))
        for m in M.METRICS:
            want = row[m]
            if want is None or math.isnan(want):  # JSON null: NaN in the evaluator (F == A)
                assert math.isnan(got[m]), f"{row['method']}/{img} {m}: expected NaN"
                continue
            rel = abs(got[m] - want) / max(abs(want), 1e-12)
            assert rel <= 1e-4, f"{row['method']}/{img} {m}: {got[m]} vs {want}"
            worst[m] = max(worst[m], rel)
    print("worst relative error per metric:", worst)


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64)).astype(np.float32)
    b = rng.integers(0, 256, (64, 64)).astype(np.float32)
    return a, b


def test_constant_image_has_zero_entropy_sd_and_gradient():
    f = np.full((32, 32), 77, np.float32)
    assert M.entropy(f) == 0 and M.std_dev(f) == 0
    assert M.spatial_frequency(f) == 0 and M.average_gradient(f) == 0


def test_copying_a_source_is_what_mi_and_ssim_reward(images):
    a, b = images
    copy, average = M.evaluate(a, a, b), M.evaluate((a + b) / 2, a, b)
    assert copy["MI"] > average["MI"]
    assert math.isnan(copy["SCD"])  # F - A is constant: no correlation defined


def test_mutual_information_of_independent_images_is_small():
    rng = np.random.default_rng(2)
    a, b = (rng.integers(0, 16, (256, 256)).astype(np.float32) for _ in range(2))
    assert M._mutual_information(a, a) == pytest.approx(np.log(16), rel=1e-2)  # nats
    assert M._mutual_information(a, b) < 0.01


def test_shape_mismatch_is_refused(images):
    a, b = images
    with pytest.raises(ValueError, match="differ in shape"):
        M.evaluate(a, b[:10], b)


def test_to_gray_matches_reading_the_png(tmp_path):
    from lutfuse_ros.core.imageio import write_image
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_image(tmp_path / "x.png", rgb)
    np.testing.assert_array_equal(M.to_gray(rgb), M.read_gray(tmp_path / "x.png"))


def test_detail_kept_rewards_visible_texture_on_a_brighter_thermal_base():
    """A hand-built scene: warm asphalt (IR 180) under dark road with bright lane dashes
    (visible 40 / 120). The Max rule shows flat asphalt: nothing kept (0). Carrying the
    visible contrast onto the thermal base keeps all of it (1). Where the visible image is
    the brighter one, or the region is too small, there is nothing to score (NaN)."""
    h, w = 64, 96
    vis = np.full((h, w), 40.0, np.float32)
    for x in range(4, w, 16):
        vis[20:44, x:x + 6] = 120.0  # the dashes
    ir = np.full((h, w), 180.0, np.float32)
    max_rule = np.maximum(ir, vis)
    carried = ir + 0.5 * (vis - vis.mean())
    assert M.detail_kept(max_rule, ir, vis) == 0.0
    assert M.detail_kept(carried, ir, vis) == pytest.approx(1.0)
    assert 0.0 < M.detail_kept(0.5 * (ir + vis), ir, vis) <= 1.0  # the Average keeps some
    assert math.isnan(M.detail_kept(vis, vis - 30.0, vis))  # visible brighter everywhere
    assert math.isnan(M.detail_kept(carried[:8, :8], ir[:8, :8], vis[:8, :8]))  # < 200 px
    assert M.DETAIL not in M.TABLE_METRICS  # its own column (NaN-aware means)
