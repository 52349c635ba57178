"""What the fusion node reports, computed without ROS: rates, silences, latency percentiles,
counters, and the diagnostics/status values built from them (``stream/stats.py``)."""
from __future__ import annotations

import math
import threading

import pytest

from lutfuse_ros.stream.stats import (
    Level,
    ModelInfo,
    NodeStats,
    RateMeter,
    RegistrationInfo,
    diagnostic_groups,
    registration_group,
    status_fields,
)
from lutfuse_ros.stream.sync import RGB, THERMAL, SyncStats

MODEL = ModelInfo("sha256:0123", "", "numba backend on cpu")


def feed(stats: NodeStats, seconds: float, thermal_hz: float, rgb_hz: float) -> None:
    for topic, hz in ((THERMAL, thermal_hz), (RGB, rgb_hz)):
        for k in range(int(seconds * hz)):
            stats.message(topic, k / hz)


def test_rate_meter_counts_the_window_and_forgets_older_messages():
    meter = RateMeter(window=2.0)
    for k in range(90):  # 30 Hz for 3 s
        meter.tick(k / 30)
    assert meter.rate(now=3.0) == pytest.approx(30.0, abs=0.5)
    assert meter.rate(now=10.0) == 0.0
    assert meter.silent_for(now=3.5) == pytest.approx(3.5 - 89 / 30)
    assert RateMeter().silent_for(now=1.0) is None


def test_inputs_are_ok_while_both_cameras_send():
    stats = NodeStats()
    feed(stats, 2.0, thermal_hz=9.0, rgb_hz=30.0)
    snap = stats.snapshot(now=2.0, input_timeout=0.4)
    assert snap.input_level == Level.OK and snap.input_problems == []
    assert snap.rate_hz[THERMAL] == pytest.approx(9.0, abs=0.6)
    assert snap.rate_hz[RGB] == pytest.approx(30.0, abs=0.6)


def test_a_camera_never_heard_is_a_warning_a_silent_one_an_error():
    stats = NodeStats()
    assert stats.snapshot(0.0, 0.4).input_level == Level.WARN
    assert stats.snapshot(0.0, 0.4).input_problems == ["waiting for thermal", "waiting for rgb"]
    feed(stats, 1.0, thermal_hz=30.0, rgb_hz=30.0)
    for k in range(30, 60):  # the thermal camera stops at t = 1 s, RGB goes on
        stats.message(RGB, k / 30)
    snap = stats.snapshot(now=2.0, input_timeout=0.4)
    assert snap.input_level == Level.ERROR
    assert snap.input_problems == ["thermal silent for 1.0 s"]
    assert snap.silent_s[RGB] == pytest.approx(2.0 - 59 / 30)


def test_a_camera_silent_longer_than_the_rate_window_stays_an_error():
    stats = NodeStats(window=2.0)
    feed(stats, 1.0, 30.0, 30.0)
    for now in (1.5, 3.0, 6.0):  # diagnostics ticks; the rate window empties at 3 s
        snap = stats.snapshot(now=now, input_timeout=0.4)
        assert snap.input_level == Level.ERROR, now
    assert snap.input_problems == ["thermal silent for 5.0 s", "rgb silent for 5.0 s"]
    assert snap.rate_hz == (0.0, 0.0)


def test_latency_and_offset_come_from_the_recent_pairs():
    stats = NodeStats(history=100)
    for k in range(200):  # the first 100 (slow) pairs leave the history
        latency = 0.050 if k < 100 else 0.010 + 0.001 * (k % 10)
        stats.pair_fused(now=k / 30, latency_s=latency, offset_ns=-3_000_000, header=k)
    snap = stats.snapshot(now=200 / 30, input_timeout=0.4)
    assert snap.fused == 200 and snap.last_header == 199
    assert snap.latency_p50_ms == pytest.approx(14.5)
    assert snap.latency_p99_ms == pytest.approx(19.0, abs=0.01)
    assert snap.offset_mean_ms == pytest.approx(-3.0) and snap.offset_abs_max_ms == 3.0
    assert snap.fused_rate_hz == pytest.approx(30.0, abs=0.6)


