"""Calibrating a running node: collect pairs from the stream, estimate, refuse or swap.

No rclpy: the node feeds :class:`CalibrationJob` from its worker thread and runs
:meth:`CalibrationJob.estimate` on a thread of its own; the decision rule is the model's
(a result that does not beat the registration in use is refused, the old one keeps running).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..core.calibration import (
    CalibrationResult,
    alignment_score,
    estimate_homography,
    write_calibration,
)
from ..core.errors import ConfigError
from ..core.preprocess import Registration, RegistrationError

# A new calibration must beat the one in use by this much (score units): re-estimates of a
# good calibration differ by noise, and the registration should not flap with it.
MIN_GAIN = 0.02


class CalibrationJob:
    """Collects ``pairs`` thermal/visible pairs at least ``interval`` s apart, then estimates.

    Attributes:
        state: ``"collecting k/N"``, ``"estimating"``, ``"swapped: ..."``, ``"refused: ..."``
            or ``"failed: ..."``, for diagnostics.

    Example:
        >>> job = CalibrationJob(pairs=2, interval=1.0)
        >>> job.offer(0.0, np.zeros((4, 4), np.uint8), np.zeros((8, 8, 3), np.uint8))
        False
        >>> job.state
        'collecting 1/2'
    """

    def __init__(self, pairs: int, interval: float) -> None:
        if pairs < 1:
            raise ConfigError(f"pairs must be >= 1, got {pairs}")
        self.needed, self.interval = pairs, interval
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self._last: float | None = None
        self.state = f"collecting 0/{pairs}"
        self.result: CalibrationResult | None = None
        self.done = threading.Event()

    def offer(self, now: float, thermal8: np.ndarray, visible: np.ndarray) -> bool:
        """Keep this pair if the last one is ``interval`` s old. True for the pair that
        completes the set (start :meth:`estimate` then), False before and after it."""
        if len(self.pairs) >= self.needed:
            return False
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        self.pairs.append((np.array(thermal8), np.array(visible)))  # own copies
        self.state = f"collecting {len(self.pairs)}/{self.needed}"
        return len(self.pairs) >= self.needed

    def estimate(self, current: Registration, output: Path) -> Path | None:
        """Estimate from the collected pairs; write ``output`` and return it when the result
        is confident and fits better than ``current``; else ``None`` (``state`` says why)."""
        try:
            self.state = "estimating"
            result = self.result = estimate_homography(self.pairs)
            rgb_size = result.rgb_size
            try:
                now_score = float(np.mean([alignment_score(current(ir, rgb_size), vis)
                                           for ir, vis in self.pairs]))
            except RegistrationError:  # the registration in use does not even fit the sizes
                now_score = 0.0
            if not result.confident:
                self.state = f"refused: {result.reason}"
                return None
            if not result.score_after > now_score + MIN_GAIN:
                self.state = (f"refused: the new fit ({result.score_after:.3f}) does not beat "
                              f"the registration in use ({now_score:.3f}) by {MIN_GAIN}")
                return None
            path = write_calibration(result, output)
            self.state = (f"swapped: score {now_score:.3f} -> {result.score_after:.3f}, "
                          f"written to {path}")
            return path
        except Exception as exc:  # noqa: BLE001 - reported in diagnostics, node keeps running
            self.state = f"failed: {type(exc).__name__}: {exc}"
            return None
        finally:
            self.done.set()
