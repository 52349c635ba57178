"""The fusion model file: one ``.npz`` that holds everything needed to fuse.

Contents (numpy ``.npz``, loaded with ``allow_pickle=False``, so no code can hide in it):

- ``lut``: float32 :math:`(16, 16, 16, 16)`, axis order ``[y_visible, gradient, context, ir]``,
  one fused luma value per node (nodes at 0, 16, ..., 240 on the 0..255 scale).
- ``context/<name>``: float32 tensors of the context network's state dict.
- ``metadata_json``: uint8 bytes of a UTF-8 JSON object: ``format_version``, ``context_net``
  (architecture), ``input_scaling``, ``provenance``, ``licence``, free-form ``card``.

The model id is a content hash of the arrays and the architecture (not of the free-form
metadata), so two files that fuse identically share an id.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .context_layout import ContextNetConfig, context_state_shapes
from .errors import LutfuseError

FORMAT_VERSION = 1
LUT_NODES = 16  # nodes per axis of the 4-D table
LUT_SHAPE = (LUT_NODES,) * 4
LUT_SCALE = 255.0 / LUT_NODES  # value in [0, 1] -> table coordinate in [0, 15.94]
INPUT_SCALING = {
    "luma": "BT.601 full-range Y of the visible image, in [0, 1]",
    "gradient": "Sobel magnitude of Y, normalised to [0, 1] (per image in exact mode)",
    "context": "ContextNet output in (0, 1); ContextNet input is (R, G, B, IR) in [0, 255]",
    "ir": "infrared intensity in [0, 1]",
    "lut_coordinate": "v * 255 / 16, upper neighbour index clamped to 15",
}
DEFAULT_MODEL_RESOURCE = "lutfuse_ros_default.npz"  # trained by training/train_default.sh
OFFICIAL_MODEL_RESOURCE = "official_lutfuse.npz"


class ModelFormatError(LutfuseError):
    """A model file is missing, unreadable or does not hold a valid fusion model."""


@dataclass
class FusionModel:
    """An MM-LUT fusion model: the 4-D table, the context network and metadata.

    Args:
        lut: float32 array :math:`(16, 16, 16, 16)`, axes ``[y, g, s, i]``.
        context_state: context-network state dict as float32 numpy arrays.
        context_config: architecture of the context network (see ``ContextNetConfig``).
        metadata: provenance, licence and model card (free-form JSON-able dict).
        context_onnx: the same context network as an ONNX graph (bytes), for the torch-free
            engines (:mod:`.onnx_context`); ``None`` when not exported. Not part of the
            model id: it is a rendering of the weights, and the engines check that it
            computes them before they run it.
    """

    lut: np.ndarray
    context_state: dict[str, np.ndarray]
    context_config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    context_onnx: bytes | None = None

    def __post_init__(self) -> None:
        validate_model(self, source="<in memory>")

    @property
    def model_id(self) -> str:
        """``sha256:<16 hex>`` over the LUT, the context weights and the architecture."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.lut, dtype="<f4").tobytes())
        for name in sorted(self.context_state):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.context_state[name], dtype="<f4").tobytes())
        h.update(json.dumps(self.context_config, sort_keys=True).encode())
        return "sha256:" + h.hexdigest()[:16]

    def build_context_net(self, device: str = "cpu"):
        """A ``ContextNet`` in eval mode with this model's weights (needs torch)."""
        import torch

        from .context_net import ContextNet

        net = ContextNet(ContextNetConfig(**self.context_config))
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                             self.context_state.items()})
        return net.to(device).eval()


def validate_model(model: FusionModel, source: str) -> None:
    """Check shapes, dtypes and finiteness; raise :class:`ModelFormatError` naming ``source``."""
    def fail(problem: str) -> None:
        raise ModelFormatError(f"{source}: {problem}")

    lut = model.lut
    if not isinstance(lut, np.ndarray) or lut.shape != LUT_SHAPE:
        fail(f"LUT must have shape {LUT_SHAPE}, got {getattr(lut, 'shape', type(lut))}")
    if lut.dtype != np.float32:
        fail(f"LUT must be float32, got {lut.dtype}")
    if not np.isfinite(lut).all():
        fail("LUT holds NaN or infinite values")
    try:
        expected = context_state_shapes(ContextNetConfig(**model.context_config))
    except TypeError as exc:
        fail(f"bad context_net architecture {model.context_config!r}: {exc}")
    missing = sorted(set(expected) - set(model.context_state))
    extra = sorted(set(model.context_state) - set(expected))
    if missing or extra:
        fail(f"context weights do not match the architecture (missing {missing}, "
             f"unexpected {extra})")
    for name, shape in expected.items():
        arr = model.context_state[name]
        if arr.shape != shape or arr.dtype != np.float32:
            fail(f"context weight {name!r} must be float32 {shape}, got {arr.dtype} {arr.shape}")
        if not np.isfinite(arr).all():
            fail(f"context weight {name!r} holds NaN or infinite values")


