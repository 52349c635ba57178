"""The model file: round trip, content id, conversion of the authors' release, bad files."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from lutfuse_ros.core import (
    FusionModel,
    ModelFormatError,
    convert_official,
    default_model_path,
    load_model,
    save_model,
)
from lutfuse_ros.core.context_net import ContextNet
from lutfuse_ros.core.model import official_model_path

from conftest import shared_path


def test_default_model_loads_with_id():
    model = load_model()
    assert model.lut.shape == (16, 16, 16, 16)
    assert model.model_id.startswith("sha256:")
    assert load_model(default_model_path()).model_id == model.model_id


def test_authors_model_ships_with_its_licence():
    model = load_model(official_model_path())
    assert "MIT" in model.metadata["licence"]
    assert official_model_path().with_name("LICENSE-LUT-Fuse").is_file()


def test_round_trip_keeps_arrays_and_id(tmp_path):
    model = load_model()
    path = save_model(model, tmp_path / "m.npz")
    again = load_model(path)
    assert again.model_id == model.model_id
    np.testing.assert_array_equal(again.lut, model.lut)
    for k, v in model.context_state.items():
        np.testing.assert_array_equal(again.context_state[k], v)


def test_id_changes_with_content():
    model = load_model()
    lut = model.lut.copy()
    lut[0, 0, 0, 0] += 1
    other = FusionModel(lut, model.context_state, model.context_config, {})
    assert other.model_id != model.model_id


def _official_like_files(tmp_path, lut_shape=(16, 16, 16, 16, 1)):
    """Files laid out as the authors release them, from a randomly initialised network."""
    net = ContextNet()
    rename = {"stem.": "input_layer.", "blocks.": "mid_layer.", "head.": "output_layer."}
    state = {}
    for k, v in net.state_dict().items():
        prefix = next(p for p in rename if k.startswith(p))
        state[rename[prefix] + k[len(prefix):]] = v
    torch.save(state, tmp_path / "ctx.pth")
    np.save(tmp_path / "lut.npy", np.random.default_rng(0).normal(size=lut_shape)
            .astype(np.float32))
    return tmp_path / "lut.npy", tmp_path / "ctx.pth"


def test_convert_official_layout(tmp_path):
    lut, ctx = _official_like_files(tmp_path)
    model = convert_official(lut, ctx)
    np.testing.assert_array_equal(model.lut, np.load(lut)[..., 0])
    assert set(model.context_state) == set(ContextNet().state_dict())


def test_convert_the_authors_release_matches_shipped_model(tmp_path):
    ckpt = shared_path("reference", "official-ckpt")
    model = convert_official(ckpt / "fine_tuned_lut.npy", ckpt / "generator_context.pth")
    assert model.model_id == load_model(official_model_path()).model_id


def test_convert_rejects_wrong_lut_shape(tmp_path):
    lut, ctx = _official_like_files(tmp_path, lut_shape=(8, 8, 8, 8))
    with pytest.raises(ModelFormatError, match=r"lut\.npy.*shape"):
        convert_official(lut, ctx)


def test_convert_rejects_corrupt_pth(tmp_path):
    lut, ctx = _official_like_files(tmp_path)
    ctx.write_bytes(b"not a torch file")
    with pytest.raises(ModelFormatError, match="ctx.pth"):
        convert_official(lut, ctx)


def _write_npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("case, message", [
    ("missing", "no such model file"),
    ("garbage", "not a model file"),
    ("truncated", "not a readable model file"),
    ("pickled", "object array, which is never unpickled"),
    ("version", "format_version"),
    ("shape", "LUT must have shape"),
    ("nan", "NaN"),
    ("weights", "context weights do not match"),
])
def test_bad_model_files_name_file_and_problem(tmp_path, case, message):
    good = save_model(load_model(), tmp_path / "good.npz")
    path = tmp_path / f"{case}.npz"
    with np.load(good, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if case == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:5000])
    elif case == "pickled":  # an object array would need unpickling: must be refused
        arrays["metadata_json"] = np.array([{"format_version": 1}], dtype=object)
        _write_npz(path, **arrays)
    elif case == "version":
        arrays["metadata_json"] = np.frombuffer(b'{"format_version": 99}', np.uint8)
        _write_npz(path, **arrays)
    elif case == "shape":
        arrays["lut"] = arrays["lut"][:8]
        _write_npz(path, **arrays)
    elif case == "nan":
        arrays["lut"] = arrays["lut"].copy()
        arrays["lut"][1, 2, 3, 4] = np.nan
        _write_npz(path, **arrays)
    elif case == "weights":
        del arrays["context/head.1.weight"]
        _write_npz(path, **arrays)
    with pytest.raises(ModelFormatError, match=message) as err:
        load_model(path)
    assert path.name in str(err.value)
    assert "allow_pickle" not in str(err.value)  # never an invitation to unpickle


def test_model_file_is_a_plain_zip_of_npy(tmp_path):
    path = save_model(load_model(), tmp_path / "m.npz")
    names = zipfile.ZipFile(path).namelist()
    assert "lut.npy" in names and "metadata_json.npy" in names
