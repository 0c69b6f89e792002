"""Blocking work off the event loop, on one bounded pool per kind of work.

Queries, CPU-heavy work (password hashing, image decoding, spreadsheets) and object
storage I/O each get their own threads, so a flood of one kind queues behind itself
instead of starving the others: fifty sign-ins hashing passwords do not delay a key
lookup, and eight imports parsing spreadsheets do not hold every database thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import grpc
import peewee
from playhouse.pool import MaxConnectionsExceeded

from server.database.connection import unavailable, unit_of_work
from server.errors import ApiError

log = logging.getLogger("crmgate.database")

T = TypeVar("T")


@dataclass(frozen=True)
class PoolSizes:
    #: One database connection per thread: also the size of the PostgreSQL pool.
    database: int = 8
    #: Leave a core to the event loop: hashing on every core would slow every answer.
    cpu: int = max(1, (os.cpu_count() or 2) - 1)
    storage: int = 4


_sizes = PoolSizes()
_executors: dict[str, ThreadPoolExecutor] = {}


def configure(sizes: PoolSizes) -> None:
    """Set the pool sizes, before the process starts serving (pools already running with
    other sizes finish their work, then go)."""
    global _sizes
    if sizes != _sizes:
        for executor in _executors.values():
            executor.shutdown(wait=False)
        _executors.clear()
        _sizes = sizes


def _executor(kind: str) -> ThreadPoolExecutor:
    if kind not in _executors:
        _executors[kind] = ThreadPoolExecutor(
            max_workers=getattr(_sizes, kind), thread_name_prefix=f"crmgate-{kind}"
        )
    return _executors[kind]


async def _run(kind: str, function: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(kind), functools.partial(function, *args))


async def run_db(function: Callable[..., T], *args: object) -> T:
    """Database work: a unit that holds one connection (pooled ones go back afterwards).
    A database that cannot answer (down, restarting, connection lost, statement timed
    out, no pooled connection free in time) is UNAVAILABLE to the caller: worth a retry,
    and not a bug."""
    try:
        return await _run("database", unit_of_work, function, *args)
    except (peewee.PeeweeException, MaxConnectionsExceeded) as error:
        if not unavailable(error):
            raise
        log.warning("database unavailable: %s", error)
        raise ApiError(
            grpc.StatusCode.UNAVAILABLE,
            "database_unavailable",
            "The database did not answer; try again shortly.",
        ) from None


async def run_cpu(function: Callable[..., T], *args: object) -> T:
    """CPU-heavy work that touches neither the database nor storage."""
    return await _run("cpu", function, *args)


async def run_storage(function: Callable[..., T], *args: object) -> T:
    """Object storage I/O (local files or S3)."""
    return await _run("storage", function, *args)
