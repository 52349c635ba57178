"""Compile the numba kernels into numba's on-disk cache now, not at a node's first start.

numba compiles the kernels on first use (~10 s on 2 cores) and caches the machine code next
to ``fusion_kernels.py`` and ``agc_kernels.py``. A fresh install space has no cache, so the
first ``ros2 launch`` after an install would wait; the colcon install step runs this module
once instead (``python -m lutfuse_ros.core.warm_cache``; CMakeLists.txt), so the cache ships
in the install space. It fuses dummy frames through the default configuration, colour and
grey, which is what selects the kernels' signatures (read-only inputs are copied before any
kernel, ``fusion_kernels.writable``), and a 16-bit frame through the AGC.
"""
from __future__ import annotations

import time

import numpy as np


def warm_kernel_cache() -> float:
    """Fuse dummy colour and grey pairs with the default model; returns the seconds it took."""
    from . import Fuser, load_model
    from .preprocess import warm_up_agc

    start = time.perf_counter()
    fuser = Fuser(load_model())
    fuser.warm_up()
    fuser.fuse(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8))
    warm_up_agc()
    return time.perf_counter() - start


if __name__ == "__main__":
    print(f"lutfuse_ros: numba kernels compiled and cached in {warm_kernel_cache():.1f} s")