def save_model(model: FusionModel, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` (``.npz``); returns the path."""
    path = Path(path)
    meta = dict(model.metadata)
    meta.update(format_version=FORMAT_VERSION, context_net=model.context_config,
                input_scaling=INPUT_SCALING, model_id=model.model_id)
    arrays = {"lut": model.lut,
              "metadata_json": np.frombuffer(json.dumps(meta, indent=1).encode(), np.uint8)}
    arrays.update({f"context/{k}": v for k, v in model.context_state.items()})
    if model.context_onnx is not None:
        arrays["context_onnx"] = np.frombuffer(model.context_onnx, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def load_model(path: str | os.PathLike | None = None) -> FusionModel:
    """Load and validate a model file; ``None`` loads the package's default model.

    Raises:
        ModelFormatError: the file is missing, not an ``.npz``, of another format version,
            or holds arrays of the wrong shape, dtype or with non-finite values.

    Example:
        >>> model = load_model()                  # the package's default model
        >>> model.lut.shape, model.model_id
        ((16, 16, 16, 16), 'sha256:4609454b23062181')
        >>> load_model("/no/such/model.npz")
        Traceback (most recent call last):
        ...
        lutfuse_ros.core.model.ModelFormatError: /no/such/model.npz: no such model file
    """
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such model file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":  # numpy would try it as a pickle and say so: not our case
        raise ModelFormatError(f"{path}: not a model file (a model is a .npz zip archive as "
                               "lutfuse-train, lutfuse convert-official or save_model write it)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc):  # numpy's message invites unsafe loading: say what it is
            raise ModelFormatError(f"{path}: not a readable model file (it holds an object "
                                   "array, which is never unpickled)") from None
        raise ModelFormatError(f"{path}: not a readable model file ({exc})") from exc
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise ModelFormatError(f"{path}: not a readable model file ({exc})") from exc
    if "metadata_json" not in arrays or "lut" not in arrays:
        raise ModelFormatError(f"{path}: missing 'lut' or 'metadata_json' entry")
    try:
        meta = json.loads(arrays.pop("metadata_json").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{path}: metadata must be a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    context_config = meta.get("context_net", {})
    if not isinstance(context_config, dict):
        raise ModelFormatError(f"{path}: 'context_net' must be a JSON object")
    model = FusionModel.__new__(FusionModel)
    model.lut = arrays.pop("lut")
    model.context_config = context_config
    onnx = arrays.pop("context_onnx", None)
    model.context_onnx = None if onnx is None else onnx.tobytes()
    model.context_state = {k[len("context/"):]: v for k, v in arrays.items()
                           if k.startswith("context/")}
    model.metadata = {k: v for k, v in meta.items()
                      if k not in ("format_version", "context_net", "input_scaling", "model_id")}
    validate_model(model, source=str(path))
    return model


def default_model_path() -> Path:
    """Path of the package's default model (what ``load_model()`` loads)."""
    return Path(str(resources.files("lutfuse_ros.models") / DEFAULT_MODEL_RESOURCE))


def official_model_path() -> Path:
    """Path of the authors' released weights, converted (MIT, ``LICENSE-LUT-Fuse``)."""
    return Path(str(resources.files("lutfuse_ros.models") / OFFICIAL_MODEL_RESOURCE))


# The authors' state dict uses these Sequential names; the layer indices are the same.
_OFFICIAL_PREFIXES = {"input_layer.": "stem.", "mid_layer.": "blocks.", "output_layer.": "head."}


def convert_official(lut_npy: str | os.PathLike, context_pth: str | os.PathLike) -> FusionModel:
    """Convert the authors' release (``fine_tuned_lut.npy`` + ``generator_context.pth``).

    The ``.pth`` is read with ``torch.load(weights_only=True)``: no unpickling of code.
    """
    import torch

    lut_npy, context_pth = Path(lut_npy), Path(context_pth)
    try:
        lut = np.load(lut_npy, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ModelFormatError(f"{lut_npy}: not a readable .npy LUT ({exc})") from exc
    if lut.shape == LUT_SHAPE + (1,):
        lut = lut[..., 0]
    try:
        state = torch.load(context_pth, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for corrupt files
        raise ModelFormatError(f"{context_pth}: not a readable torch state dict ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFormatError(f"{context_pth}: expected a state dict of tensors")
    renamed = {}
    for key, tensor in state.items():
        for old, new in _OFFICIAL_PREFIXES.items():
            if key.startswith(old):
                renamed[new + key[len(old):]] = tensor.detach().float().numpy().copy()
                break
        else:
            raise ModelFormatError(f"{context_pth}: unexpected tensor {key!r} for LUT-Fuse")
    meta = {
        "name": "LUT-Fuse official (fine_tuned_lut + generator_context)",
        "provenance": {"source": "zyb5/LUT-Fuse release (ckpts/)",
                       "lut_file": lut_npy.name, "context_file": context_pth.name,
                       "lut_sha256": hashlib.sha256(lut_npy.read_bytes()).hexdigest(),
                       "context_sha256": hashlib.sha256(context_pth.read_bytes()).hexdigest()},
        "licence": "MIT, Copyright (c) 2025 Yibing Zhang (LUT-Fuse); see "
                   "lutfuse_ros/models/LICENSE-LUT-Fuse",
    }
    try:
        return FusionModel(lut=np.ascontiguousarray(lut, dtype=np.float32) if
                           lut.dtype == np.float32 else lut, context_state=renamed,
                           context_config=ContextNetConfig().to_dict(), metadata=meta)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{lut_npy} + {context_pth}: {exc}") from exc
