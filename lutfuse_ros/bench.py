"""Speed of the forward pass: per stage and total, exact vs fast, numpy vs torch, CPU vs GPU.

Prints the machine (CPU, cores, threads, GPU) and the median and p90 of ``runs`` timed frames
after warm-up, host to host (numpy uint8 in, numpy uint8 out, what the node and ``lutfuse
fuse`` see); :func:`run_benchmark` returns the same figures for ``--json``.
"""
from __future__ import annotations

import os
import platform
import time

import numpy as np

from .core import Fuser, FusionConfig, load_model
from .core.errors import ConfigError
from .core.geometry import Size
from .core.preprocess import GradientNormaliser
from .core.synthetic import synthetic_pair

DEFAULT_SIZES = (Size(640, 480), Size(1280, 1024))
TORCH_VARIANTS = ("", "eager", "ops", "ops-eager")
AUTHORS_STAND_IN = "torch:ops-eager"  # exact mode: the authors' maths, one launch per op


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_fuser(fuser: Fuser, ir: np.ndarray, vis: np.ndarray, runs: int,
               warmup: int = 3, gradient: GradientNormaliser | None = None) -> dict:
    """Median/p90 total and per-stage medians (ms) over ``runs`` frames (with ``gradient``:
    a stream's gradient range, as the node fuses)."""
    out = np.empty(vis.shape, np.uint8)
    for _ in range(warmup):
        fuser.fuse(ir, vis, out=out, gradient=gradient)
    totals, stages = [], []
    for _ in range(runs):
        t = {}
        t0 = time.perf_counter()
        fuser.fuse(ir, vis, out=out, timings=t, gradient=gradient)
        totals.append((time.perf_counter() - t0) * 1e3)
        stages.append(t)
    return {"median_ms": float(np.median(totals)), "p90_ms": float(np.percentile(totals, 90)),
            "fps": float(1e3 / np.median(totals)),
            "stages_median_ms": {k: float(np.median([s[k] for s in stages])) for k in stages[0]}}


def interleaved_ratio(fast: Fuser, slow: Fuser, ir: np.ndarray, vis: np.ndarray,
                      rounds: int, fast_per_round: int = 5) -> dict:
    """Speed ratio slow / fast measured in alternation: each round times ``fast_per_round``
    fast frames (their median) and then one slow frame, so a shared machine's slow spells
    hit both sides of a round alike. Back-to-back blocks (:func:`time_fuser`) can put a
    quiet minute on one side and a busy one on the other; ratios of such blocks moved by
    1.5x between runs an hour apart here."""
    out = np.empty(vis.shape, np.uint8)
    ratios, fast_ms, slow_ms = [], [], []
    for _ in range(rounds):
        times = []
        for _ in range(fast_per_round):
            t0 = time.perf_counter()
            fast.fuse(ir, vis, out=out)
            times.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        slow.fuse(ir, vis, out=out)
        slow_ms.append((time.perf_counter() - t0) * 1e3)
        fast_ms.append(float(np.median(times)))
        ratios.append(slow_ms[-1] / fast_ms[-1])
    return {"rounds": rounds, "ratio_median": float(np.median(ratios)),
            "ratio_min": float(np.min(ratios)), "ratio_max": float(np.max(ratios)),
            "fast_ms_median": float(np.median(fast_ms)),
            "slow_ms_median": float(np.median(slow_ms))}


