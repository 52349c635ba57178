"""The torch backend: :func:`~.torch_ops.fuse_u8` on a torch device, captured as a CUDA graph
on GPUs.

On the CPU, and on a GPU with ``cuda_graph=False``, the pass runs eagerly: ~70 small kernels
a frame, each launched from Python. On a GPU the default captures the pass once per frame
size and batch (:class:`CapturedPass`) and replays it, a single launch; frames travel through
page-locked (pinned) host buffers allocated once per size, which the GPU reads and writes
directly (on a Jetson, whose CPU and GPU share DRAM, pinned memory also avoids the staging
copy). A size is captured at its second frame, so a folder of odd sizes runs eagerly instead
of capturing a graph per image. Only torch is needed (no Triton, no ``torch.compile``), so it
runs with NVIDIA's JetPack torch wheels.

Torch is imported here only: :mod:`.fusion` imports this module for ``backend="torch"``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
import torch

from . import torch_ops
from .config import FusionConfig
from .errors import ConfigError
from .model import FusionModel
from .preprocess import GradientNormaliser
from .resample import context_shape
from .timing import StageTimer

MAX_GRAPHS = 8  # sizes kept captured at once (a stream has one; a camera switch adds one)
PIECE_BYTES = 1 << 20  # transfers move in pieces of at least this, at most MAX_PIECES a buffer,
MAX_PIECES = 4         # so the host copy of one piece overlaps the DMA of the one before


def _pieces(numel: int) -> list[slice]:
    """Contiguous ranges that split a flat uint8 buffer into 1 to MAX_PIECES pieces."""
    count = max(1, min(MAX_PIECES, numel // PIECE_BYTES))
    return [slice(i * numel // count, (i + 1) * numel // count) for i in range(count)]


def check_device(name: str) -> torch.device:
    """The torch device ``name``, or a :class:`~.errors.ConfigError` that says why it cannot
    be used.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = torch.version.cuda or "no CUDA (a CPU build)"
            raise ConfigError(f"device {name!r} requested but torch sees no CUDA device (torch "
                             f"{torch.__version__}, built with {built}); use device 'cpu' or "
                             "the numba backend")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but torch sees "
                             f"{torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", index)
    return device


class CapturedPass:
    """``fn(*inputs)`` captured once as a CUDA graph over fixed device tensors.

    The caller writes new values into ``inputs`` (same shapes, in place), calls
    :meth:`replay`, and reads ``outputs``: the graph re-runs every kernel of ``fn`` with
    one launch. ``fn`` must not copy host data to the device or synchronise (the ops of
    :mod:`.torch_ops` do neither).
    """

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]],
                 inputs: Sequence[torch.Tensor]) -> None:
        self.inputs = list(inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):  # cuDNN's algorithm choice and lazy inits, outside the capture
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.outputs: tuple[torch.Tensor, ...] = tuple(fn(*self.inputs))

    def replay(self) -> None:
        self.graph.replay()