def test_before_any_pair_latency_is_zero_and_agc_range_is_nan():
    snap = NodeStats().snapshot(now=0.0, input_timeout=0.4)
    assert (snap.fused, snap.latency_p50_ms, snap.latency_p99_ms) == (0, 0.0, 0.0)
    values = status_fields(snap, SyncStats(received=[0, 0]), 0, MODEL, agc_range=None)
    assert values["thermal_silent_s"] == -1.0 and values["rgb_silent_s"] == -1.0
    assert math.isnan(values["agc_low"]) and math.isnan(values["agc_high"])


def test_bad_inputs_turn_processing_into_a_warning_with_the_reason():
    stats = NodeStats()
    feed(stats, 1.0, 30.0, 30.0)
    stats.bad_input("thermal frame is 320x240 but the registration is calibrated for 640x512")
    groups = diagnostic_groups(stats.snapshot(1.0, 0.4), SyncStats(received=[30, 30], pairs=30),
                               dropped=2, model=MODEL)
    by_suffix = {g.suffix: g for g in groups}
    assert list(by_suffix) == ["inputs", "sync", "processing", "model", "timing"]
    processing = by_suffix["processing"]
    assert processing.level == Level.WARN and "calibrated for 640x512" in processing.message
    assert dict(processing.values)["bad input pairs"] == "1"
    assert dict(processing.values)["dropped stale pairs"] == "2"
    assert by_suffix["sync"].message == "30 pairs"
    assert dict(by_suffix["model"].values)["model path"] == "(package default)"
    assert all(isinstance(v, str) for g in groups for _, v in g.values)


def test_a_refused_model_swap_is_a_model_warning():
    kept = ModelInfo("sha256:0123", "/data/bad.npz", "numba", state="kept sha256:0123; refused")
    groups = diagnostic_groups(NodeStats().snapshot(0, 0.4), SyncStats(received=[0, 0]), 0, kept)
    model = next(g for g in groups if g.suffix == "model")
    assert model.level == Level.WARN and model.message.startswith("kept")


def test_stats_take_messages_from_two_threads():
    stats = NodeStats()

    def receive():
        for k in range(5000):
            stats.message(THERMAL, k * 1e-4)

    thread = threading.Thread(target=receive)
    thread.start()
    for k in range(5000):
        stats.pair_fused(k * 1e-4, 0.01, 0, None)
        stats.snapshot(k * 1e-4, 0.4)
    thread.join()
    assert stats.fused == 5000 and len(stats.rates[THERMAL].times) == 1000


def test_registration_is_checked_at_its_period_and_warns_below_half_the_calibrated_fit():
    stats = NodeStats()
    assert stats.registration_due(0.0, 5.0) and not stats.registration_due(4.9, 5.0)
    assert stats.registration_due(5.0, 5.0) and not NodeStats().registration_due(0.0, 0.0)
    calibrated = RegistrationInfo("homography", "/data/rig.yaml", calibrated_score=0.42)
    assert registration_group(stats.snapshot(5, 0.4), calibrated).message == "not checked yet"
    stats.registration_checked(0.40)
    good = registration_group(stats.snapshot(5, 0.4), calibrated)
    assert good.level == Level.OK and good.message == "fit 0.400"
    stats.registration_checked(0.15)  # the rig was bumped
    bad = registration_group(stats.snapshot(10, 0.4), calibrated)
    assert bad.level == Level.WARN and "0.150 < 0.210" in bad.message
    assert registration_group(stats.snapshot(10, 0.4), RegistrationInfo("resize")).level \
        == Level.OK  # no calibration: only a fit below 0.1 warns
    values = status_fields(stats.snapshot(10, 0.4), SyncStats(received=[0, 0]), 0, MODEL, None)
    assert values["registration_score"] == pytest.approx(0.15)
