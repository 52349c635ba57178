"""The approximate-time policy on stamp sequences (no DDS), and the latest-only mailbox."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from lutfuse_ros.stream.sync import RGB, THERMAL, ApproximateTimePolicy, LatestSlot

MS = 1_000_000


def stream(rate_hz: float, seconds: float, jitter_ms: float = 0.0, offset_ms: float = 0.0,
           seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz * 1e3 + offset_ms + rng.uniform(-jitter_ms, jitter_ms, n)
    return [int(round(v * MS)) + 1_000_000_000 for v in t]


def feed(sync: ApproximateTimePolicy, thermal: list[int], rgb: list[int]):
    """Deliver both streams in stamp order (as two live cameras would), collect pairs."""
    events = sorted([(s, THERMAL) for s in thermal] + [(s, RGB) for s in rgb])
    pairs = []
    for stamp, topic in events:
        p = sync.add(topic, stamp, ("t" if topic == THERMAL else "v", stamp))
        if p is not None:
            pairs.append(p)
    return pairs


def test_jittered_streams_pair_one_to_one_within_slop():
    thermal, rgb = stream(30, 5, jitter_ms=3, seed=1), stream(30, 5, jitter_ms=3, seed=2)
    sync = ApproximateTimePolicy(queue_size=5, slop=0.012)
    pairs = feed(sync, thermal, rgb)
    assert len(pairs) >= len(rgb) - 2
    assert all(abs(p.offset_ns) < 12 * MS for p in pairs)
    assert len({p.rgb[1] for p in pairs}) == len(pairs)  # no message used twice
    assert len({p.thermal[1] for p in pairs}) == len(pairs)


def test_fixed_thermal_delay_needs_the_offset_parameter():
    rgb = stream(30, 3)
    thermal = stream(30, 3, offset_ms=-50)  # thermal stamped 50 ms early
    assert feed(ApproximateTimePolicy(slop=0.01), thermal, rgb) == []
    pairs = feed(ApproximateTimePolicy(slop=0.01, thermal_offset=0.05), thermal, rgb)
    assert len(pairs) >= len(rgb) - 2
    assert all(abs(p.offset_ns - 50 * MS) < MS for p in pairs)  # offset as received


def test_slow_thermal_pairs_with_the_nearest_rgb():
    thermal, rgb = stream(9, 4, offset_ms=7), stream(30, 4)
    pairs = feed(ApproximateTimePolicy(queue_size=10, slop=0.02), thermal, rgb)
    assert len(pairs) >= len(thermal) - 1
    for p in pairs:  # greedy, as message_filters: the nearest RGB that has arrived
        arrived = [s for s in rgb if s <= max(p.thermal[1], p.rgb[1])]
        assert p.rgb[1] == min(arrived, key=lambda s: abs(s - p.thermal[1]))


def test_dropped_messages_leave_the_others_paired():
    rng = np.random.default_rng(5)
    rgb = stream(30, 4)
    thermal = [s for s in stream(30, 4, offset_ms=2) if rng.random() > 0.2]
    sync = ApproximateTimePolicy(slop=0.01)
    pairs = feed(sync, thermal, rgb)
    assert len(pairs) >= len(thermal) - 1
    assert sync.stats.unmatched >= len(rgb) - len(thermal) - 2


def test_reordered_arrivals_still_pair_and_output_moves_forward():
    thermal, rgb = stream(30, 3, offset_ms=1), stream(30, 3)
    events = sorted([(s, THERMAL) for s in thermal] + [(s, RGB) for s in rgb])
    for i in range(0, len(events) - 3, 7):  # swap some neighbours (network reordering)
        events[i], events[i + 3] = events[i + 3], events[i]
    sync = ApproximateTimePolicy(slop=0.01)
    pairs = [p for s, t in events if (p := sync.add(t, s, s)) is not None]
    assert len(pairs) >= 0.6 * len(rgb)
    stamps = [p.rgb_stamp_ns for p in pairs]
    assert stamps == sorted(stamps)  # never a frame older than the one before
    assert sync.stats.late > 0


def test_backward_time_jump_clears_queues_instead_of_stalling():
    sync = ApproximateTimePolicy(slop=0.01, reset_jump=1.0)
    first = feed(sync, stream(30, 2), stream(30, 2))
    # The bag loops: stamps restart 2 s earlier. Without a reset every message is "late".
    again = feed(sync, stream(30, 2), stream(30, 2))
    assert sync.stats.resets == 1 and len(again) >= len(first) - 2


def test_queue_is_bounded_when_one_camera_is_silent():
    sync = ApproximateTimePolicy(queue_size=4, slop=0.01)
    assert feed(sync, [], stream(30, 2)) == []
    assert sync.stats.unmatched == len(stream(30, 2)) - 4
    # The thermal camera comes back: pairing resumes with the newest RGB.
    pairs = feed(sync, stream(30, 1, offset_ms=2100), stream(30, 1, offset_ms=2100))
    assert len(pairs) >= 28


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimePolicy(queue_size=0)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimePolicy(slop=-1)


def test_latest_slot_keeps_only_the_newest_and_counts_the_rest():
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0) == 4 and slot.replaced == 4
    assert slot.take(0.01) is None
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(2.0)))
    t.start()
    slot.put(7)
    t.join()
    assert got == [7]


def drop(stamps: list[int], every: int) -> list[int]:
    return [s for k, s in enumerate(stamps) if k % every != every - 1]


# (thermal, rgb) stamp sequences: jitter, dropped frames, rate mismatch, a constant offset
SEQUENCES = {
    "jitter": lambda: (stream(30, 3, jitter_ms=3, seed=3), stream(30, 3, jitter_ms=3, seed=4)),
    "drops": lambda: (drop(stream(30, 3, jitter_ms=2, seed=5), 4),
                      drop(stream(30, 3, jitter_ms=2, seed=6), 7)),
    "rate mismatch": lambda: (stream(9, 4, jitter_ms=1, seed=7), stream(30, 4, seed=8)),
    "offset": lambda: (stream(30, 3, offset_ms=6, seed=9), stream(30, 3, jitter_ms=1, seed=10)),
}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_pairs_the_same_messages_as_message_filters(name):
    message_filters = pytest.importorskip(
        "message_filters", reason="message_filters not installed (scripts/ros2_tools.sh "
        "installs the upstream module from ../shared/ros2-python; a robot has it)")
    from types import SimpleNamespace

    from builtin_interfaces.msg import Time

    thermal, rgb = SEQUENCES[name]()

    class Src(message_filters.SimpleFilter):
        pass

    def msg(stamp):  # message_filters reads header.stamp through rclpy.time.Time
        s = Time(sec=stamp // 10**9, nanosec=stamp % 10**9)
        return SimpleNamespace(header=SimpleNamespace(stamp=s), stamp=stamp)

    a, b = Src(), Src()
    ref = []
    sync_ref = message_filters.ApproximateTimeSynchronizer([a, b], queue_size=5, slop=0.01)
    sync_ref.registerCallback(lambda t, v: ref.append((t.stamp, v.stamp)))
    for stamp, topic in sorted([(s, THERMAL) for s in thermal] + [(s, RGB) for s in rgb]):
        (a if topic == THERMAL else b).signalMessage(msg(stamp))
    ours = [(p.thermal[1], p.rgb[1]) for p in
            feed(ApproximateTimePolicy(queue_size=5, slop=0.01), thermal, rgb)]
    assert len(ref) > 10
    assert ours == ref
