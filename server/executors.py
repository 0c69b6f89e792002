"""Blocking work off the event loop, on one bounded pool per kind of work.

Queries, CPU-heavy work (password hashing, image decoding, spreadsheets) and object
storage I/O each get their own threads, so a flood of one kind queues behind itself
instead of starving the others: fifty sign-ins hashing passwords do not delay a key
lookup, and eight imports parsing spreadsheets do not hold every database thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import grpc
import peewee
from playhouse.pool import MaxConnectionsExceeded

from server.database.connection import time_limited, unavailable, unit_of_work
from server.errors import ApiError

log = logging.getLogger("crmgate.database")

T = TypeVar("T")


def _cores() -> int:
    """The cores this process may run on (its affinity, where the OS keeps one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


@dataclass(frozen=True)
class PoolSizes:
    #: One database connection per thread: also the size of the PostgreSQL pool.
    database: int = 8
    #: One per core, at a lower priority than the event loop (see yield_the_cores).
    cpu: int = os.cpu_count() or 2
    storage: int = 4
    #: Bulk jobs running at once: worker processes (server/workers.py), or database
    #: threads where a process has none (run_db_bulk). One fewer than the cores, at least
    #: one: each job keeps a database backend busy at full priority (PostgreSQL's, which
    #: crmgate cannot nice), so a core is always left without bulk work for serving.
    bulk: int = max(1, _cores() - 1)
    #: Threads of their own for contact searches (see run_db_search); on PostgreSQL each
    #: holds a pooled connection of its own while it searches.
    search: int = 2


#: How much lower CPU-heavy work runs than the event loop (see yield_the_cores).
CPU_NICENESS = 10

_sizes = PoolSizes()
_executors: dict[str, ThreadPoolExecutor] = {}
#: Work handed to each pool and not yet done (running or queued), while keep_load is on.
_active: dict[str, int] | None = None


@dataclass(frozen=True)
class Load:
    """One pool's occupancy, for the metrics: threads at work, work waiting, threads."""

    busy: int
    queued: int
    size: int


def keep_load() -> None:
    """Count each pool's work in progress (two integer updates per unit of work), so
    `load` can tell busy threads from queued work; only when metrics are kept."""
    global _active
    if _active is None:
        _active = {}


#: The pools of threads (bulk work is a share of the database pool's threads).
THREAD_POOLS = ("database", "search", "cpu", "storage")


def load() -> dict[str, Load]:
    """Each pool's occupancy now (a pool not started yet is idle); queued work is what
    the pool's queue holds."""
    found = {}
    for kind in THREAD_POOLS:
        executor = _executors.get(kind)
        queued = executor._work_queue.qsize() if executor is not None else 0
        active = (_active or {}).get(kind, 0)
        found[kind] = Load(max(0, active - queued), queued, getattr(_sizes, kind))
    return found


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
            max_workers=getattr(_sizes, kind),
            thread_name_prefix=f"crmgate-{kind}",
            initializer=_INITIALIZERS.get(kind),
        )
    return _executors[kind]


async def _run(kind: str, function: Callable[..., T], *args: object) -> T:
    """`function(*args)` on the kind's pool, in a copy of the caller's context, so the
    thread's work is part of the call's trace (asyncio.to_thread does the same)."""
    loop = asyncio.get_running_loop()
    work = functools.partial(contextvars.copy_context().run, function, *args)
    active = _active
    if active is None:
        return await loop.run_in_executor(_executor(kind), work)
    active[kind] = active.get(kind, 0) + 1
    try:
        return await loop.run_in_executor(_executor(kind), work)
    finally:
        active[kind] -= 1


async def run_db(function: Callable[..., T], *args: object) -> T:
    """Database work: a unit that holds one connection (pooled ones go back afterwards).
    A database that cannot answer (down, restarting, connection lost, statement timed
    out, no pooled connection free in time) is UNAVAILABLE to the caller: worth a retry,
    and not a bug."""
    return await _run_db_on("database", function, *args)


async def _run_db_on(kind: str, function: Callable[..., T], *args: object) -> T:
    """Database work on the threads of `kind`, its errors as run_db says."""
    try:
        return await _run(kind, unit_of_work, function, *args)
    except (peewee.PeeweeException, MaxConnectionsExceeded) as error:
        if not unavailable(error):
            raise
        log.warning("database unavailable: %s", error)
        raise ApiError(
            grpc.StatusCode.UNAVAILABLE,
            "database_unavailable",
            "The database did not answer; try again shortly.",
        ) from None


_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


async def _run_db_within(kind: str, function: Callable[..., T], *args: object) -> T:
    """Database work of a kind of which at most `PoolSizes.<kind>` run at once; the rest
    wait on the event loop, holding no thread."""
    loop = asyncio.get_running_loop()
    slots = _slots.setdefault(loop, {})
    if kind not in slots:
        slots[kind] = asyncio.Semaphore(getattr(_sizes, kind))
    async with slots[kind]:
        return await run_db(function, *args)


async def run_db_bulk(function: Callable[..., T], *args: object) -> T:
    """A slice of a bulk job's database work (an import's rows, an export's query): at
    most `PoolSizes.bulk` run at once, so bulk jobs leave database threads — and the
    cores their Python needs — to interactive calls."""
    return await _run_db_within("bulk", function, *args)


async def run_db_search(function: Callable[..., T], *args: object) -> T:
    """A contact search, on `PoolSizes.search` threads of its own (more searches queue for
    them, holding no thread), at a lower priority than the event loop, and interrupted
    past the statement timeout (see time_limited). Key checks, session lookups and every
    other query keep the database threads whatever searches run.

    Why: on SQLite a search is CPU work in this process. Eight at once on the database
    threads starved the event loop (another tenant's C2C health p99 300 ms at 20,000
    contacts); two at once there still held two of the threads the key checks need. At
    1,000,000 contacts, 8 searches at once, five interleaved rounds on a shared 2-core
    machine (load 4-12): health p99 median 9.6 ms (4.2-14.2) on the database threads,
    6.2 ms (5.7-7.1) on niced threads of their own (6.9 ms also kept off the first core;
    9.7 ms on threads of their own at the loop's priority), p50 0.24 -> 0.18 ms."""
    return await _run_db_on("search", time_limited, function, *args)


async def run_cpu(function: Callable[..., T], *args: object) -> T:
    """CPU-heavy work that touches neither the database nor storage."""
    return await _run("cpu", function, *args)


async def run_storage(function: Callable[..., T], *args: object) -> T:
    """Object storage I/O (local files or S3)."""
    return await _run("storage", function, *args)


def serve_first() -> None:
    """The calling thread (and the threads it starts) runs CPU_NICENESS lower than the
    event loop, so the loop gets a core first when they both want one (Linux, where
    priority is per thread)."""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CPU_NICENESS)


def yield_the_cores() -> None:
    """Serving first (see serve_first), and off the first core this process may use, so
    CPU-heavy work (password hashing, bulk workers) always leaves the event loop a core of
    its own (Linux, where both are per thread; one core: priority alone). Measured with
    `bench/concurrency.py` on an idle 2-core machine, health p99 under load: 3.1 / 3.3 ms
    with the priority alone, 1.0 / 1.4 ms with the core too (SQLite / PostgreSQL; idle
    0.4 ms)."""
    serve_first()
    if sys.platform != "linux":
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 1:
        os.sched_setaffinity(threading.get_native_id(), cores[1:])


#: Searches are interactive calls: lower priority, but both cores (see run_db_search).
_INITIALIZERS: dict[str, Callable[[], None]] = {"cpu": yield_the_cores, "search": serve_first}
