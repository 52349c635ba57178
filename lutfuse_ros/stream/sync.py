"""Pairing thermal and RGB messages by stamp, and handing the newest pair to the worker.

Pure Python (no rclpy), so the policy is tested on stamp sequences and shared with the bag
reader. :class:`ApproximateTimePolicy` pairs like message_filters' Python
``ApproximateTimeSynchronizer`` for two topics (a message pairs with the closest-stamped
message of the other queue when they differ by less than ``slop``; queues hold ``queue_size``
messages; equal stamps overwrite), and adds what robots need:

- ``thermal_offset``: added to every thermal stamp before matching (a camera whose clock or
  exposure lags the other's by a fixed time);
- pairs come out in time order: after a pair, messages of each topic older than that
  topic's paired message are dropped and counted (message_filters keeps them and may later
  pair one of them, emitting a frame older than the one before);
- a stamp that jumps back by more than ``reset_jump`` (a bag that loops, a simulator reset)
  clears the queues instead of leaving them stalled behind stamps from the future.

:class:`LatestSlot` is the one-deep mailbox between the executor and the fusion thread: a
new pair replaces an unprocessed one (counted), so latency never grows when fusion lags.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar

from ..core.errors import ConfigError

_NS = 1_000_000_000


class Topic(IntEnum):
    """The two inputs; also the index of per-topic lists."""

    THERMAL = 0
    RGB = 1


THERMAL, RGB = Topic.THERMAL, Topic.RGB


@dataclass(frozen=True)
class SyncConfig:
    """Settings of :class:`ApproximateTimePolicy` (the nodes' ``sync.*`` parameters).

    Attributes:
        queue_size: messages kept per topic while waiting for a partner.
        slop: largest stamp difference (s) of a pair, after the offset.
        thermal_offset: seconds added to thermal stamps before matching.
        reset_jump: a stamp this many seconds older than the newest clears the queues.
    """

    queue_size: int = 10
    slop: float = 0.02
    thermal_offset: float = 0.0
    reset_jump: float = 1.0


@dataclass(frozen=True)
class SyncedPair:
    """A thermal and an RGB message that belong together.

    Attributes:
        thermal, rgb: the messages (or decoded images), as given to ``add``.
        thermal_stamp_ns, rgb_stamp_ns: their stamps as received (before the offset).
    """

    thermal: Any
    rgb: Any
    thermal_stamp_ns: int
    rgb_stamp_ns: int

    @property
    def offset_ns(self) -> int:
        """RGB stamp minus thermal stamp, as received (before ``thermal_offset``)."""
        return self.rgb_stamp_ns - self.thermal_stamp_ns


@dataclass
class SyncStats:
    """Counters of an :class:`ApproximateTimePolicy`.

    Attributes:
        received: messages received per topic (indexed by :class:`Topic`).
        pairs: pairs emitted.
        unmatched: messages that left a queue without a partner (overflow, or older than
            a pair).
        late: messages that arrived older than the last emitted pair.
        resets: times the stamps jumped back and the queues were cleared.
    """

    received: list[int]
    pairs: int = 0
    unmatched: int = 0
    late: int = 0
    resets: int = 0


def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds.

    Example:
        >>> from types import SimpleNamespace
        >>> stamp_to_ns(SimpleNamespace(sec=3, nanosec=250_000_000))
        3250000000
    """
    return int(stamp.sec) * _NS + int(stamp.nanosec)


class ApproximateTimePolicy:
    """Two-topic approximate-time pairing with offset, monotone output and reset on jumps.

    Args:
        queue_size: messages kept per topic while waiting for a partner.
        slop: largest stamp difference (s) of a pair, after the offset.
        thermal_offset: seconds added to thermal stamps before matching.
        reset_jump: a stamp this many seconds older than the newest of its topic clears the
            queues (smaller steps back are reordering: such a message is dropped as late).

    Example:
        >>> sync = ApproximateTimePolicy(queue_size=10, slop=0.02)
        >>> sync.add(THERMAL, 1_000_000_000, "ir msg") is None     # no partner yet
        True
        >>> pair = sync.add(RGB, 1_005_000_000, "rgb msg")        # 5 ms apart: a pair
        >>> pair.thermal, pair.rgb, pair.offset_ns
        ('ir msg', 'rgb msg', 5000000)
    """

    def __init__(self, queue_size: int = SyncConfig.queue_size, slop: float = SyncConfig.slop,
                 thermal_offset: float = SyncConfig.thermal_offset,
                 reset_jump: float = SyncConfig.reset_jump) -> None:
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
        if slop < 0:
            raise ConfigError(f"slop must be >= 0, got {slop}")
        if reset_jump <= 0:
            raise ConfigError(f"reset_jump must be > 0, got {reset_jump}")
        self.queue_size = queue_size
        self.slop_ns = int(round(slop * _NS))
        self.offset_ns = int(round(thermal_offset * _NS))
        self.reset_jump_ns = int(round(reset_jump * _NS))
        self._queues: tuple[dict[int, tuple[int, Any]], dict[int, tuple[int, Any]]] = ({}, {})
        self._newest: list[int | None] = [None, None]
        self._last_paired: list[int | None] = [None, None]  # per topic, offset applied
        self._lock = threading.Lock()
        self.stats = SyncStats(received=[0, 0])
        self.just_reset = False  # set by the add() that cleared the queues

    @classmethod
    def from_config(cls, config: SyncConfig) -> "ApproximateTimePolicy":
        return cls(config.queue_size, config.slop, config.thermal_offset, config.reset_jump)

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def pending(self) -> int:
        """Messages waiting in the queues for a partner."""
        with self._lock:
            return len(self._queues[0]) + len(self._queues[1])

    def _clear(self) -> None:
        self.stats.unmatched += len(self._queues[0]) + len(self._queues[1])
        for q in self._queues:
            q.clear()
        self._newest = [None, None]
        self._last_paired = [None, None]

    def add(self, topic: int, stamp_ns: int, msg: Any) -> SyncedPair | None:
        """Add a message of ``topic`` (:data:`THERMAL` or :data:`RGB`); return a pair if this
        message completes one."""
        with self._lock:
            self.just_reset = False
            self.stats.received[topic] += 1
            key = stamp_ns + (self.offset_ns if topic == THERMAL else 0)
            newest = self._newest[topic]
            if newest is not None and key < newest - self.reset_jump_ns:
                self._clear()
                self.stats.resets += 1
                self.just_reset = True
                newest = None
            last = self._last_paired[topic]
            if last is not None and key <= last:
                self.stats.late += 1
                return None
            self._newest[topic] = key if newest is None else max(newest, key)
            mine, other = self._queues[topic], self._queues[1 - topic]
            mine[key] = (stamp_ns, msg)  # equal stamps overwrite, as in message_filters
            while len(mine) > self.queue_size:
                del mine[min(mine)]
                self.stats.unmatched += 1
            best = min(other, key=lambda s: abs(s - key), default=None)
            if best is None or abs(best - key) >= max(self.slop_ns, 1):
                return None
            own_stamp, own_msg = mine.pop(key)
            other_stamp, other_msg = other.pop(best)
            self._last_paired[topic], self._last_paired[1 - topic] = key, best
            for q, newest_paired in ((mine, key), (other, best)):  # never pair back in time
                for s in [s for s in q if s <= newest_paired]:
                    del q[s]
                    self.stats.unmatched += 1
            self.stats.pairs += 1
            if topic == THERMAL:
                return SyncedPair(own_msg, other_msg, own_stamp, other_stamp)
            return SyncedPair(other_msg, own_msg, other_stamp, own_stamp)


Item = TypeVar("Item")


class LatestSlot(Generic[Item]):
    """A one-deep mailbox: :meth:`put` replaces what the consumer has not taken yet.

    Example:
        >>> slot = LatestSlot()
        >>> slot.put("pair 1"); slot.put("pair 2")     # the worker was busy: 1 is dropped
        >>> slot.take(timeout=0), slot.replaced
        ('pair 2', 1)
    """

    def __init__(self) -> None:
        self._item: Item | None = None
        self._cond = threading.Condition()
        self.replaced = 0  # items overwritten before being taken (stale pairs dropped)
        self.closed = False

    def put(self, item: Item) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float | None = None) -> Item | None:
        """The newest item, or ``None`` after ``timeout`` seconds or once closed."""
        with self._cond:
            if self._item is None and not self.closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
