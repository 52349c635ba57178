"""The fusion engine: :class:`Fuser` turns a uint8 IR + visible pair into a fused image.

:class:`FusionConfig` says how: the backend (``numpy``: compiled CPU kernels with the context
network on ONNX Runtime, OpenCV or torch; ``torch``: the whole pass on torch, CPU or CUDA;
both in :mod:`.backends`), exact or fast mode, threads, precision. ``exact=True`` reproduces
the authors' forward pass (context network at full resolution).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from . import kernels
from .backends import NumpyBackend, StageTimer, TorchBackend
from .errors import FusionInputError
from .model import FusionModel, load_model
from .onnx_context import CONTEXT_ENGINES
from .preprocess import GradientNormaliser
from .resample import context_stride

VIS_ORDERS = ("rgb", "bgr")
BACKENDS = ("numpy", "torch")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class FusionConfig:
    """How to run the forward pass.

    Attributes:
        exact: run the authors' forward pass (context network at full resolution).
        context_scale: resolution of the context network in fast mode, 1/k. The default 1/16
            scored as well as exact mode on MSRS/RoadScene test sets at a fraction of the
            cost (README, section "context_scale"); frames need at least 64x64 pixels.
        backend: ``"numpy"`` (compiled CPU kernels) or ``"torch"``.
        device: torch device of the torch backend (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        threads: CPU threads for kernels and torch; 0 uses every core.
        context_engine: what runs the context network of the numpy backend: ``"auto"``
            (ONNX Runtime, else OpenCV, when the model carries ONNX; else torch),
            ``"onnxruntime"``, ``"opencv"`` or ``"torch"``. The torch backend uses torch.
        precision: ``"fp32"`` or ``"fp16"`` (torch backend: the context network in half
            precision, for GPUs; the lookup stays fp32; ``benchmarks/fp16_quality.py``).

    Example:
        >>> FusionConfig(context_scale=0.25).stride
        4
        >>> FusionConfig(backend="gpu")
        Traceback (most recent call last):
        ...
        ValueError: backend must be one of ('numpy', 'torch'), got 'gpu'
    """

    exact: bool = False
    context_scale: float = 0.0625
    backend: str = "numpy"
    device: str = "cpu"
    threads: int = 0
    context_engine: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        context_stride(self.context_scale)  # raises unless 1/k
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.backend == "numpy" and self.device != "cpu":
            raise ValueError("the numpy backend runs on the CPU; use backend='torch' for "
                             f"device {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.context_engine not in CONTEXT_ENGINES:
            raise ValueError(f"context_engine must be one of {CONTEXT_ENGINES}, got "
                             f"{self.context_engine!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16" and self.backend != "torch":
            raise ValueError("fp16 is for the torch backend (GPUs); the numpy backend is fp32")
        if self.backend == "torch" and self.context_engine not in ("auto", "torch"):
            raise ValueError("the torch backend runs its context network in torch; "
                             f"context_engine {self.context_engine!r} needs backend='numpy'")

    @property
    def stride(self) -> int:
        """Pixels per context cell along each axis (1 in exact mode)."""
        return 1 if self.exact else context_stride(self.context_scale)


def check_pair(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair and return it as C-contiguous arrays (IR squeezed to 2-D).

    Raises:
        FusionInputError: naming the problem (type, dtype, channels, size mismatch).

    Example:
        >>> ir, vis = check_pair(np.zeros((8, 8, 1), np.uint8), np.zeros((8, 8, 3), np.uint8))
        >>> ir.shape
        (8, 8)
        >>> check_pair(np.zeros((8, 8), np.uint8), np.zeros((8, 9, 3), np.uint8))
        Traceback (most recent call last):
        ...
        lutfuse_ros.core.errors.FusionInputError: ir 8x8 and vis 9x8 (WxH) differ in size: ...
    """
    for name, img in (("ir", ir), ("vis", vis)):
        if not isinstance(img, np.ndarray):
            raise FusionInputError(f"{name} must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise FusionInputError(
                f"{name} must be uint8, got {img.dtype} (map 16-bit thermal with "
                "lutfuse_ros.core.thermal.thermal_to_8bit first)")
    if ir.ndim == 3 and ir.shape[2] == 1:
        ir = ir[:, :, 0]
    if ir.ndim != 2:
        raise FusionInputError(f"ir must be single-channel (H, W), got shape {ir.shape}")
    if not (vis.ndim == 2 or (vis.ndim == 3 and vis.shape[2] in (3, 4))):
        raise FusionInputError(
            f"vis must be (H, W) gray or (H, W, 3|4) colour, got shape {vis.shape}")
    if vis.shape[:2] != ir.shape:
        raise FusionInputError(
            f"ir {ir.shape[1]}x{ir.shape[0]} and vis {vis.shape[1]}x{vis.shape[0]} (WxH) "
            "differ in size: register the thermal image to the visible one first")
    if min(ir.shape) < 4:
        raise FusionInputError(f"images must be at least 4x4 pixels, got {ir.shape}")
    return kernels.writable(np.ascontiguousarray(ir)), kernels.writable(np.ascontiguousarray(vis))


class Fuser:
    """Fuses IR + visible pairs with an MM-LUT model.

    Args:
        model: the fusion model; ``None`` loads the package's default model.
        config: backend, exact/fast mode, ``context_scale``, device and threads.

    Example:
        >>> from lutfuse_ros.core.synthetic import synthetic_pair
        >>> ir, vis_rgb = synthetic_pair(size=(240, 320))     # (H, W) and (H, W, 3) uint8
        >>> fuser = Fuser(config=FusionConfig(context_scale=0.25))
        >>> fuser.fuse(ir, vis_rgb).shape                      # RGB in, RGB out
        (240, 320, 3)
        >>> bgr = fuser.fuse(ir, vis_rgb[:, :, ::-1], vis_order="bgr")   # BGR in, BGR out
        >>> fuser.fuse(ir, vis_rgb[:, :, 1]).shape             # grey in, grey out
        (240, 320)
    """

    def __init__(self, model: FusionModel | None = None,
                 config: FusionConfig = FusionConfig()) -> None:
        self.model = model if model is not None else load_model()
        self.config = config
        threads = config.threads or os.cpu_count() or 1
        backend = TorchBackend if config.backend == "torch" else NumpyBackend
        self.backend: NumpyBackend | TorchBackend = backend(self.model, config, threads)

    @property
    def context_engine(self) -> str:
        """What runs the context network: ``"torch"``, ``"onnxruntime"`` or ``"opencv"``."""
        return self.backend.context_engine

    @property
    def engine(self) -> str:
        """What runs, in words: backend, device, context engine and mode."""
        c = self.config
        mode = "exact" if c.exact else f"fast, context_scale 1/{c.stride}"
        precision = ", fp16 context" if c.precision == "fp16" else ""
        return (f"{c.backend} backend on {c.device}, context net on {self.context_engine}"
                f"{precision}, {mode}")

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def warm_up(self) -> None:
        """Fuse a small dummy pair so that kernel compilation (or cache loading) and the first
        allocations happen now rather than on the first real frame."""
        k = self.config.stride
        h, w = max(64, 4 * k), max(64, 4 * k)
        ir, vis = np.zeros((h, w), np.uint8), np.zeros((h, w, 3), np.uint8)
        self.fuse(ir, vis)
        self.backend.reset()

    def with_config(self, **changes) -> "Fuser":
        """A new :class:`Fuser` on the same model with some settings changed."""
        return Fuser(self.model, replace(self.config, **changes))

    def fuse(self, ir: np.ndarray, vis: np.ndarray, vis_order: str = "rgb",
             out: np.ndarray | None = None,
             timings: dict[str, float] | None = None,
             gradient: GradientNormaliser | None = None) -> np.ndarray:
        """Fuse one pair.

        Args:
            ir: :math:`(H, W)` uint8 infrared image.
            vis: :math:`(H, W, 3)` or :math:`(H, W, 4)` uint8 colour (alpha ignored) or
                :math:`(H, W)` uint8 gray visible image.
            vis_order: channel order of a colour ``vis``: ``"rgb"`` or ``"bgr"``.
            out: optional output buffer, :math:`(H, W, 3)` (colour) or :math:`(H, W)` uint8.
            timings: if given, per-stage milliseconds are added to it.
            gradient: range of the visible gradient, kept across frames of a stream
                (:class:`~lutfuse_ros.core.preprocess.GradientNormaliser`); ``None`` uses
                each image's own min and max, as the authors do.

        Returns:
            The fused image, uint8, :math:`(H, W, 3)` in ``vis_order`` for colour input,
            :math:`(H, W)` for gray input.

        Raises:
            FusionInputError: the pair cannot be fused (the message says why).
        """
        if vis_order not in VIS_ORDERS:
            raise FusionInputError(f"vis_order must be one of {VIS_ORDERS}, got {vis_order!r}")
        ir, vis = check_pair(ir, vis)
        h, w = ir.shape
        out_shape = (h, w, 3) if vis.ndim == 3 else (h, w)
        if out is None:
            out = np.empty(out_shape, np.uint8)
        elif out.shape != out_shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise FusionInputError(f"out must be C-contiguous uint8 {out_shape}, got "
                                   f"{out.dtype} {out.shape}")
        r_ch, b_ch = (0, 2) if vis_order == "rgb" else (2, 0)
        timer = StageTimer(timings, self.backend.synchronize)
        self.backend.run(ir, vis, r_ch, b_ch, out, timer, gradient)
        return out
