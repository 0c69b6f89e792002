"""Background requests (`?async=true`) as cluster work: stored in the database, claimed
by whichever server gets there first, run through the same pipeline as a direct call, and
settled even when their server dies.

Every server polls for PENDING rows and claims one atomically (PostgreSQL: `FOR UPDATE
SKIP LOCKED`; SQLite: one UPDATE under the write lock), as its owner, with a lease it
renews by a heartbeat while the work runs — independent of progress reports. Finishing
checks ownership. A sweeper on every server re-queues requests whose owner's lease ran
out when the contract marks their method idempotent (`idempotency_level`) and fails the
others, so a dead server's work settles within 4/3 of the lease (30 s by default), with
nobody polling. On SIGTERM a server stops claiming, gives running work a grace period, then
releases what is left the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

import grpc
import peewee
from crm.v1 import crm_pb2
from google.protobuf import any_pb2
from google.protobuf.descriptor_pb2 import MethodOptions
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from gateway.contract import REQUEST_ID_KEY, CallFailed, build_status
from server.crm.sessions import principal_for_user
from server.database.connection import database
from server.database.models import BackgroundRequest, User, utcnow
from server.executors import run_db
from server.inprocess import InProcessContext
from server.pipeline import CallPipeline

log = logging.getLogger("crmgate.background")

_CRM = crm_pb2.DESCRIPTOR.services_by_name["Crm"]
#: A claim lasts this long unless its server's heartbeat renews it; the heartbeat and the
#: sweep for dead servers' requests both run every third of it.
DEFAULT_LEASE = timedelta(seconds=30)
#: How often an idle server looks for PENDING requests (StartRequest wakes it at once).
POLL_SECONDS = 1.0
MAX_ATTEMPTS = 3
#: Reports progress of the current background request: (percent 0 to 100, commentary).
Progress = Callable[[int, str], None]
current_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "current_progress", default=None
)
_PARTLY_APPLIED = (
    "The request was interrupted and may have been partly applied, so it was not run "
    "again; check the data before retrying."
)


def background_allowed(method: str) -> bool:
    """Whether the contract marks a Crm method (`/crm.v1.Crm/Name`) `background_allowed`."""
    service, _, name = method.lstrip("/").partition("/")
    found = _CRM.methods_by_name.get(name) if service == _CRM.full_name else None
    return found is not None and found.GetOptions().Extensions[crm_pb2.background_allowed]


def progress_reporter() -> Progress:
    """The current background request's progress reporter, or one that ignores reports
    (a direct call). The servicer reads it and hands it to the domain function it runs."""
    return current_progress.get() or (lambda percent, commentary: None)


def _unpacked(handler: grpc.RpcMethodHandler, packed: bytes) -> Message | None:
    """The request message stored for a method, or None when it cannot be read."""
    try:
        return handler.request_deserializer(any_pb2.Any.FromString(packed).value)
    except DecodeError:
        return None


def readable_request(handler: grpc.RpcMethodHandler, request: any_pb2.Any) -> bool:
    """Whether a request to start names the method's own message and parses as it."""
    expected = handler.request_deserializer(b"").DESCRIPTOR.full_name
    return (
        request.type_url.rpartition("/")[2] == expected
        and _unpacked(handler, request.SerializeToString()) is not None
    )


def rerunnable(method: str) -> bool:
    """Whether running the method again is safe: the contract marks it idempotent."""
    service, _, name = method.lstrip("/").partition("/")
    found = _CRM.methods_by_name.get(name) if service == _CRM.full_name else None
    level = found.GetOptions().idempotency_level if found is not None else None
    return level in (MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT)


def _claim(owner: str, lease: timedelta) -> BackgroundRequest | None:
    """Claim the oldest PENDING request for `owner`; None when there is none to claim."""
    pending = (
        BackgroundRequest.select(BackgroundRequest.id)
        .where(BackgroundRequest.status == "PENDING")
        .order_by(BackgroundRequest.id)
        .limit(1)
    )
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        pending = pending.for_update(skip_locked=True)
    now = utcnow()
    claimed = (
        BackgroundRequest.update(
            status="PROCESSING",
            owner=owner,
            attempts=BackgroundRequest.attempts + 1,
            lease_until=now + lease,
            commentary="Processing",
            updated_at=now,
        )
        .where(BackgroundRequest.id == pending, BackgroundRequest.status == "PENDING")
        .returning(BackgroundRequest.id)
        .execute()
    )
    ids = [row.id for row in claimed]
    return BackgroundRequest.get_by_id(ids[0]) if ids else None


