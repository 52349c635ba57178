"""The context network without torch: an ONNX graph run by ONNX Runtime or OpenCV's DNN module.

A robot needs inference only, and torch on a Jetson means JetPack-specific wheels. The model
file can carry its context network as ONNX (``FusionModel.context_onnx``, written by
:func:`with_onnx` / ``lutfuse export-onnx --embed``); the lookup runs in the compiled numba
kernels either way, so the whole fast path needs numpy, OpenCV, numba and one of the engines
below, not torch.

Engines, by preference of ``"auto"``:

- ``onnxruntime``: fastest on the CPU here (and the ONNX Runtime GPU / TensorRT builds on a
  Jetson take the same graph);
- ``opencv``: OpenCV's DNN module, no dependency beyond OpenCV itself;
- ``torch``: the :class:`~.context_net.ContextNet` built from the weights.

Exporting needs torch and the ``onnx`` package (training machines), running does not.
"""
from __future__ import annotations

import importlib.util
import io
import warnings
from dataclasses import replace

import numpy as np

from .context_layout import HEAD_CONV, ContextNetConfig, conv_norm_layers
from .errors import ConfigError
from .model import FusionModel, ModelFormatError

CONTEXT_ENGINES = ("auto", "onnxruntime", "opencv", "torch")
INPUT_NAME, OUTPUT_NAME = "rgb_ir", "context"
OPSET = 17


def engine_available(engine: str) -> bool:
    """Whether the Python package an engine needs is importable (``opencv`` always is)."""
    module = {"onnxruntime": "onnxruntime", "opencv": "cv2", "torch": "torch"}[engine]
    return importlib.util.find_spec(module) is not None


def resolve_engine(requested: str, model: FusionModel) -> str:
    """The engine that will run: ``requested``, or for ``"auto"`` the first that can run this
    model here (onnxruntime, opencv when the model carries ONNX; else torch).

    Raises:
        ValueError: the request cannot be met, saying what is missing.

    Example:
        >>> from lutfuse_ros.core.model import load_model
        >>> resolve_engine("auto", load_model())   # the shipped model carries its graph
        'onnxruntime'
    """
    if requested not in CONTEXT_ENGINES:
        raise ConfigError(f"context engine must be one of {CONTEXT_ENGINES}, got {requested!r}")
    if requested == "auto":
        if model.context_onnx is not None:
            return "onnxruntime" if engine_available("onnxruntime") else "opencv"
        if engine_available("torch"):
            return "torch"
        raise ConfigError("this model file carries no ONNX context network and torch is not "
                         "installed: add one on a machine with torch (lutfuse export-onnx "
                         "MODEL --embed) or install torch")
    if requested != "torch" and model.context_onnx is None:
        raise ConfigError(f"context engine {requested!r} needs the model's ONNX context network,"
                         " which this model file lacks: lutfuse export-onnx MODEL --embed")
    if not engine_available(requested):
        package = {"onnxruntime": "onnxruntime", "opencv": "opencv-python-headless",
                   "torch": "torch"}[requested]
        raise ConfigError(f"context engine {requested!r} needs the Python package {package}, "
                         "which is not installed")
    return requested


class OnnxContextNet:
    """Runs a model's ONNX context network.

    Args:
        onnx_bytes: the graph (``FusionModel.context_onnx``).
        engine: ``"onnxruntime"`` or ``"opencv"``.
        threads: CPU threads (ONNX Runtime's intra-op threads; OpenCV's global setting is
            left alone).

    Shape:
        - Input: :math:`(1, 4, h, w)` float32 C-contiguous, channels (R, G, B, IR) in [0, 255].
        - Output: :math:`(h, w)` float32 in (0, 1).

    Raises:
        ModelFormatError: the bytes are not a graph the engine can load.
    """

    def __init__(self, onnx_bytes: bytes, engine: str = "onnxruntime", threads: int = 1) -> None:
        self.engine = engine
        try:
            if engine == "onnxruntime":
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = max(1, threads)
                options.inter_op_num_threads = 1
                options.log_severity_level = 3  # errors only: no warnings per session
                # ORT's workers spin after each run by default, stealing the cores the numba
                # kernels need next (measured: colour/gradient/lookup 5x slower on 2 cores).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = ort.InferenceSession(onnx_bytes, options,
                                                     providers=["CPUExecutionProvider"])
            elif engine == "opencv":
                import cv2

                self._net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_bytes, np.uint8))
            else:
                raise ConfigError(f"not an ONNX engine: {engine!r}")
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - each engine raises its own kinds
            raise ModelFormatError(f"the model's ONNX context network does not load in "
                                   f"{engine} ({type(exc).__name__}: {exc})") from None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.engine == "onnxruntime":
            out = self._session.run(None, {INPUT_NAME: x})[0]
        else:
            self._net.setInput(x)
            out = self._net.forward()
        return out[0, 0]


