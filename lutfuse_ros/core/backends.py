"""The two ways to run the forward pass, one small class each, behind :class:`~.fusion.Fuser`.

- :class:`NumpyBackend`: compiled CPU kernels (:mod:`.kernels`) for colour, gradient, lookup
  and chroma; the context network at ``context_scale`` of the full resolution on a
  :class:`ContextRunner`: ONNX Runtime or OpenCV DNN on the model's ONNX graph (no torch,
  :mod:`.onnx_context`), or torch.
- :class:`TorchBackend`: the whole pass on torch tensors (:mod:`.torch_ops`), CPU or CUDA.

Each owns its state (buffers, compiled tables, networks) and has one ``run(...)`` with the
same arguments; the :class:`~.fusion.Fuser` validates the inputs and picks the backend.
Torch is imported only by the classes that run it: robots may not have it.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from . import kernels
from .errors import FusionInputError
from .model import FusionModel
from .onnx_context import OnnxContextNet, check_graph, resolve_engine
from .preprocess import GradientNormaliser
from .resample import bilinear_taps, context_size

if TYPE_CHECKING:
    from .fusion import FusionConfig


class StageTimer:
    """Adds stage durations (ms) to ``sink`` when one is given; ``sync`` (e.g. CUDA's) runs
    at the end of each stage so asynchronous work is counted where it happens."""

    def __init__(self, sink: dict[str, float] | None,
                 sync: Callable[[], None] | None = None) -> None:
        self.sink, self.sync = sink, sync

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.sink is None:
            yield
            return
        t0 = time.perf_counter()
        yield
        if self.sync is not None:
            self.sync()
        self.sink[name] = self.sink.get(name, 0.0) + (time.perf_counter() - t0) * 1e3


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ValueError("the torch backend needs torch, which is not installed (pip "
                         "install torch; the numpy backend runs without it)") from None
    return torch


def _context_size(h: int, w: int, k: int) -> tuple[int, int]:
    try:
        return context_size(h, w, k)
    except ValueError as exc:
        raise FusionInputError(str(exc)) from None


# -- context runners of the numpy backend ---------------------------------------------------
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
class NumpyBackend:
    """Compiled CPU kernels plus a :class:`ContextRunner` (fp32, CPU only)."""

    synchronize = None  # nothing runs asynchronously

    def __init__(self, model: FusionModel, config: "FusionConfig", threads: int) -> None:
        self.stride, self.threads = config.stride, threads
        engine = resolve_engine(config.context_engine, model)
        self.context: ContextRunner = (TorchContextRunner(model, threads) if engine == "torch"
                                       else OnnxContextRunner(model, engine, threads))
        self._lut_flat = kernels.lut_along_ir(model.lut).reshape(-1)
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
            ch, cw = _context_size(h, w, k)
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
        kernels.box_downsample_rgb_ir(vis, ir, r_ch, b_ch, self.stride, x)
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
                kernels.luma_from_rgb(vis, r_ch, b_ch, buf["y"])
            else:
                kernels.luma_from_gray(vis, buf["y"])
        with timer.stage("gradient"):
            kernels.sobel_magnitude(buf["y"], buf["grad"], buf["row_min"], buf["row_max"])
            if gradient is None:
                g_min, g_max = buf["row_min"].min(), buf["row_max"].max()
            else:
                g_min, g_max = (np.float32(v) for v in gradient.update(buf["row_min"],
                                                                        buf["row_max"]))
            g_inv = np.float32(1.0) / (g_max - g_min + np.float32(1e-8))
        with timer.stage("context"):
            ctx = self.context_map(ir, vis, r_ch, b_ch)
        with timer.stage("lookup+to_rgb"):
            kernels.fuse_lookup(vis, ir, buf["y"], buf["grad"], np.float32(g_min), g_inv, ctx,
                                buf["ry0"], buf["ry1"], buf["rwy"], buf["cx0"], buf["cx1"],
                                buf["cwx"], self._lut_flat, out)


class TorchBackend:
    """The forward pass of :mod:`.torch_ops` on a torch device (CPU or CUDA; fp16 context
    network optional)."""

    context_engine = "torch"

    def __init__(self, model: FusionModel, config: "FusionConfig", threads: int) -> None:
        self._torch = torch = _import_torch()
        self.stride, self.threads, self.fp16 = config.stride, threads, config.precision == "fp16"
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch sees no CUDA device")
        self.context_net = model.build_context_net(str(self.device))
        if self.fp16:
            self.context_net = self.context_net.half()
        self.lut = torch.from_numpy(model.lut).to(self.device)
        self.synchronize = torch.cuda.synchronize if self.device.type == "cuda" else None

    def reset(self) -> None:
        """Nothing is kept per size."""

    def run(self, ir: np.ndarray, vis: np.ndarray, r_ch: int, b_ch: int, out: np.ndarray,
            timer: StageTimer, gradient: GradientNormaliser | None) -> None:
        """Fuse a validated pair into ``out`` (see :meth:`~.fusion.Fuser.fuse`)."""
        from . import torch_ops

        torch, dev = self._torch, self.device
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            with timer.stage("colour"):
                v = torch.from_numpy(vis).to(dev)
                if vis.ndim == 3:
                    rgb = v[:, :, [r_ch, 1, b_ch]].permute(2, 0, 1)[None].float() / 255.0
                else:
                    rgb = v[None, None].float().expand(1, 3, -1, -1) / 255.0
                irt = torch.from_numpy(ir).to(dev)[None, None].float() / 255.0
                ycbcr = torch_ops.rgb_to_ycbcr(rgb)
                y = ycbcr[:, :1]
            with timer.stage("gradient"):
                g = torch_ops.sobel_magnitude(y)
                if gradient is None:
                    g = torch_ops.minmax_normalise(g)
                else:
                    lo, hi = gradient.update(g[0, 0].amin(dim=1).cpu().numpy(),
                                             g[0, 0].amax(dim=1).cpu().numpy())
                    g = ((g - lo) / (hi - lo + torch_ops.GRAD_EPS)).clamp(0.0, 1.0)
            with timer.stage("context"):
                k = self.stride
                _context_size(ir.shape[0], ir.shape[1], k)
                x = torch_ops.context_input(rgb * 255.0, irt * 255.0, k)
                if self.fp16:
                    s = self.context_net(x.half()).float()
                else:
                    s = self.context_net(x)
                s = torch_ops.upsample_context(s, y.shape[-2:], k)
            with timer.stage("lookup"):
                fy = torch_ops.quadrilinear_lookup(self.lut, y, g, s, irt)
            with timer.stage("to_rgb"):
                if vis.ndim == 3:
                    res = torch_ops.ycbcr_to_rgb(torch.cat((fy, ycbcr[:, 1:]), dim=1))[0]
                    res = res[[r_ch, 1, b_ch]].permute(1, 2, 0)
                else:
                    res = fy[0, 0]
                res = (res.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
                out[...] = res.cpu().numpy()
