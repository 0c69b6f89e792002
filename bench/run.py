"""`make bench`: every benchmark (or those named: `bench/run.py health webp`), each printing
its figures beside a baseline from the same run; exits 1 when any target was missed."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import (
    c2c_split_memory,
    c2c_upload,
    close_upload,
    concurrency,
    health,
    metrics,
    rate_limit,
    stats,
    webp,
)

BENCHMARKS = {
    "health": health.main,
    "webp": webp.main,
    "c2c_upload": c2c_upload.main,
    "c2c_split_memory": c2c_split_memory.main,
    "close_upload": close_upload.main,
    "rate_limit": rate_limit.main,
    "concurrency": concurrency.main,
    "metrics": metrics.main,
}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(BENCHMARKS)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.machine(),
    )
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {cpu}, {len(os.sched_getaffinity(0))}"
        f" cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB,"
        f" Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    failures = []
    for name in chosen:
        print()
        if BENCHMARKS[name]():  # a benchmark that judges itself returns its exit status
            failures.append(f"{name}: a target was missed (see above)")
    raise SystemExit(stats.exit_status(failures))
