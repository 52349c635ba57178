"""How to run the forward pass: :class:`FusionConfig` and its vocabularies.

A leaf module (no imports of the engine), so the dispatcher (:mod:`.fusion`), the backends
(:mod:`.backends`, :mod:`.torch_backend`), the node's parameters and the CLIs all read one
definition.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from .errors import ConfigError
from .onnx_context import CONTEXT_ENGINES
from .resample import context_stride

VIS_ORDERS = ("rgb", "bgr")
BACKENDS = ("numba", "torch")
RENAMED_BACKENDS = {"numpy": "numba"}  # old name -> name; the old one still works, warned
PRECISIONS = ("fp32", "fp16")
GPU_KERNELS = ("auto", "cupy", "torch")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class FusionConfig:
    """How to run the forward pass.

    Attributes:
        exact: run the authors' forward pass (context network at full resolution).
        context_scale: resolution of the context network in fast mode, 1/k. The default 1/16
            scored as well as exact mode on MSRS/RoadScene test sets at a fraction of the
            cost (README, section "context_scale"); frames need at least 64x64 pixels.
        backend: ``"numba"`` (compiled CPU kernels; ``"numpy"`` is its old, deprecated name)
            or ``"torch"``.
        device: torch device of the torch backend (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        threads: CPU threads for kernels and torch; 0 uses every core.
        context_engine: what runs the context network of the numba backend: ``"auto"``
            (ONNX Runtime, else OpenCV, when the model carries ONNX; else torch),
            ``"onnxruntime"``, ``"opencv"`` or ``"torch"``. The torch backend uses torch.
        precision: ``"fp32"`` or ``"fp16"`` (torch backend: the context network in half
            precision, for GPUs; the lookup stays fp32; ``benchmarks/fp16_quality.py``).
        cuda_graph: on a CUDA device, capture the whole pass (upload from pinned host
            buffers, forward pass, download) once per frame size and batch as a CUDA graph
            and replay it: one launch a frame instead of ~70 (README, "GPU"). ``False``
            runs the same ops eagerly.
        gpu_kernels: what does the per-pixel work on a CUDA device: ``"cupy"``, three fused
            CUDA kernels (:mod:`.cuda_kernels`, needs CuPy); ``"torch"``, the torch ops of
            :mod:`.torch_ops`; ``"auto"``, CuPy's when CuPy sees the GPU, else torch's.

    Example:
        >>> FusionConfig(context_scale=0.25).stride
        4
        >>> FusionConfig(backend="gpu")
        Traceback (most recent call last):
        ...
        lutfuse_ros.core.errors.ConfigError: backend must be one of ('numba', 'torch'), got 'gpu'
    """

    exact: bool = False
    context_scale: float = 0.0625
    backend: str = "numba"
    device: str = "cpu"
    threads: int = 0
    context_engine: str = "auto"
    precision: str = "fp32"
    cuda_graph: bool = True
    gpu_kernels: str = "auto"

    def __post_init__(self) -> None:
        context_stride(self.context_scale)  # raises unless 1/k
        if self.backend in RENAMED_BACKENDS:
            new = RENAMED_BACKENDS[self.backend]
            warnings.warn(f"backend {self.backend!r} is now called {new!r}; the old name will "
                          "go", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "backend", new)  # frozen: set once, here
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not _DEVICE.match(self.device):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.backend == "numba" and self.device != "cpu":
            raise ConfigError("the numba backend runs on the CPU; use backend='torch' for "
                             f"device {self.device!r}")
        if self.gpu_kernels not in GPU_KERNELS:
            raise ConfigError(f"gpu_kernels must be one of {GPU_KERNELS}, got "
                             f"{self.gpu_kernels!r}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")
        if self.context_engine not in CONTEXT_ENGINES:
            raise ConfigError(f"context_engine must be one of {CONTEXT_ENGINES}, got "
                             f"{self.context_engine!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16" and self.backend != "torch":
            raise ConfigError("fp16 is for the torch backend (GPUs); the numba backend is fp32")
        if self.backend == "torch" and self.context_engine not in ("auto", "torch"):
            raise ConfigError("the torch backend runs its context network in torch; "
                             f"context_engine {self.context_engine!r} needs backend='numba'")

    @property
    def stride(self) -> int:
        """Pixels per context cell along each axis (1 in exact mode)."""
        return 1 if self.exact else context_stride(self.context_scale)

    @property
    def uses_cuda_graph(self) -> bool:
        """Whether the pass is captured and replayed (torch backend on a CUDA device)."""
        return self.backend == "torch" and self.device.startswith("cuda") and self.cuda_graph
