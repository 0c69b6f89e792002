"""Peak resident memory of running processes, sampled from a thread while work runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psutil


class PeakRss:
    def __init__(self, pids: Sequence[int]) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self.baseline = self._total()
        self.peak = self.baseline

    def _total(self) -> int:
        return sum(process.memory_info().rss for process in self._processes)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@contextmanager
def sampling(pids: Sequence[int], interval: float = 0.005) -> Iterator[PeakRss]:
    """Sample the processes' summed RSS until the block ends; the result holds the peak."""
    peak = PeakRss(pids)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            peak.peak = max(peak.peak, peak._total())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak.peak = max(peak.peak, peak._total())