def _pinned_like(a: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """A page-locked host tensor of ``a``'s shape and dtype, and a numpy view of it."""
    dtype = a.dtype if isinstance(a, torch.Tensor) else torch.from_numpy(np.empty(0, a.dtype)).dtype
    t = torch.empty(tuple(a.shape), dtype=dtype, pin_memory=True)
    return t, t.numpy()


class _GraphSet:
    """The captured passes of one (batch, size, layout, gradient mode) and their buffers.

    Host arrays are copied into pinned buffers, uploaded asynchronously, the graph replayed,
    the result downloaded into a pinned buffer, then copied out after one synchronisation.
    With a stream's gradient range, a first small graph gives each row's gradient min/max,
    the host updates the range, and the main graph reads it from a (1, 2) device tensor.
    """

    def __init__(self, backend: "TorchBackend", irs: np.ndarray, viss: np.ndarray, r_ch: int,
                 b_ch: int, streaming: bool) -> None:
        dev = backend.device
        self.host_vis, _ = _pinned_like(viss)
        self.host_ir, _ = _pinned_like(irs)
        self.vis = torch.empty(viss.shape, dtype=torch.uint8, device=dev)
        self.ir = torch.empty(irs.shape, dtype=torch.uint8, device=dev)
        self.rows = self.grange = None
        if streaming:
            self.rows = CapturedPass(lambda v: backend.gradient_rows(v, r_ch, b_ch),
                                     [self.vis])
            self.host_rows = [_pinned_like(t) for t in self.rows.outputs]
            self.host_grange, self.host_grange_np = _pinned_like(np.zeros((1, 2), np.float32))
            self.grange = torch.zeros((1, 2), dtype=torch.float32, device=dev)

        def main(vis, ir, *grange):
            return (backend.fuse_tensors(vis, ir, r_ch, b_ch, grange[0] if grange else None),)

        inputs = [self.vis, self.ir] + ([self.grange] if streaming else [])
        self.main = CapturedPass(main, inputs)
        self.host_out, _ = _pinned_like(self.main.outputs[0])
        self.out_pieces = _pieces(self.host_out.numel())
        self.out_done = [torch.cuda.Event() for _ in self.out_pieces]

    def run(self, irs: np.ndarray, viss: np.ndarray, outs: np.ndarray, timer: StageTimer,
            gradient: GradientNormaliser | None) -> None:
        stream = torch.cuda.current_stream()
        with timer.stage("upload"):
            # Piece by piece: host copy (torch's use every core) into the pinned buffer, then
            # an asynchronous DMA of that piece while the next one is copied.
            for src, host, dev in ((irs, self.host_ir, self.ir),
                                   (viss, self.host_vis, self.vis)):
                src, host, dev = torch.from_numpy(src).view(-1), host.view(-1), dev.view(-1)
                for piece in _pieces(src.numel()):
                    host[piece].copy_(src[piece])
                    dev[piece].copy_(host[piece], non_blocking=True)
        with timer.stage("gpu"):
            if gradient is not None:
                self.rows.replay()
                for host, dev in zip(self.host_rows, self.rows.outputs):
                    host[0].copy_(dev, non_blocking=True)
                stream.synchronize()
                self.host_grange_np[0] = gradient.update(self.host_rows[0][1][0],
                                                         self.host_rows[1][1][0])
                self.grange.copy_(self.host_grange, non_blocking=True)
            self.main.replay()
            # Download piece by piece; each is copied out as soon as its DMA is done.
            dev, host = self.main.outputs[0].view(-1), self.host_out.view(-1)
            for piece, done in zip(self.out_pieces, self.out_done):
                host[piece].copy_(dev[piece], non_blocking=True)
                done.record(stream)
            self.out_done[0].synchronize()
        with timer.stage("download"):
            dst = torch.from_numpy(outs).view(-1)
            for piece, done in zip(self.out_pieces, self.out_done):
                done.synchronize()
                dst[piece].copy_(host[piece])


class TorchBackend:
    """The forward pass of :mod:`.torch_ops` on a torch device (CPU or CUDA; fp16 context
    network optional; CUDA graphs on GPUs unless ``config.cuda_graph`` is off).

    Raises:
        ConfigError: the device does not exist here (no CUDA, or no such GPU), at
            construction: a node fails at start, not at every frame.
    """

    context_engine = "torch"

    def __init__(self, model: FusionModel, config: FusionConfig, threads: int) -> None:
        self.stride, self.threads, self.fp16 = config.stride, threads, config.precision == "fp16"
        self.device = check_device(config.device)
        self.context_net = model.build_context_net(str(self.device))
        if self.fp16:
            self.context_net = self.context_net.half()
        self.lut = torch.from_numpy(model.lut).to(self.device)
        cuda = self.device.type == "cuda"
        self.kernels = None  # the fused CUDA kernels, when used
        if cuda and config.gpu_kernels != "torch":
            from .cuda_kernels import FusedKernels, cupy_available

            if cupy_available():
                self.kernels = FusedKernels(model, self.device)
            elif config.gpu_kernels == "cupy":
                raise ConfigError("gpu_kernels 'cupy' needs CuPy, which does not import or sees"
                                 " no GPU here (pip install cupy-cuda12x, or cupy-cuda13x for "
                                 "CUDA 13); 'auto' falls back to the torch ops")
        self.pixel_kernels = "CuPy CUDA kernels" if self.kernels else "torch ops"
        self.synchronize = (lambda: torch.cuda.synchronize(self.device)) if cuda else None
        self.use_graphs = config.uses_cuda_graph
        self._graphs: OrderedDict[tuple, _GraphSet] = OrderedDict()
        self._seen: set[tuple] = set()

    def reset(self) -> None:
        """Drop the captured graphs and their buffers (after a warm-up on a dummy size)."""
        self._graphs.clear()
        self._seen.clear()

    def run(self, ir: np.ndarray, vis: np.ndarray, r_ch: int, b_ch: int, out: np.ndarray,
            timer: StageTimer, gradient: GradientNormaliser | None) -> None:
        """Fuse a validated pair into ``out`` (see :meth:`~.fusion.Fuser.fuse`)."""
        self.run_batch(ir[None], vis[None], r_ch, b_ch, out[None], timer, gradient)

    def run_batch(self, irs: np.ndarray, viss: np.ndarray, r_ch: int, b_ch: int,
                  outs: np.ndarray, timer: StageTimer,
                  gradient: GradientNormaliser | None = None) -> None:
        """Fuse a batch of validated, same-size pairs: ``irs`` (B, H, W), ``viss`` (B, H, W[,
        C]) uint8 into ``outs`` (B, H, W[, 3]) uint8. ``gradient`` (a stream's range) needs
        B = 1."""
        if gradient is not None and irs.shape[0] != 1:
            raise ValueError("a stream's gradient range fuses one frame at a time")
        context_shape(*irs.shape[1:], self.stride)  # FusionInputError for frames too small
        torch.set_num_threads(self.threads)
        if self.use_graphs:
            key = (viss.shape, r_ch, b_ch, gradient is not None)
            graphs = self._graphs.get(key)
            if graphs is None and key in self._seen:
                with torch.cuda.device(self.device):
                    graphs = self._graphs[key] = _GraphSet(self, irs, viss, r_ch, b_ch,
                                                           gradient is not None)
                if len(self._graphs) > MAX_GRAPHS:
                    self._graphs.popitem(last=False)
            self._seen.add(key)
            if graphs is not None:
                self._graphs.move_to_end(key)
                with torch.cuda.device(self.device):
                    graphs.run(irs, viss, outs, timer, gradient)
                return
        self._run_eager(irs, viss, r_ch, b_ch, outs, timer, gradient)

    def fuse_tensors(self, vis: torch.Tensor, ir: torch.Tensor, r_ch: int, b_ch: int,
                     gradient_range: torch.Tensor | None) -> torch.Tensor:
        """The pass on device tensors: :func:`~.torch_ops.fuse_u8`, or the same with the
        fused CUDA kernels."""
        if self.kernels is not None:
            return self.kernels.fuse_u8(self.context_net, vis, ir, self.stride, r_ch, b_ch,
                                        gradient_range, self.fp16)
        return torch_ops.fuse_u8(self.lut, self.context_net, vis, ir, self.stride, r_ch, b_ch,
                                 gradient_range, self.fp16)

    def gradient_rows(self, vis: torch.Tensor, r_ch: int, b_ch: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's gradient min and max, (B, H) each (see :func:`~.torch_ops.gradient_rows`)."""
        if self.kernels is not None:
            return self.kernels.gradient_rows(vis, r_ch, b_ch)
        return torch_ops.gradient_rows(vis, r_ch, b_ch)

    def _run_eager(self, irs, viss, r_ch, b_ch, outs, timer, gradient) -> None:
        dev = self.device
        with torch.inference_mode():
            with timer.stage("upload"):
                vis, ir = torch.from_numpy(viss).to(dev), torch.from_numpy(irs).to(dev)
            with timer.stage("fuse"):
                grange = None
                if gradient is not None:
                    lo, hi = self.gradient_rows(vis, r_ch, b_ch)
                    grange = torch.tensor([gradient.update(lo[0].cpu().numpy(),
                                                           hi[0].cpu().numpy())],
                                          dtype=torch.float32, device=dev)
                fused = self.fuse_tensors(vis, ir, r_ch, b_ch, grange)
            with timer.stage("download"):
                torch.from_numpy(outs).copy_(fused)