def _finish(
    owner: str, request_id: str, result: any_pb2.Any | None, error: status_pb2.Status | None
) -> bool:
    """Record the outcome, if `owner` still owns the request; False when it lost it (its
    lease ran out and another server took the request over or failed it)."""
    return bool(
        BackgroundRequest.update(
            status="PROCESSED" if error is None else "FAILED",
            percent_complete=100 if error is None else BackgroundRequest.percent_complete,
            commentary="Done" if error is None else "Failed",
            result=result.SerializeToString() if result is not None else None,
            error=error.SerializeToString() if error is not None else None,
            lease_until=None,
            updated_at=utcnow(),
        )
        .where(
            BackgroundRequest.request_id == request_id,
            BackgroundRequest.owner == owner,
            BackgroundRequest.status == "PROCESSING",
        )
        .execute()
    )


def _renew(owner: str, lease: timedelta) -> int:
    """The heartbeat: extend the lease of every request this server is running."""
    return (
        BackgroundRequest.update(lease_until=utcnow() + lease)
        .where(BackgroundRequest.owner == owner, BackgroundRequest.status == "PROCESSING")
        .execute()
    )


class Released(Exception):
    """Raised in a running request's worker thread at its next progress report once its
    server has released it (stopping): the work stops at a clean boundary."""


def _reporter(request_id: str, released: threading.Event) -> Progress:
    """Progress updates, at most a few a second."""
    last = [0.0]

    def report(percent: int, commentary: str) -> None:
        if released.is_set():
            raise Released(request_id)
        now = time.monotonic()
        if now - last[0] < 0.2 and percent < 100:
            return
        last[0] = now
        BackgroundRequest.update(
            percent_complete=max(0, min(99, percent)),
            commentary=commentary[:500],
            updated_at=utcnow(),
        ).where(
            BackgroundRequest.request_id == request_id, BackgroundRequest.status == "PROCESSING"
        ).execute()

    return report


def _settle(row: BackgroundRequest, why: str) -> None:
    """A request its server no longer runs: queued again when safe and tries are left,
    else failed with a message saying why. Only if nobody else settled it first."""
    still_ours = (
        (BackgroundRequest.id == row.id)
        & (BackgroundRequest.status == "PROCESSING")
        & (BackgroundRequest.owner == row.owner)
    )
    now = utcnow()
    if rerunnable(row.method) and row.attempts < MAX_ATTEMPTS:
        BackgroundRequest.update(
            status="PENDING", owner=None, lease_until=None, commentary=why, updated_at=now
        ).where(still_ours).execute()
        return
    message = (
        f"The request was interrupted {row.attempts} times and was given up."
        if rerunnable(row.method)
        else _PARTLY_APPLIED
    )
    status = build_status(grpc.StatusCode.ABORTED, message, "interrupted")
    BackgroundRequest.update(
        status="FAILED",
        commentary="Failed",
        error=status.SerializeToString(),
        lease_until=None,
        updated_at=now,
    ).where(still_ours).execute()


def sweep_expired() -> int:
    """Settle every request whose owner's lease ran out (the owner died); how many."""
    expired = list(
        BackgroundRequest.select().where(
            BackgroundRequest.status == "PROCESSING", BackgroundRequest.lease_until < utcnow()
        )
    )
    for row in expired:
        _settle(row, "Interrupted; queued again")
    return len(expired)


def release(owner: str, request_ids: list[str]) -> None:
    """Settle requests this server is stopping without finishing."""
    for row in BackgroundRequest.select().where(
        BackgroundRequest.request_id.in_(request_ids),
        BackgroundRequest.owner == owner,
        BackgroundRequest.status == "PROCESSING",
    ):
        _settle(row, "The server stopped; queued again")


