"""Starting a bench/ floor server in its own process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def floor_server(module: str) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of `python -m MODULE`, which prints its URL first."""
    process = subprocess.Popen([sys.executable, "-m", module], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[-1], process.pid
    finally:
        process.terminate()
        process.wait()
