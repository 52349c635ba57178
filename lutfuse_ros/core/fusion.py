"""The fusion engine: :class:`Fuser` turns a uint8 IR + visible pair into a fused image.

Two backends share one configuration:

- ``numpy``: compiled CPU kernels (:mod:`.kernels`) for colour, gradient, lookup and chroma;
  the context network runs at ``context_scale`` of the full resolution on a
  ``context_engine``: ONNX Runtime or OpenCV DNN on the model's ONNX graph (no torch
  needed, :mod:`.onnx_context`) or torch.
- ``torch``: the whole forward pass on torch tensors (:mod:`.torch_ops`), on CPU or CUDA.

``exact=True`` reproduces the authors' forward pass (context network at full resolution).
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from . import kernels
from .model import FusionModel, load_model
from .onnx_context import CONTEXT_ENGINES, OnnxContextNet, check_graph, resolve_engine
from .preprocess import GradientNormaliser
from .resample import bilinear_taps, context_size, context_stride

VIS_ORDERS = ("rgb", "bgr")
BACKENDS = ("numpy", "torch")
PRECISIONS = ("fp32", "fp16")


class FusionInputError(ValueError):
    """The images given to :meth:`Fuser.fuse` cannot be fused (dtype, channels, sizes)."""


@dataclass(frozen=True)
class FusionConfig:
    """How to run the forward pass.

    Attributes:
        exact: run the authors' forward pass (context network at full resolution).
        context_scale: resolution of the context network in fast mode, 1/k. The default 1/16
            scored as well as exact mode on MSRS/RoadScene test sets at a fraction of the
            cost (README, "context_scale"); frames need at least 64x64 pixels for it.
        backend: ``"numpy"`` (compiled CPU kernels) or ``"torch"``.
        device: torch device of the torch backend (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        threads: CPU threads for kernels and torch; 0 uses every core.
        context_engine: what runs the context network of the numpy backend: ``"auto"``
            (ONNX Runtime, else OpenCV, when the model carries ONNX; else torch),
            ``"onnxruntime"``, ``"opencv"`` or ``"torch"``. The torch backend uses torch.
        precision: ``"fp32"`` or ``"fp16"`` (torch backend: the context network in half
            precision, for GPUs; the lookup stays fp32). README: fp16 quality.
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
    return np.ascontiguousarray(ir), np.ascontiguousarray(vis)


class _Timer:
    """Accumulates stage durations (ms) into a dict when one is given."""

    def __init__(self, sink: dict[str, float] | None, sync=None) -> None:
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


class Fuser:
    """Fuses IR + visible pairs with an MM-LUT model.

    Args:
        model: the fusion model; ``None`` loads the package's default model.
        config: backend, exact/fast mode, ``context_scale``, device and threads.

    Example:
        >>> fuser = Fuser(config=FusionConfig(context_scale=0.5))
        >>> fused = fuser.fuse(ir, vis_rgb)            # (H, W, 3) uint8, RGB
        >>> fused = fuser.fuse(ir, vis_bgr, vis_order="bgr")  # BGR in, BGR out
    """

    def __init__(self, model: FusionModel | None = None,
                 config: FusionConfig = FusionConfig()) -> None:
        self.model = model if model is not None else load_model()
        self.config = config
        self._threads = config.threads or os.cpu_count() or 1
        #: what runs the context network: "torch", "onnxruntime" or "opencv"
        self.context_engine = "torch" if config.backend == "torch" else \
            resolve_engine(config.context_engine, self.model)
        self._torch = None  # imported only when torch runs something: robots may lack it
        if self.context_engine == "torch":
            try:
                import torch
            except ImportError:
                raise ValueError("the torch backend needs torch, which is not installed (pip "
                                 "install torch; the numpy backend runs without it)") from None

            self._torch = torch
            self._device = torch.device(config.device)
            if self._device.type == "cuda" and not torch.cuda.is_available():
                raise ValueError("device 'cuda' requested but torch sees no CUDA device")
            self.context_net = self.model.build_context_net(str(self._device))
            if config.precision == "fp16":
                self.context_net = self.context_net.half()
            if config.backend == "numpy":
                self.context_net = self.context_net.to(memory_format=torch.channels_last)
            else:
                self._lut_t = torch.from_numpy(self.model.lut).to(self._device)
        else:
            self._onnx = OnnxContextNet(self.model.context_onnx, self.context_engine,
                                        self._threads)
            check_graph(self.model, self._onnx)
        self._lut_ir = kernels.lut_along_ir(self.model.lut)
        self._buffers: dict[tuple[int, int], dict[str, np.ndarray]] = {}

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
        self.fuse(np.zeros((h, w), np.uint8), np.zeros((h, w, 3), np.uint8))
        self._buffers = {}

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
        if self._torch is not None:
            self._torch.set_num_threads(self._threads)
        if self.config.backend == "numpy":
            self._fuse_numpy(ir, vis, r_ch, b_ch, out, _Timer(timings), gradient)
        else:
            self._fuse_torch(ir, vis, r_ch, b_ch, out, timings, gradient)
        return out

    # -- numpy backend ------------------------------------------------------------------
    def _buffers_for(self, h: int, w: int) -> dict[str, np.ndarray]:
        buf = self._buffers.get((h, w))
        if buf is None:
            k = self.config.stride
            try:
                ch, cw = context_size(h, w, k)
            except ValueError as exc:
                raise FusionInputError(str(exc)) from None
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
        """Context map :math:`(H // k, W // k)` float32 in (0, 1) (numpy backend)."""
        torch = self._torch
        x = self._buffers_for(*ir.shape)["ctx_in"]  # NHWC = channels_last for the network
        kernels.box_downsample_rgb_ir(vis, ir, r_ch, b_ch, self.config.stride, x)
        if torch is None:  # ONNX engines take NCHW
            return self._onnx(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            s = self.context_net(torch.from_numpy(x).permute(0, 3, 1, 2))
        return s[0, 0].contiguous().numpy()

    def _fuse_numpy(self, ir, vis, r_ch, b_ch, out, timer: _Timer, gradient) -> None:
        import numba

        numba.set_num_threads(min(self._threads, numba.config.NUMBA_NUM_THREADS))
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
                                buf["cwx"], self._lut_ir, out)

    # -- torch backend ------------------------------------------------------------------
    def _fuse_torch(self, ir, vis, r_ch, b_ch, out, timings, gradient) -> None:
        import torch

        from . import torch_ops as T

        dev = self._device
        timer = _Timer(timings, torch.cuda.synchronize if dev.type == "cuda" else None)
        with torch.inference_mode():
            with timer.stage("colour"):
                v = torch.from_numpy(vis).to(dev)
                if vis.ndim == 3:
                    rgb = v[:, :, [r_ch, 1, b_ch]].permute(2, 0, 1)[None].float() / 255.0
                else:
                    rgb = v[None, None].float().expand(1, 3, -1, -1) / 255.0
                irt = torch.from_numpy(ir).to(dev)[None, None].float() / 255.0
                ycbcr = T.rgb_to_ycbcr(rgb)
                y = ycbcr[:, :1]
            with timer.stage("gradient"):
                g = T.sobel_magnitude(y)
                if gradient is None:
                    g = T.minmax_normalise(g)
                else:
                    lo, hi = gradient.update(g[0, 0].amin(dim=1).cpu().numpy(),
                                             g[0, 0].amax(dim=1).cpu().numpy())
                    g = ((g - lo) / (hi - lo + T.GRAD_EPS)).clamp(0.0, 1.0)
            with timer.stage("context"):
                k = self.config.stride
                try:
                    context_size(ir.shape[0], ir.shape[1], k)
                except ValueError as exc:
                    raise FusionInputError(str(exc)) from None
                x = T.context_input(rgb * 255.0, irt * 255.0, k)
                if self.config.precision == "fp16":
                    s = self.context_net(x.half()).float()
                else:
                    s = self.context_net(x)
                s = T.upsample_context(s, y.shape[-2:], k)
            with timer.stage("lookup"):
                fy = T.quadrilinear_lookup(self._lut_t, y, g, s, irt)
            with timer.stage("to_rgb"):
                if vis.ndim == 3:
                    res = T.ycbcr_to_rgb(torch.cat((fy, ycbcr[:, 1:]), dim=1))[0]
                    res = res[[r_ch, 1, b_ch]].permute(1, 2, 0)
                else:
                    res = fy[0, 0]
                res = (res.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
                out[...] = res.cpu().numpy()
