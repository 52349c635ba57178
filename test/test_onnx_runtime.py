"""The torch-free runtime: the context network as ONNX, run by ONNX Runtime or OpenCV DNN.

Its output equals the torch path's to 1 LSB; the runtime imports and fuses with torch
unavailable; models without ONNX, corrupt graphs and graphs of other weights are refused
with the way out named.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from lutfuse_ros.cli import main as lutfuse
from lutfuse_ros.core import Fuser, FusionConfig, ModelFormatError, load_model, save_model
from lutfuse_ros.core.imageio import match_pairs, read_ir, read_visible
from lutfuse_ros.core.model import official_model_path
from lutfuse_ros.core.onnx_context import OnnxContextNet, reference_context, resolve_engine
from lutfuse_ros.core.synthetic import synthetic_pair

from conftest import ROOT, needs_torch, shared_path

ENGINES = ("onnxruntime", "opencv")


def differ(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Largest difference in grey levels and the fraction of values that differ."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d > 0).mean())


def pairs(count_real: int = 2):
    out = [synthetic_pair(seed=s, shape=(120, 160)) for s in range(2)]
    root = ROOT.parent / "shared" / "data" / "ivif" / "MSRS_test"
    if root.exists():
        for _, ir_p, vis_p in match_pairs(root / "ir", root / "vis").pairs[:count_real]:
            out.append((read_ir(ir_p), read_visible(vis_p)))
    return out


@needs_torch
@pytest.mark.parametrize("model_path", [None, official_model_path()], ids=["ours", "authors"])
@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_onnx_engines_equal_the_torch_path_to_one_lsb(model_path, exact):
    model = load_model(model_path)
    reference = Fuser(model, FusionConfig(exact=exact, context_engine="torch"))
    torch_backend = Fuser(model, FusionConfig(exact=exact, backend="torch"))
    for engine in ENGINES:
        fuser = Fuser(model, FusionConfig(exact=exact, context_engine=engine))
        assert fuser.context_engine == engine == fuser.engine.context_engine
        for ir, vis in pairs():
            got = fuser.fuse(ir, vis)
            for want in (reference.fuse(ir, vis), torch_backend.fuse(ir, vis)):
                worst, share = differ(got, want)
                assert worst <= 1 and share < 0.01, (engine, worst, share)


@needs_torch
def test_auto_prefers_onnx_and_falls_back_to_torch():
    model = load_model()
    assert resolve_engine("auto", model) == "onnxruntime"
    bare = replace(model, context_onnx=None)
    assert resolve_engine("auto", bare) == "torch"
    with pytest.raises(ValueError, match="export-onnx MODEL --embed"):
        resolve_engine("opencv", bare)
    with pytest.raises(ValueError, match="torch backend"):
        FusionConfig(backend="torch", context_engine="onnxruntime")


TORCH_FREE = """
import sys
sys.modules["torch"] = None  # import torch now raises ImportError, as on a robot without it
import numpy as np
from lutfuse_ros.core import Fuser, FusionConfig
from lutfuse_ros.core.synthetic import synthetic_pair
from lutfuse_ros.stream.pipeline import FramePipeline  # the node's path, too
fuser = Fuser()
ir, vis = synthetic_pair(seed=5, shape=(120, 160))
np.save(sys.argv[1], fuser.fuse(ir, vis))
try:
    Fuser(config=FusionConfig(context_engine="torch"))
except ValueError as exc:
    print("refused:", exc)
print(fuser.engine)
"""


def test_runtime_fuses_without_torch(tmp_path):
    out = tmp_path / "fused.npy"
    res = subprocess.run([sys.executable, "-c", TORCH_FREE, str(out)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "context net on onnxruntime" in res.stdout
    assert "refused: context engine 'torch' needs the Python package torch" in res.stdout
    ir, vis = synthetic_pair(seed=5, shape=(120, 160))
    np.testing.assert_array_equal(np.load(out), Fuser().fuse(ir, vis))


def test_bad_or_stale_onnx_graphs_are_refused(tmp_path):
    model = load_model()
    for engine in ENGINES:
        with pytest.raises(ModelFormatError, match=f"does not load in {engine}"):
            Fuser(replace(model, context_onnx=b"not an onnx graph"),
                  FusionConfig(context_engine=engine))
    # the graph of one model in the file of another (edited weights, swapped graphs):
    # refused before it runs, and the way out named
    stale = replace(load_model(official_model_path()), context_onnx=model.context_onnx)
    save_model(stale, tmp_path / "stale.npz")
    for engine in ENGINES:
        with pytest.raises(ModelFormatError, match="does not compute its weights.*export-onnx"):
            Fuser(load_model(tmp_path / "stale.npz"), FusionConfig(context_engine=engine))


@needs_torch
def test_numpy_reference_of_the_context_net_equals_torch():
    import torch
    model = load_model()
    x = np.random.default_rng(1).uniform(0, 255, (1, 4, 9, 13)).astype(np.float32)
    with torch.inference_mode():
        want = model.build_context_net()(torch.from_numpy(x))[0, 0].numpy()
    np.testing.assert_allclose(reference_context(model, x), want, atol=1e-5)


@needs_torch
def test_export_onnx_writes_a_graph_for_other_runtimes(tmp_path, capsys):
    bare = tmp_path / "bare.npz"
    save_model(replace(load_model(), context_onnx=None), bare)
    assert lutfuse(["export-onnx", str(bare), "--out", str(tmp_path / "ctx.onnx"),
                    "--embed"]) == 0
    graph = (tmp_path / "ctx.onnx").read_bytes()
    assert load_model(bare).context_onnx == graph  # embedded, and the id did not change
    assert load_model(bare).model_id == load_model().model_id
    x = np.random.default_rng(0).uniform(0, 255, (1, 4, 30, 40)).astype(np.float32)
    net = load_model().build_context_net()
    import torch
    with torch.inference_mode():
        want = net(torch.from_numpy(x))[0, 0].numpy()
    np.testing.assert_allclose(OnnxContextNet(graph, "onnxruntime")(x), want, atol=1e-5)
    assert lutfuse(["export-onnx", str(tmp_path / "missing.npz")]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_shipped_models_carry_their_onnx_graph():
    for path in (None, official_model_path()):
        assert load_model(path).context_onnx is not None


@needs_torch
def test_real_pairs_match_when_the_data_is_here():
    root = shared_path("data", "ivif", "RoadScene_test")
    model = load_model()
    a = Fuser(model, FusionConfig(context_engine="onnxruntime"))
    b = Fuser(model, FusionConfig(context_engine="torch"))
    for _, ir_p, vis_p in match_pairs(root / "ir", root / "vis").pairs[:3]:
        ir, vis = read_ir(ir_p), read_visible(vis_p)
        assert differ(a.fuse(ir, vis), b.fuse(ir, vis))[0] <= 1
