"""What a fusion node reports, computed without rclpy: rates, silences, latency, counters.

:class:`NodeStats` is fed by the node's callbacks (a message arrived, a pair was fused or
refused) and turns that, on request, into plain values: the groups of ``/diagnostics``
(:func:`diagnostic_groups`) and the fields of ``fused/status`` (:func:`status_fields`). The
node only copies them into messages, and everything here is tested on made-up times.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from .sync import RGB, THERMAL, SyncStats, Topic


class Level(IntEnum):
    """Diagnostic levels, with the values of ``diagnostic_msgs/DiagnosticStatus``."""

    OK = 0
    WARN = 1
    ERROR = 2


class RateMeter:
    """Message rate over a sliding window of receipt times (monotonic seconds).

    Example:
        >>> meter = RateMeter(window=2.0)
        >>> for t in (0.0, 0.5, 1.0, 1.5):
        ...     meter.tick(t)
        >>> meter.rate(now=1.5), meter.silent_for(now=2.0)
        (2.0, 0.5)
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window, self.times = window, deque(maxlen=1000)
        self.last: float | None = None  # kept apart: the window forgets, silence must not

    def tick(self, now: float) -> None:
        self.times.append(now)
        self.last = now

    def rate(self, now: float) -> float:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()
        return len(self.times) / self.window

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last message; ``None`` if none ever came."""
        return None if self.last is None else now - self.last


@dataclass(frozen=True)
class StatsSnapshot:
    """The node's state at one moment, in plain values.

    Attributes:
        rate_hz, silent_s: per input (indexed by :class:`~.sync.Topic`); ``silent_s`` is
            ``None`` before the first message.
        input_level, input_problems: worst input state and what is wrong, in words.
        fused, fused_rate_hz: pairs published, and their recent rate.
        latency_p50_ms, latency_p99_ms: pair complete -> published, recent pairs (0 before any).
        offset_mean_ms, offset_abs_max_ms: RGB minus thermal stamp of recent pairs.
        bad_inputs, last_error: pairs refused as bad input, and the newest reason.
        last_header: header of the newest fused frame (``None`` before the first).
        registration_score: the newest fit of the registered thermal to the visible image
            (NaN before the first check).
        stage_p50_ms: median milliseconds of each stage of a pair's path in the node
            (handover to the worker, decode, agc, ..., publish), over recent pairs.
    """

    rate_hz: tuple[float, float]
    silent_s: tuple[float | None, float | None]
    input_level: Level
    input_problems: list[str]
    fused: int
    fused_rate_hz: float
    latency_p50_ms: float
    latency_p99_ms: float
    offset_mean_ms: float
    offset_abs_max_ms: float
    bad_inputs: int
    last_error: str
    last_header: Any
    registration_score: float = float("nan")
    stage_p50_ms: dict[str, float] = field(default_factory=dict)


class NodeStats:
    """Counters and rates of one fusion node.

    Args:
        window: seconds over which rates are measured.
        history: pairs kept for the latency and offset percentiles.

    Example:
        >>> stats = NodeStats()
        >>> stats.message(THERMAL, now=0.00); stats.message(RGB, now=0.01)
        >>> stats.pair_fused(now=0.03, latency_s=0.02, offset_ns=5_000_000, header="h",
        ...                  stages={"agc": 1.5, "publish": 0.5})
        >>> snap = stats.snapshot(now=1.0, input_timeout=0.4)
        >>> snap.fused, snap.latency_p50_ms, snap.offset_mean_ms, snap.input_level.name
        (1, 20.0, 5.0, 'ERROR')
        >>> snap.stage_p50_ms
        {'agc': 1.5, 'publish': 0.5}
        >>> snap.input_problems
        ['thermal silent for 1.0 s', 'rgb silent for 1.0 s']
    """

    def __init__(self, window: float = 2.0, history: int = 300) -> None:
        self._lock = threading.Lock()  # fed from the executor and the worker thread
        self.rates = (RateMeter(window), RateMeter(window))
        self.fused_rate = RateMeter(window)
        self.latency_ms: deque[float] = deque(maxlen=history)
        self.offsets_ms: deque[float] = deque(maxlen=history)
        self.stages_ms: dict[str, deque[float]] = {}
        self._history = history
        self.fused = 0
        self.bad_inputs = 0
        self.last_error = ""
        self.last_header: Any = None
        self.registration_score = float("nan")
        self._last_check: float | None = None

    def message(self, topic: Topic, now: float) -> None:
        """A camera message of ``topic`` arrived at ``now`` (monotonic s)."""
        with self._lock:
            self.rates[topic].tick(now)

    def pair_fused(self, now: float, latency_s: float, offset_ns: int, header: Any,
                   stages: dict[str, float] | None = None) -> None:
        """A pair was published ``latency_s`` after it was complete; ``stages``: where the
        time went (ms per stage)."""
        with self._lock:
            self.fused += 1
            self.fused_rate.tick(now)
            self.latency_ms.append(latency_s * 1e3)
            self.offsets_ms.append(offset_ns / 1e6)
            self.last_header = header
            for name, ms in (stages or {}).items():
                self.stages_ms.setdefault(name, deque(maxlen=self._history)).append(ms)

    def registration_due(self, now: float, period: float) -> bool:
        """Whether to score the registration now (every ``period`` s; 0: never)."""
        if period <= 0 or (self._last_check is not None and now - self._last_check < period):
            return False
        self._last_check = now
        return True

    def registration_checked(self, score: float) -> None:
        self.registration_score = float(score)

    def bad_input(self, error: str) -> None:
        """A pair was refused as bad input (the reason is kept)."""
        with self._lock:
            self.bad_inputs += 1
            self.last_error = error

    def snapshot(self, now: float, input_timeout: float) -> StatsSnapshot:
        """Plain values at ``now``; an input silent longer than ``input_timeout`` (s) is an
        error, one never heard from a warning."""
        with self._lock:
            silent = tuple(meter.silent_for(now) for meter in self.rates)
            rate = tuple(meter.rate(now) for meter in self.rates)
            level, problems = Level.OK, []
            for topic in (THERMAL, RGB):
                label, s = topic.name.lower(), silent[topic]
                if s is None:
                    level = max(level, Level.WARN)
                    problems.append(f"waiting for {label}")
                elif s > input_timeout:
                    level = Level.ERROR
                    problems.append(f"{label} silent for {s:.1f} s")
            lat = np.asarray(self.latency_ms) if self.latency_ms else np.zeros(1)
            off = np.asarray(self.offsets_ms) if self.offsets_ms else np.zeros(1)
            return StatsSnapshot(
                rate_hz=rate, silent_s=silent, input_level=level, input_problems=problems,
                fused=self.fused, fused_rate_hz=self.fused_rate.rate(now),
                latency_p50_ms=float(np.percentile(lat, 50)),
                latency_p99_ms=float(np.percentile(lat, 99)),
                offset_mean_ms=float(off.mean()), offset_abs_max_ms=float(np.abs(off).max()),
                bad_inputs=self.bad_inputs, last_error=self.last_error,
                last_header=self.last_header, registration_score=self.registration_score,
                stage_p50_ms={k: float(np.median(v)) for k, v in self.stages_ms.items()})


@dataclass(frozen=True)
class ModelInfo:
    """The model in use, as reported: id, path, engine and load state."""

    model_id: str
    path: str
    engine: str
    state: str = "loaded"  # or "kept <id>; refused: <reason>" after a refused swap


@dataclass(frozen=True)
class RegistrationInfo:
    """The registration in use: mode, its calibration file and the score it was made with."""

    mode: str
    calibration_file: str = ""
    calibrated_score: float = float("nan")  # score_after of lutfuse calibrate, if known


@dataclass(frozen=True)
class DiagnosticGroup:
    """One ``diagnostic_msgs/DiagnosticStatus``: level, name suffix, message, key/values."""

    level: Level
    suffix: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


def registration_group(snap: StatsSnapshot, reg: RegistrationInfo) -> DiagnosticGroup:
    """Registration health: WARN when the fit falls below half of the calibrated score (rig
    bumped, wrong file, wrong cameras), or below 0.1 without a calibrated score."""
    score, ref = snap.registration_score, reg.calibrated_score
    values = [("mode", reg.mode), ("calibration file", reg.calibration_file or "(none)"),
              ("score", f"{score:.3f}"), ("calibrated score", f"{ref:.3f}")]
    if math.isnan(score):
        return DiagnosticGroup(Level.OK, "registration", "not checked yet", values)
    floor = 0.5 * ref if not math.isnan(ref) else 0.1
    if score < floor:
        return DiagnosticGroup(Level.WARN, "registration",
                               f"thermal fits the visible image poorly: score {score:.3f} < "
                               f"{floor:.3f} (rig moved, wrong calibration file or cameras?)"
                               " - recalibrate: lutfuse calibrate", values)
    return DiagnosticGroup(Level.OK, "registration", f"fit {score:.3f}", values)


def diagnostic_groups(snap: StatsSnapshot, sync: SyncStats, dropped: int,
                      model: ModelInfo, registration: RegistrationInfo | None = None,
                      calibration: str | None = None) -> list[DiagnosticGroup]:
    """The groups of the node's ``/diagnostics``: inputs, sync, processing, model and
    (given their info) registration and the state of a calibration (``~/calibrate``)."""
    inputs = []
    for topic in (THERMAL, RGB):
        label, silent = topic.name.lower(), snap.silent_s[topic]
        inputs += [(f"{label} rate (Hz)", f"{snap.rate_hz[topic]:.1f}"),
                   (f"{label} silent (s)", "never received" if silent is None
                    else f"{silent:.2f}")]
    processing = [("fused", snap.fused), ("fused rate (Hz)", f"{snap.fused_rate_hz:.1f}"),
                  ("latency p50 (ms)", f"{snap.latency_p50_ms:.1f}"),
                  ("latency p99 (ms)", f"{snap.latency_p99_ms:.1f}"),
                  ("dropped stale pairs", dropped), ("bad input pairs", snap.bad_inputs),
                  ("last error", snap.last_error)]
    sync_values = [("pairs", sync.pairs), ("unmatched messages", sync.unmatched),
                   ("late messages", sync.late), ("resets", sync.resets),
                   ("offset rgb-thermal mean (ms)", f"{snap.offset_mean_ms:.2f}"),
                   ("offset abs max (ms)", f"{snap.offset_abs_max_ms:.2f}")]
    model_values = [("model id", model.model_id),
                    ("model path", model.path or "(package default)"),
                    ("engine", model.engine)]

    def text(values: list[tuple[str, Any]]) -> list[tuple[str, str]]:
        return [(k, str(v)) for k, v in values]

    return [
        DiagnosticGroup(snap.input_level, "inputs", "; ".join(snap.input_problems)
                        or "receiving", text(inputs)),
        DiagnosticGroup(Level.OK, "sync", f"{sync.pairs} pairs", text(sync_values)),
        DiagnosticGroup(Level.WARN if snap.bad_inputs else Level.OK, "processing",
                        snap.last_error if snap.bad_inputs else f"{snap.fused} fused",
                        text(processing)),
        DiagnosticGroup(Level.OK if model.state == "loaded" else Level.WARN, "model",
                        model.state, text(model_values)),
        DiagnosticGroup(Level.OK, "timing", "median ms per stage of recent pairs",
                        [(f"{k} (ms)", f"{v:.2f}") for k, v in snap.stage_p50_ms.items()]),
    ] + ([registration_group(snap, registration)] if registration is not None else []) + \
        ([DiagnosticGroup(Level.WARN if calibration.startswith(("refused", "failed"))
                          else Level.OK, "calibration", calibration)]
         if calibration is not None else [])


def status_fields(snap: StatsSnapshot, sync: SyncStats, dropped: int, model: ModelInfo,
                  agc_range: tuple[float, float] | None) -> dict[str, Any]:
    """The fields of ``lutfuse_ros/FusionStatus`` (``msg/FusionStatus.msg``) but the header.

    A silence of ``-1`` means never received; the AGC range is NaN before the first frame.
    """
    silent = [-1.0 if s is None else s for s in snap.silent_s]
    low, high = (float(v) for v in agc_range) if agc_range is not None \
        else (float("nan"), float("nan"))
    return dict(model_id=model.model_id, engine=model.engine,
                thermal_rate_hz=snap.rate_hz[THERMAL], rgb_rate_hz=snap.rate_hz[RGB],
                thermal_silent_s=silent[THERMAL], rgb_silent_s=silent[RGB],
                latency_p50_ms=snap.latency_p50_ms, latency_p99_ms=snap.latency_p99_ms,
                sync_offset_ms=snap.offset_mean_ms, pairs_synced=sync.pairs,
                unmatched_messages=sync.unmatched, pairs_fused=snap.fused,
                pairs_dropped=dropped, bad_inputs=snap.bad_inputs, last_error=snap.last_error,
                fused_rate_hz=snap.fused_rate_hz, agc_low=low, agc_high=high,
                registration_score=snap.registration_score)