class BackgroundRunner:
    """This server's share of the cluster's background requests: claims them (at most
    `concurrency` at a time), runs them through the call pipeline, keeps their leases
    alive, and sweeps up after dead servers."""

    def __init__(
        self, pipeline: CallPipeline, concurrency: int = 2, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._pipeline = pipeline
        self._lease = lease
        self.handlers: Mapping[str, grpc.RpcMethodHandler] = {}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._concurrency = concurrency
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._draining = False
        self._released = threading.Event()

    def start(self) -> None:
        """Begin claiming, heartbeating and sweeping (call on the server's loop)."""
        self._loops = [
            asyncio.get_running_loop().create_task(loop())
            for loop in (self._poll, self._heartbeat, self._sweep)
        ]

    def wake(self) -> None:
        """A request was just stored: look for work now rather than at the next poll."""
        self._wake.set()

    async def sweep(self) -> None:
        """Settle requests of dead servers now (a poll found one past its lease)."""
        await run_db(sweep_expired)

    async def drain(self, grace_seconds: float) -> None:
        """Stop claiming; give running requests `grace_seconds`, then release the rest."""
        self._draining = True
        # The poll loop (the first) ends by itself: cancelled during a claim, it would
        # leave the claimed request PROCESSING under this server, which never ran it.
        for task in self._loops[1:]:
            task.cancel()
        self._wake.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=grace_seconds)
        # The tasks themselves: one that ends while they are released leaves _running.
        left = {request_id: task for request_id, task in self._running.items() if not task.done()}
        if left:
            log.warning("stopping with %d background requests unfinished; released", len(left))
            # Settled first, then stopped: a run stopped before its row is settled would
            # record its own failure ("internal") in place of "interrupted".
            await run_db(release, self.owner, list(left))
            self._released.set()  # their worker threads stop at their next progress report
            await asyncio.wait(left.values())

    async def _poll(self) -> None:
        while not self._draining:
            while len(self._running) < self._concurrency and not self._draining:
                try:
                    row = await run_db(_claim, self.owner, self._lease)
                except peewee.PeeweeException:
                    log.exception("claiming a background request failed")
                    row = None
                if row is None:
                    break
                self._running[row.request_id] = asyncio.get_running_loop().create_task(
                    self._run(row)
                )
            self._wake.clear()
            if self._draining:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            if self._running:
                try:
                    await run_db(_renew, self.owner, self._lease)
                except peewee.PeeweeException:
                    log.exception("renewing background leases failed")

    async def _sweep(self) -> None:
        while True:
            try:
                if await run_db(sweep_expired):
                    self.wake()
            except peewee.PeeweeException:
                log.exception("sweeping background requests failed")
            await asyncio.sleep(self._lease.total_seconds() / 3)

    async def _run(self, row: BackgroundRequest) -> None:
        try:
            result, error = await self._outcome(row)
            if not await run_db(_finish, self.owner, row.request_id, result, error):
                log.warning(
                    "background request %s was taken over; its result is dropped", row.request_id
                )
        finally:
            self._running.pop(row.request_id, None)
            if not self._draining:
                self.wake()

    async def _outcome(
        self, row: BackgroundRequest
    ) -> tuple[any_pb2.Any | None, status_pb2.Status | None]:
        handler = self.handlers.get(row.method)
        user = await run_db(User.get_or_none, User.id == row.user_id)
        principal = await run_db(principal_for_user, user) if user else None
        if handler is None or principal is None:
            status = build_status(
                grpc.StatusCode.FAILED_PRECONDITION, "The request can no longer run.", "gone"
            )
            return None, status
        request = _unpacked(handler, row.request)
        if request is None:
            status = build_status(
                grpc.StatusCode.INVALID_ARGUMENT,
                "The stored request could not be read, so it cannot run.",
                "malformed_request",
            )
            return None, status
        # Logged under the id its caller was given, in the caller's trace (tracing on).
        metadata = {REQUEST_ID_KEY: row.request_id}
        if row.trace_parent:
            metadata["traceparent"] = row.trace_parent
        token = current_progress.set(_reporter(row.request_id, self._released))
        try:
            response = await self._pipeline.run(
                row.method,
                handler.unary_unary,
                request,
                metadata,
                InProcessContext(metadata),
                run_as=principal,
            )
        except CallFailed as failure:
            return None, failure.status
        except Exception:  # the pipeline turns errors into statuses; this is a last guard
            log.exception("background request %s failed", row.request_id)
            return None, build_status(grpc.StatusCode.INTERNAL, "internal error", "internal")
        finally:
            current_progress.reset(token)
        result = any_pb2.Any()
        result.Pack(response)
        return result, None
