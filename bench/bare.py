"""Starting a bench/ floor server in its own process, and running one on crmgate's loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from server.cli import run_loop


def run_floor(main: Coroutine[Any, Any, None]) -> None:
    """Serve a floor on the event loop crmgate's serving commands run on (uvloop): a
    baseline on asyncio's own loop would count the loop's cost against crmgate's code.
    `asyncio` as the first argument runs it on asyncio's loop instead (shown for
    reference)."""
    if sys.argv[1:2] == ["asyncio"]:
        asyncio.run(main)
        return

    async def serving() -> int:
        await main
        return 0

    run_loop(serving())


async def serve_app(app: web.Application) -> None:
    """Serve a floor's app on a free port of 127.0.0.1, its URL printed first, until
    stopped."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


@contextmanager
def floor_server(module: str, *args: str) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of `python -m MODULE ARGS`, which prints its URL first."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().split()[-1], process.pid
    finally:
        process.terminate()
        process.wait()
