"""Per-stage wall-clock timing of a frame, for benchmarks and the node's diagnostics."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator


class StageTimer:
    """Adds stage durations (ms) to ``sink`` when one is given; ``sync`` (e.g. CUDA's) runs
    at the end of each stage so asynchronous work is counted where it happens.

    Example:
        >>> timings = {}
        >>> with StageTimer(timings).stage("decode"):
        ...     pass
        >>> list(timings)
        ['decode']
    """

    def __init__(self, sink: dict[str, float] | None,
                 sync: Callable[[], None] | None = None) -> None:
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
