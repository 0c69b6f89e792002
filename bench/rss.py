"""Peak resident memory growth of running processes, read from the kernel: each process's
VmHWM (high-water mark) is reset to its current RSS before the work (`echo 5 >
/proc/PID/clear_refs`) and read after it, so every page touched counts and no sampling
interval can miss a spike. Measure cold: without a warm-up of the same payload."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@dataclass
class PeakGrowth:
    """Bytes each process's peak RSS rose above its RSS at the start, once the block ends."""

    per_process: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Summed over the processes (an upper bound when their peaks fell apart in time)."""
        return sum(self.per_process.values())

    @property
    def largest(self) -> int:
        return max(self.per_process.values())


@contextmanager
def peak_growth(pids: Sequence[int]) -> Iterator[PeakGrowth]:
    """Reset the processes' VmHWM, run the block; the result then holds each one's growth."""
    start: dict[int, int] = {}
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        start[pid] = _status_kib(pid, "VmRSS")
    growth = PeakGrowth()
    yield growth
    for pid in pids:
        growth.per_process[pid] = (_status_kib(pid, "VmHWM") - start[pid]) * 1024
