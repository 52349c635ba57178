"""Exact mode reproduces the authors' outputs on all 48 reference pairs (needs ../shared)."""
from __future__ import annotations

import numpy as np
import pytest

from lutfuse_ros.core import Fuser, FusionConfig, load_model
from lutfuse_ros.core.imageio import read_ir, read_visible
from lutfuse_ros.core.model import official_model_path

from conftest import needs_torch, shared_path


@pytest.mark.parametrize("dataset", ["MSRS_test", "RoadScene_test"])
def test_exact_mode_matches_official_outputs(dataset):
    refs = sorted(shared_path("reference", "official-outputs", dataset).glob("*.png"))
    data = shared_path("data", "ivif", dataset)
    assert len(refs) == 24
    fuser = Fuser(load_model(official_model_path()), FusionConfig(exact=True))
    worst_within, worst_psnr = 1.0, np.inf
    for ref_path in refs:
        ref = read_visible(ref_path).astype(np.int16)
        out = fuser.fuse(read_ir(data / "ir" / ref_path.name),
                         read_visible(data / "vis" / ref_path.name)).astype(np.int16)
        diff = np.abs(out - ref)
        within = float((diff <= 1).mean())
        mse = float((diff.astype(np.float64) ** 2).mean())
        psnr = 10 * np.log10(255.0 ** 2 / mse) if mse else np.inf
        assert within >= 0.999, f"{ref_path.name}: only {within:.5f} of values within +-1"
        assert psnr >= 50.0, f"{ref_path.name}: PSNR {psnr:.1f} dB"
        worst_within, worst_psnr = min(worst_within, within), min(worst_psnr, psnr)
    print(f"{dataset}: worst within +-1 {worst_within:.6f}, worst PSNR {worst_psnr:.1f} dB")


@needs_torch
def test_torch_exact_matches_official_output():
    name = "00004N.png"
    ref = read_visible(shared_path("reference", "official-outputs", "MSRS_test", name))
    data = shared_path("data", "ivif", "MSRS_test")
    fuser = Fuser(load_model(official_model_path()), FusionConfig(exact=True, backend="torch"))
    out = fuser.fuse(read_ir(data / "ir" / name), read_visible(data / "vis" / name))
    assert np.abs(out.astype(np.int16) - ref).max() <= 1
