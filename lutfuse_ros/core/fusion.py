"""The fusion engine: :class:`Fuser` turns uint8 IR + visible pairs into fused images.

:class:`~.config.FusionConfig` says how: the backend (``numpy``: compiled CPU kernels with
the context network on ONNX Runtime, OpenCV or torch, :mod:`.backends`; ``torch``: the whole
pass on torch, CPU or CUDA graphs, :mod:`.torch_backend`), exact or fast mode, threads,
precision. ``exact=True`` reproduces the authors' forward pass (context network at full
resolution).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from .backends import Backend, NumbaBackend
from .config import VIS_ORDERS, FusionConfig
from .errors import ConfigError, FusionInputError
from .fusion_kernels import writable
from .model import FusionModel, load_model
from .preprocess import GradientNormaliser
from .timing import StageTimer

__all__ = ["Engine", "FusionConfig", "Fuser", "check_pair"]


@dataclass(frozen=True)
class Engine:
    """What a :class:`Fuser` runs.

    Example:
        >>> e = Engine("numba", "cpu", False, "numba", "onnxruntime", "fp32", 16)
        >>> e.exact, str(e)
        (False, 'numba backend on cpu, numba, context net on onnxruntime, fast, context_scale 1/16')
    """

    backend: str
    device: str
    cuda_graph: bool
    pixel_kernels: str    # what does the per-pixel work (numba, CuPy CUDA kernels, torch ops)
    context_engine: str   # what runs the context network
    precision: str        # of the context network
    stride: int           # pixels per context cell along each axis (1: exact)

    @property
    def exact(self) -> bool:
        return self.stride == 1

    def __str__(self) -> str:
        mode = "exact" if self.exact else f"fast, context_scale 1/{self.stride}"
        precision = ", fp16 context" if self.precision == "fp16" else ""
        graph = ", CUDA graphs" if self.cuda_graph else ""
        return (f"{self.backend} backend on {self.device}{graph}, {self.pixel_kernels}, "
                f"context net on {self.context_engine}{precision}, {mode}")


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
                "lutfuse_ros.core.preprocess.thermal_to_8bit, or ThermalAGC for a stream)")
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
            "differ in size: register the thermal image to the visible one first (lutfuse "
            "fuse does it with --calibration from lutfuse calibrate, the node with its "
            "registration.* parameters)")
    if min(ir.shape) < 4:
        raise FusionInputError(f"images must be at least 4x4 pixels, got {ir.shape}")
    return writable(np.ascontiguousarray(ir)), writable(np.ascontiguousarray(vis))


class Fuser:
    """Fuses IR + visible pairs with an MM-LUT model.

    Args:
        model: the fusion model; ``None`` loads the package's default model.
        config: backend, exact/fast mode, ``context_scale``, device and threads.

    Example:
        >>> from lutfuse_ros.core.synthetic import synthetic_pair
        >>> ir, vis_rgb = synthetic_pair(shape=(240, 320))     # (H, W) and (H, W, 3) uint8
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
        self.backend: Backend
        if config.backend == "torch":
            try:
                from .torch_backend import TorchBackend
            except ImportError:
                raise ConfigError("the torch backend needs torch, which is not installed (pip "
                                  "install torch; the numba backend runs without it)") from None
            self.backend = TorchBackend(self.model, config, threads)
        else:
            self.backend = NumbaBackend(self.model, config, threads)

    @property
    def context_engine(self) -> str:
        """What runs the context network: ``"torch"``, ``"onnxruntime"`` or ``"opencv"``."""
        return self.backend.context_engine

    @property
    def engine(self) -> "Engine":
        """What runs (fields to test and report; ``str()`` of it reads as a log line)."""
        c = self.config
        return Engine(c.backend, c.device, c.uses_cuda_graph, self.backend.pixel_kernels,
                      self.context_engine, c.precision, c.stride)

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
        r_ch, b_ch = _channels(vis_order)
        ir, vis = check_pair(ir, vis)
        h, w = ir.shape
        out_shape = (h, w, 3) if vis.ndim == 3 else (h, w)
        if out is None:
            out = np.empty(out_shape, np.uint8)
        elif out.shape != out_shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise FusionInputError(f"out must be C-contiguous uint8 {out_shape}, got "
                                   f"{out.dtype} {out.shape}")
        timer = StageTimer(timings, self.backend.synchronize)
        self.backend.run(ir, vis, r_ch, b_ch, out, timer, gradient)
        return out

    def fuse_batch(self, irs: Sequence[np.ndarray], viss: Sequence[np.ndarray],
                   vis_order: str = "rgb", batch_size: int = 8,
                   timings: dict[str, float] | None = None) -> list[np.ndarray]:
        """Fuse many pairs (offline: folders, bags, evaluation), each with its own gradient
        range as :meth:`fuse` without ``gradient``.

        Runs of consecutive pairs of one size and layout go to the backend ``batch_size`` at
        a time: the torch backend fuses each run as one batch (on a GPU, one graph replay);
        the numba backend fuses them one after the other.

        Args:
            irs, viss: equally long sequences of pairs, as :meth:`fuse` takes them.
            batch_size: pairs per batch, >= 1.

        Returns:
            The fused images, in the order given.

        Raises:
            FusionInputError: naming the first pair that cannot be fused, and why.

        Example:
            >>> from lutfuse_ros.core.synthetic import synthetic_pair
            >>> pairs = [synthetic_pair(seed=s, shape=(64, 96)) for s in range(3)]
            >>> fused = Fuser().fuse_batch([p[0] for p in pairs], [p[1] for p in pairs])
            >>> [f.shape for f in fused]
            [(64, 96, 3), (64, 96, 3), (64, 96, 3)]
        """
        r_ch, b_ch = _channels(vis_order)
        if len(irs) != len(viss):
            raise FusionInputError(f"{len(irs)} IR images but {len(viss)} visible ones")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        pairs = []
        for i, (ir, vis) in enumerate(zip(irs, viss)):
            try:
                pairs.append(check_pair(ir, vis))
            except FusionInputError as exc:
                raise FusionInputError(f"pair {i}: {exc}") from None
        timer = StageTimer(timings, self.backend.synchronize)
        fused: list[np.ndarray] = []
        start = 0
        while start < len(pairs):
            shape = (pairs[start][0].shape, pairs[start][1].shape)
            stop = start + 1
            while (stop < len(pairs) and stop - start < batch_size
                   and (pairs[stop][0].shape, pairs[stop][1].shape) == shape):
                stop += 1
            irs_b = np.stack([p[0] for p in pairs[start:stop]])
            viss_b = np.stack([p[1] for p in pairs[start:stop]])
            outs = np.empty(irs_b.shape + ((3,) if viss_b.ndim == 4 else ()), np.uint8)
            self.backend.run_batch(irs_b, viss_b, r_ch, b_ch, outs, timer)
            fused.extend(outs)
            start = stop
        return fused


def _channels(vis_order: str) -> tuple[int, int]:
    """Indices of red and blue in a colour image of ``vis_order``."""
    if vis_order not in VIS_ORDERS:
        raise FusionInputError(f"vis_order must be one of {VIS_ORDERS}, got {vis_order!r}")
    return (0, 2) if vis_order == "rgb" else (2, 0)