def reference_context(model: FusionModel, x: np.ndarray) -> np.ndarray:
    """The context network in plain numpy (slow; for checking graphs on small inputs).

    Args:
        x: :math:`(1, 4, h, w)` float32, (R, G, B, IR) in [0, 255].

    Returns:
        :math:`(h, w)` float64 in (0, 1).
    """
    cfg = ContextNetConfig(**model.context_config)
    st, slope = model.context_state, float(cfg.negative_slope)

    def conv3x3(a: np.ndarray, name: str) -> np.ndarray:
        w, b = st[f"{name}.weight"].astype(np.float64), st[f"{name}.bias"]
        h, wd = a.shape[1:]
        p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
        taps = np.stack([p[:, dy:dy + h, dx:dx + wd] for dy in range(3) for dx in range(3)], 1)
        return np.einsum("oik,ikhw->ohw", w.reshape(w.shape[0], w.shape[1], 9), taps) + \
            b[:, None, None]

    def act_norm(a: np.ndarray, name: str) -> np.ndarray:
        a = np.where(a >= 0, a, slope * a)
        mean, var = a.mean(axis=(1, 2), keepdims=True), a.var(axis=(1, 2), keepdims=True)
        return (a - mean) / np.sqrt(var + 1e-5) * st[f"{name}.weight"][:, None, None] + \
            st[f"{name}.bias"][:, None, None]

    (stem_conv, stem_norm), *blocks = conv_norm_layers(cfg)
    stem = act_norm(conv3x3(x[0].astype(np.float64), stem_conv), stem_norm)
    a = stem
    for conv, norm in blocks:
        a = act_norm(conv3x3(a, conv), norm)
    return 1.0 / (1.0 + np.exp(-conv3x3(stem + a, HEAD_CONV)[0]))


def check_graph(model: FusionModel, runner: OnnxContextNet) -> None:
    """Raise :class:`ModelFormatError` unless ``runner`` computes the model's weights (the
    graph could come from another model: files get edited, graphs swapped)."""
    x = np.random.default_rng(0).uniform(0, 255, (1, 4, 12, 16)).astype(np.float32)
    diff = float(np.abs(runner(x) - reference_context(model, x)).max())
    if not diff < 1e-4:
        raise ModelFormatError(
            f"the model's ONNX context network does not compute its weights (differs by "
            f"{diff:.3g}): re-export it with lutfuse export-onnx MODEL --embed")


def export_onnx(model: FusionModel) -> bytes:
    """The model's context network as an ONNX graph (opset 17, dynamic height and width).

    Needs torch and the ``onnx`` package. The graph is checked against the torch network on
    two sizes (max difference 1e-4) by ONNX Runtime or OpenCV before it is returned.
    """
    try:
        import onnx  # noqa: F401 - torch.onnx.export needs it
        import torch
    except ImportError as exc:
        raise ImportError(f"exporting to ONNX needs torch and onnx ({exc}); pip install "
                          "torch onnx") from None
    net = model.build_context_net("cpu")
    buf = io.BytesIO()
    sample = torch.rand(1, 4, 24, 32, generator=torch.Generator().manual_seed(0)) * 255
    dims = {2: "height", 3: "width"}
    # The legacy exporter: one static graph, no dynamo tracing dependencies. Its warnings
    # (shape checks traced as constants, InstanceNorm in eval mode) do not apply here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, sample, buf, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: dims,
                                                                    OUTPUT_NAME: dims},
                          opset_version=OPSET, dynamo=False)
    graph = buf.getvalue()
    engine = "onnxruntime" if engine_available("onnxruntime") else "opencv"
    runner = OnnxContextNet(graph, engine)
    for h, w in ((24, 32), (37, 53)):
        x = torch.rand(1, 4, h, w, generator=torch.Generator().manual_seed(h)) * 255
        with torch.inference_mode():
            want = net(x)[0, 0].numpy()
        got = runner(np.ascontiguousarray(x.numpy()))
        if not np.allclose(got, want, atol=1e-4):
            raise RuntimeError(f"ONNX export differs from torch by {np.abs(got - want).max()}")
    return graph


def with_onnx(model: FusionModel) -> FusionModel:
    """A copy of ``model`` carrying its context network as ONNX (see :func:`export_onnx`)."""
    return replace(model, context_onnx=export_onnx(model))