def time_batches(fuser: Fuser, ir: np.ndarray, vis: np.ndarray, batch: int,
                 runs: int) -> dict:
    """Frames per second of :meth:`Fuser.fuse_batch` on ``batch`` frames, median of
    ``runs`` calls after two warm-ups (the second captures the graph on a GPU)."""
    irs, viss = [ir] * batch, [vis] * batch
    for _ in range(2):
        fuser.fuse_batch(irs, viss, batch_size=batch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fuser.fuse_batch(irs, viss, batch_size=batch)
        times.append(time.perf_counter() - t0)
    return {"batch": batch, "median_ms": float(np.median(times) * 1e3),
            "fps": float(batch / np.median(times))}


def _variant(name: str, exact: bool, context_scale: float, threads: int,
             device: str) -> FusionConfig:
    """``"numba"``, ``"numba:<context engine>"``, ``"torch"`` or on a GPU ``"torch:eager"``
    (no CUDA graph), ``"torch:ops"`` (torch ops, not the fused kernels), ``"torch:ops-eager"``
    (both) -> a config."""
    backend, _, engine = name.partition(":")
    dev = device if backend == "torch" else "cpu"
    if backend == "torch":
        if engine not in TORCH_VARIANTS:
            raise ConfigError(f"torch variants are torch[:{'|'.join(TORCH_VARIANTS[1:])}], got "
                             f"{name!r}")
        return FusionConfig(exact=exact, context_scale=context_scale, backend=backend,
                            device=dev, threads=threads, cuda_graph="eager" not in engine,
                            gpu_kernels="torch" if "ops" in engine else "auto")
    return FusionConfig(exact=exact, context_scale=context_scale, backend=backend, device=dev,
                        threads=threads, context_engine=engine or FusionConfig.context_engine)


def gpu_name(device: str) -> str:
    """The GPU's name and torch's CUDA version, or "" on the CPU."""
    if not device.startswith("cuda"):
        return ""
    import torch

    return f"{torch.cuda.get_device_name(torch.device(device))}, CUDA {torch.version.cuda}"


def run_benchmark(sizes: tuple[Size, ...] = DEFAULT_SIZES, runs: int = 30,
                  context_scale: float | None = None, threads: int = 0,
                  backends=("numba", "torch"), device: str = "cpu",
                  exact_runs: int | None = None, ratio_rounds: int = 10, batch: int = 0,
                  log=print) -> dict:
    """Time each backend (``"numba"``, ``"numba:onnxruntime"``, ``"numba:opencv"``,
    ``"numba:torch"``, ``"torch"``, ``"torch:eager"``) in fast and exact mode; outputs are
    compared with the first backend's (largest difference in grey levels, share of
    differing values). With both ``numpy`` and ``torch``, the fast pass's speed-up over the
    authors' forward pass is also measured in ``ratio_rounds`` alternating rounds
    (:func:`interleaved_ratio`). On a GPU, ``torch`` (CUDA graphs) is also given as a
    ratio to the exact pass run eagerly, the authors' maths as their code runs it (one
    launch per op), timed in the same run; ``batch`` > 1 adds the batched frames/s."""
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    model = load_model()
    if context_scale is None:
        context_scale = FusionConfig().context_scale
    threads = threads or os.cpu_count() or 1
    result = {"machine": {"cpu": cpu_name(), "arch": platform.machine(),
                          "cores": os.cpu_count(), "threads": threads, "torch": torch_version,
                          "device": device, "gpu": gpu_name(device)},
              "runs": runs, "context_scale": context_scale, "model_id": model.model_id}
    log(f"CPU: {result['machine']['cpu']} ({platform.machine()}), {os.cpu_count()} cores, "
        f"{threads} threads, torch {torch_version}, device {device} "
        f"{result['machine']['gpu']}; median/p90 of {runs} runs "
        "after warm-up; 'vs first' = largest difference from the first backend's output")
    for size in sizes:
        ir, vis = synthetic_pair(seed=1, shape=Size(*size).shape)
        key = str(Size(*size))
        modes, first, fusers = {}, {}, {}
        for backend in backends:
            for exact in (False, True):
                fuser = Fuser(model, _variant(backend, exact, context_scale, threads, device))
                mode = "exact" if exact else "fast"
                name = f"{mode}_{backend}"
                fusers[name] = fuser
                n = (exact_runs or runs) if exact else runs
                modes[name] = stats = time_fuser(fuser, ir, vis, n)
                fused = fuser.fuse(ir, vis).astype(np.int16)
                ref = first.setdefault(mode, fused)
                stats["max_diff_vs_first"] = int(np.abs(fused - ref).max())
                stats["share_differing_vs_first"] = float((fused != ref).mean())
                stage_txt = ", ".join(f"{k} {v:.2f}" for k, v in
                                      stats["stages_median_ms"].items())
                log(f"{key} {name:22s} median {stats['median_ms']:8.3f} ms "
                    f"({stats['fps']:7.0f} fps)  p90 {stats['p90_ms']:8.3f} ms  "
                    f"vs first {stats['max_diff_vs_first']} LSB"
                    f" ({100 * stats['share_differing_vs_first']:.3f} %)  [{stage_txt}]")
        entry = {"modes": modes}
        if "fast_numba" in modes and "exact_numba" in modes:
            entry["fast_ms"] = modes["fast_numba"]["median_ms"]
            entry["exact_ms"] = modes["exact_numba"]["median_ms"]
            entry["speedup_fast_vs_exact"] = entry["exact_ms"] / entry["fast_ms"]
            log(f"{key} fast (numpy) is {entry['speedup_fast_vs_exact']:.1f}x faster than exact")
        if "fast_numba" in modes and "exact_torch" in modes:
            # exact mode on torch is the authors' forward pass (their ops, parity-tested)
            authors = entry["authors_ms"] = modes["exact_torch"]["median_ms"]
            entry["speedup_fast_vs_authors"] = authors / modes["fast_numba"]["median_ms"]
            log(f"{key} fast (numpy) is {entry['speedup_fast_vs_authors']:.1f}x faster than the "
                "authors' forward pass (exact, torch) in this run")
            if ratio_rounds > 0:
                r = entry["speedup_fast_vs_authors_interleaved"] = interleaved_ratio(
                    fusers["fast_numba"], fusers["exact_torch"], ir, vis, ratio_rounds)
                log(f"{key} interleaved, {ratio_rounds} rounds: fast (numpy) is "
                    f"{r['ratio_median']:.1f}x faster than the authors' forward pass (rounds "
                    f"{r['ratio_min']:.1f}-{r['ratio_max']:.1f}x; fast {r['fast_ms_median']:.2f}"
                    f" ms, authors {r['slow_ms_median']:.1f} ms)")
        if device.startswith("cuda") and "torch" in backends:
            ref = f"exact_{AUTHORS_STAND_IN}"
            if ref not in fusers:
                fusers[ref] = Fuser(model, _variant(AUTHORS_STAND_IN, True, context_scale,
                                                    threads, device))
                modes[ref] = time_fuser(fusers[ref], ir, vis, exact_runs or runs)
            eager = entry["authors_eager_ms"] = modes[ref]["median_ms"]
            stats = modes["fast_torch_stream"] = time_fuser(
                fusers["fast_torch"], ir, vis, runs, gradient=GradientNormaliser("stable"))
            log(f"{key} fast torch on {device} with a stream's gradient range (as the node "
                f"runs it: a second small graph and a host round trip): "
                f"{stats['median_ms']:.3f} ms, {stats['fps']:.0f} fps")
            for mode in ("fast", "exact"):
                stats = modes[f"{mode}_torch"]
                ratio = entry[f"{mode}_gpu_vs_exact_eager"] = eager / stats["median_ms"]
                log(f"{key} {mode} torch on {device} ({fusers[f'{mode}_torch'].engine}): "
                    f"{stats['median_ms']:.3f} ms, {stats['fps']:.0f} fps, {ratio:.1f}x the "
                    f"exact torch-ops pass run eagerly ({eager:.2f} ms, the authors' maths "
                    "and launches)")
        if batch > 1:
            name = next((b for b in backends if b.startswith("torch")), backends[0])
            fuser = fusers[f"fast_{name}"]
            r = entry["batched"] = time_batches(fuser, ir, vis, batch, max(3, runs // 5))
            log(f"{key} fast {name} batches of {batch}: {r['median_ms']:.2f} ms a batch, "
                f"{r['fps']:.0f} frames/s")
        result[key] = entry
    return result
