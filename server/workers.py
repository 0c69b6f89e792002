"""Bulk jobs (an import's rows, an export's file) in worker processes of their own.

Why: a bulk job is mostly pure Python (Peewee building each statement, spreadsheet rows,
protobuf), so on a thread of the serving process it holds the GIL most of the time, and
the event loop then waits up to the interpreter's switch interval for every request it
serves. Measured (bench/concurrency.py, py-spy --gil): under 8 imports the imports'
threads held the GIL ~75% of the time, and health p99 went from 0.3 ms idle to 9 ms;
sign-ins alone (hashing releases the GIL) barely moved it. In a worker process a job
competes for the cores only, and at a lower priority (see yield_the_cores).

A job is `job(buckets, *args, progress)`. It runs in the worker on the worker's own
database connection and object storage (opened from the same settings), one job per
worker at a time; arguments and result travel by pickle. Each progress report comes
back to the caller's reporter, on the caller's database thread as before, and whatever
that raises (`Released`: the server is stopping) is raised in the job, so the job stops
at the same boundary as on a thread. A worker dies with its server (PR_SET_PDEATHSIG on
Linux; elsewhere at its next progress report), as a thread would.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from gateway import tracing
from server import logs
from server.config import Settings
from server.database.connection import database, open_database, unit_of_work
from server.executors import PoolSizes, run_db, yield_the_cores
from server.files.storage import object_storage
from server.tracing import job_span, trace_carrier, traced_storage

T = TypeVar("T")
Progress = Callable[[int, str], None]
#: Database connections a worker opens on PostgreSQL: it runs one job at a time.
WORKER_POOL_SIZE = 1
#: SQLite page cache of a worker's connections. An import batch dirties more pages than
#: SQLite's default 2 MiB holds, so it re-read pages from the OS: measured, 16 MiB cut
#: the bytes read per imported row by two thirds and ~5 µs of system CPU per row.
WORKER_SQLITE_CACHE_KIB = 16 * 1024
_PR_SET_PDEATHSIG = 1
#: The workers' service name in traces, unless OTEL_SERVICE_NAME names one.
BULK_WORKER_SERVICE = "crmgate-bulk-worker"


class WorkerDied(Exception):
    """A worker process ended in the middle of a job (killed, out of memory)."""


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker, as its cause in the caller."""

    def __str__(self) -> str:
        return str(self.args[0])


class _Worker:
    """One worker process and the connection to it."""

    def __init__(self, settings: Settings) -> None:
        ours, theirs = Pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.workers", str(theirs.fileno()), str(os.getpid())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.connection = ours
        self.connection.send(settings)

    def alive(self) -> bool:
        return not self.connection.closed and self.process.poll() is None

    def run(self, job: Callable[..., T], args: tuple[object, ...], progress: Progress) -> T:
        """Run `job` there and relay its progress reports here (blocking: call on a
        database thread, where the reporter's own writes belong). The job's spans join
        the current trace."""
        try:
            self.connection.send((job, args, trace_carrier()))
            while True:
                try:
                    kind, *rest = self.connection.recv()
                except (EOFError, OSError):
                    raise WorkerDied(f"bulk worker {self.process.pid} ended mid-job") from None
                if kind == "done":
                    return rest[0]  # type: ignore[no-any-return]
                if kind == "failed":
                    break
                reply: Exception | None = None
                try:
                    progress(*rest)
                except Exception as error:  # raised in the job, as on a thread
                    reply = error
                self.connection.send(reply)
        except BaseException:
            self.close()  # the conversation broke off mid-job: never trust this worker again
            raise
        error, remote = rest
        error.__cause__ = RemoteTraceback(remote)
        raise error

    def close(self) -> None:
        """Stop the worker (at EOF on its connection it exits), killing it if busy."""
        self.connection.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class BulkWorkers:
    """At most `size` bulk jobs at once, each in a worker process; workers start when
    first needed and are kept for the next job."""

    def __init__(self, settings: Settings, size: int = PoolSizes.bulk) -> None:
        self._settings = settings
        self._size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Worker] = []

    async def run(self, job: Callable[..., T], *args: object, progress: Progress) -> T:
        async with self._slots:
            # Started here, on the event loop's thread, which lives as long as the server:
            # PR_SET_PDEATHSIG fires when the thread that started the worker ends.
            worker = self._idle.pop() if self._idle else _Worker(self._settings)
            return await run_db(self._run_on, worker, job, args, progress)

    def _run_on(
        self, worker: _Worker, job: Callable[..., T], args: tuple[object, ...], progress: Progress
    ) -> T:
        """The job on a database thread; its worker is idle again only once the job is
        over, even when the caller stopped waiting for it."""
        try:
            return worker.run(job, args, progress)
        finally:
            if worker.alive() and len(self._idle) < self._size:
                self._idle.append(worker)
            elif worker.alive():
                worker.close()

    def close(self) -> None:
        """Stop the idle workers (a stopping server; busy ones end with their job or
        with the server)."""
        while self._idle:
            self._idle.pop().close()


# ------------------------------------------------------------------ the worker's side


def _serve(connection: Connection) -> None:
    """Run jobs as they come, until the server closes the connection."""
    settings: Settings = connection.recv()
    logs.configure(settings.log_level)
    tracing.configure(BULK_WORKER_SERVICE)  # the server's OTEL_* settings, checked there
    database.initialize(
        open_database(
            settings.resolved_database_url,
            pool_size=WORKER_POOL_SIZE,
            statement_timeout=settings.db_statement_timeout,
            sqlite_cache_kib=WORKER_SQLITE_CACHE_KIB,
        )
    )
    buckets = traced_storage(object_storage(settings))

    def progress(percent: int, commentary: str) -> None:
        connection.send(("progress", percent, commentary))
        error = connection.recv()
        if error is not None:
            raise error

    while True:
        try:
            job, args, carrier = connection.recv()
        except EOFError:
            return
        remote = ""
        try:
            with job_span(f"bulk {job.__name__}", carrier):
                outcome: tuple[Any, ...] = ("done", unit_of_work(job, buckets, *args, progress))
        except Exception as error:
            remote = traceback.format_exc()
            outcome = ("failed", error, remote)
        try:
            connection.send(outcome)
        except Exception as error:  # it does not pickle: nothing was sent
            unsent = RuntimeError(f"the job's {outcome[0]} outcome cannot be sent: {error!r}")
            connection.send(("failed", unsent, remote))


def _die_with(parent: int) -> None:
    """Be killed when the server ends, however it ends (Linux); elsewhere the next
    progress report finds the connection closed. The server handles SIGINT for us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        raise SystemExit("the server ended before its bulk worker started")


if __name__ == "__main__":
    _die_with(int(sys.argv[2]))
    yield_the_cores()  # as the CPU threads: serving first
    _serve(Connection(int(sys.argv[1])))
