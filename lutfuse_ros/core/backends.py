"""What a backend is (:class:`Backend`), and the CPU one, behind :class:`~.fusion.Fuser`.

- :class:`NumbaBackend`: compiled CPU kernels (:mod:`.fusion_kernels`) for colour, gradient, lookup
  and chroma; the context network at ``context_scale`` of the full resolution on a
  :class:`ContextRunner`: ONNX Runtime or OpenCV DNN on the model's ONNX graph (no torch,
  :mod:`.onnx_context`), or torch.
- :class:`~.torch_backend.TorchBackend` (its own module: it imports torch): the pass of
  :mod:`.torch_ops` on a CPU or a GPU, captured as a CUDA graph there.

Each owns its state (buffers, compiled tables, networks) and has the same ``run(...)`` and
``run_batch(...)``; the :class:`~.fusion.Fuser` validates the inputs and picks the backend.
Torch is imported only by the classes that run it: robots may not have it.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from . import fusion_kernels
from .config import FusionConfig
from .errors import ConfigError
from .model import FusionModel
from .onnx_context import OnnxContextNet, check_graph, resolve_engine
from .preprocess import GradientNormaliser
from .resample import bilinear_taps, context_shape
from .timing import StageTimer


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ConfigError("context engine 'torch' needs torch, which is not installed (pip "
                          "install torch; the ONNX engines run without it)") from None
    return torch


# -- context runners of the numba backend ---------------------------------------------------
class ContextRunner:
    """Runs the context network on a downsampled frame.

    ``__call__(x)``: :math:`(1, h, w, 4)` float32 NHWC (R, G, B, IR) in [0, 255] ->
    :math:`(h, w)` float32 in (0, 1).
    """

    engine: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class OnnxContextRunner(ContextRunner):
    """The model's ONNX graph on ONNX Runtime or OpenCV DNN, checked against its weights."""

    def __init__(self, model: FusionModel, engine: str, threads: int) -> None:
        self.engine = engine
        self._net = OnnxContextNet(model.context_onnx, engine, threads)
        check_graph(model, self._net)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._net(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # ONNX takes NCHW


class TorchContextRunner(ContextRunner):
    """The model's :class:`~.context_net.ContextNet` on the CPU, channels-last (NHWC) input."""

    engine = "torch"

    def __init__(self, model: FusionModel, threads: int) -> None:
        self._torch = torch = _import_torch()
        self._threads = threads
        self._net = model.build_context_net("cpu").to(memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        torch.set_num_threads(self._threads)
        with torch.inference_mode():
            s = self._net(torch.from_numpy(x).permute(0, 3, 1, 2))
        return s[0, 0].contiguous().numpy()


# -- backends --------------------------------------------------------------------------------
class Backend(Protocol):
    """One way to run the forward pass on validated uint8 inputs (see :class:`~.fusion.Fuser`).

    ``synchronize`` waits for asynchronous work (a GPU's), ``None`` when there is none.
    """

    context_engine: str        # what runs the context network
    pixel_kernels: str         # what does the per-pixel work
    synchronize: Callable[[], None] | None

    def reset(self) -> None:
        """Drop per-size state (buffers, captured graphs)."""

    def run(self, ir: np.ndarray, vis: np.ndarray, r_ch: int, b_ch: int, out: np.ndarray,
            timer: StageTimer, gradient: GradientNormaliser | None) -> None:
        """Fuse one pair: ``ir`` (H, W), ``vis`` (H, W[, C]) uint8 into ``out``."""

    def run_batch(self, irs: np.ndarray, viss: np.ndarray, r_ch: int, b_ch: int,
                  outs: np.ndarray, timer: StageTimer) -> None:
        """Fuse same-size pairs stacked along a first axis B, each with its own gradient
        range, into ``outs`` (B, H, W[, 3])."""


class NumbaBackend:
    """Compiled CPU kernels plus a :class:`ContextRunner` (fp32, CPU only)."""

    synchronize = None  # nothing runs asynchronously
    pixel_kernels = "numba"

    def __init__(self, model: FusionModel, config: FusionConfig, threads: int) -> None:
        self.stride, self.threads = config.stride, threads
        engine = resolve_engine(config.context_engine, model)
        self.context: ContextRunner = (TorchContextRunner(model, threads) if engine == "torch"
                                       else OnnxContextRunner(model, engine, threads))
        self._lut_flat = fusion_kernels.lut_along_ir(model.lut).reshape(-1)
        self._buffers: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    @property
    def context_engine(self) -> str:
        return self.context.engine

    def reset(self) -> None:
        """Drop the per-size buffers (after a warm-up on a dummy size)."""
        self._buffers = {}

    def _buffers_for(self, h: int, w: int) -> dict[str, np.ndarray]:
        buf = self._buffers.get((h, w))
        if buf is None:
            k = self.stride
            ch, cw = context_shape(h, w, k)
            ry0, ry1, rwy = bilinear_taps(h, ch, k)
            cx0, cx1, cwx = bilinear_taps(w, cw, k)
            buf = dict(y=np.empty((h, w), np.float32), grad=np.empty((h, w), np.float32),
                       row_min=np.empty(h, np.float32), row_max=np.empty(h, np.float32),
                       ctx_in=np.empty((1, ch, cw, 4), np.float32),
                       ry0=ry0, ry1=ry1, rwy=rwy, cx0=cx0, cx1=cx1, cwx=cwx)
            self._buffers = {(h, w): buf}  # keep one size: a stream does not change size
        return buf

    def context_map(self, ir: np.ndarray, vis: np.ndarray, r_ch: int = 0,
                    b_ch: int = 2) -> np.ndarray:
        """Context map :math:`(H // k, W // k)` float32 in (0, 1)."""
        x = self._buffers_for(*ir.shape)["ctx_in"]  # NHWC = channels_last for the network
        fusion_kernels.box_downsample_rgb_ir(vis, ir, r_ch, b_ch, self.stride, x)
        return self.context(x)

    def run(self, ir: np.ndarray, vis: np.ndarray, r_ch: int, b_ch: int, out: np.ndarray,
            timer: StageTimer, gradient: GradientNormaliser | None) -> None:
        """Fuse a validated pair into ``out`` (see :meth:`~.fusion.Fuser.fuse`)."""
        import numba

        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        h, w = ir.shape
        buf = self._buffers_for(h, w)
        with timer.stage("colour"):
            if vis.ndim == 3:
                fusion_kernels.luma_from_rgb(vis, r_ch, b_ch, buf["y"])
            else:
                fusion_kernels.luma_from_gray(vis, buf["y"])
        with timer.stage("gradient"):
            fusion_kernels.sobel_magnitude(buf["y"], buf["grad"], buf["row_min"], buf["row_max"])
            if gradient is None:
                g_min, g_max = buf["row_min"].min(), buf["row_max"].max()
            else:
                g_min, g_max = (np.float32(v) for v in gradient.update(buf["row_min"],
                                                                        buf["row_max"]))
            g_inv = np.float32(1.0) / (g_max - g_min + np.float32(1e-8))
        with timer.stage("context"):
            ctx = self.context_map(ir, vis, r_ch, b_ch)
        with timer.stage("lookup+to_rgb"):
            fusion_kernels.fuse_lookup(vis, ir, buf["y"], buf["grad"], np.float32(g_min), g_inv,
                                       ctx, buf["ry0"], buf["ry1"], buf["rwy"], buf["cx0"],
                                       buf["cx1"], buf["cwx"], self._lut_flat, out)

    def run_batch(self, irs: np.ndarray, viss: np.ndarray, r_ch: int, b_ch: int,
                  outs: np.ndarray, timer: StageTimer) -> None:
        """One pair after the other: the kernels already use every core."""
        for ir, vis, out in zip(irs, viss, outs):
            self.run(ir, vis, r_ch, b_ch, out, timer, None)
