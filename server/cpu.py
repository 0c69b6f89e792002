"""CPU-heavy work (sniffing, decoding, converting) on its own pool, one worker per core,
so it never blocks the event loop nor starves the database pool."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="crmgate-cpu")


async def run_cpu(function: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(function, *args))
