"""Background requests (`?async=true`): stored, claimed with a lease, run through the
same pipeline as a direct call, and recoverable after a crash.

A worker claims a PENDING row by moving it to PROCESSING with a lease; long jobs renew the
lease as they report progress. A row whose lease ran out (its process died) goes back to
PENDING for another attempt, or to FAILED after MAX_ATTEMPTS — never lost silently.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

import grpc
from crm.v1 import crm_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from server.crm.contacts import iso
from server.crm.sessions import principal_for_user
from server.database.models import BackgroundRequest, User, utcnow
from server.errors import CallFailed, build_status
from server.executors import run_db
from server.inprocess import InProcessContext
from server.pipeline import CallPipeline
from server.principal import Principal

log = logging.getLogger("crmgate.background")

#: Methods that answer at once even when asked to run in the background.
NOT_ASYNC = frozenset(
    f"/crm.v1.Crm/{name}"
    for name in ("Authenticate", "GetResourceClass", "StartRequest", "GetRequestStatus")
)
#: Methods a crash may have half-applied (some contacts created): running them again would
#: not give the answer the first run would have, so an interrupted one is failed instead.
NOT_RERUNNABLE = frozenset({"/crm.v1.Crm/CreateContact", "/crm.v1.Crm/CreateImport"})
LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 3
#: Reports progress of the current background request: (percent 0 to 100, commentary).
Progress = Callable[[int, str], None]
current_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "current_progress", default=None
)


def enqueue(principal: Principal, method: str, request: any_pb2.Any) -> str:
    request_id = "req_" + secrets.token_hex(12)
    BackgroundRequest.create(
        request_id=request_id,
        tenant=principal.tenant_id,
        user=principal.user_id,
        method=method,
        request=request.SerializeToString(),
    )
    return request_id


def request_status(
    row: BackgroundRequest,
) -> tuple[crm_pb2.RequestStatus, status_pb2.Status | None]:
    """A stored request as a RequestStatus, and the status it failed with, if it did."""
    status = crm_pb2.RequestStatus(
        request_id=row.request_id,
        commentary=row.commentary,
        percent_complete=row.percent_complete,
        process_status=row.status,
        created_date=iso(row.created_at),
        updated_date=iso(row.updated_at),
    )
    if row.result is not None:
        status.result.CopyFrom(any_pb2.Any.FromString(row.result))
    error = status_pb2.Status.FromString(row.error) if row.error is not None else None
    if error is not None:
        status.error_message = error.message
    return status, error


def _claim(request_id: str) -> BackgroundRequest | None:
    now = utcnow()
    claimed = (
        BackgroundRequest.update(
            status="PROCESSING",
            attempts=BackgroundRequest.attempts + 1,
            lease_until=now + LEASE,
            commentary="Processing",
            updated_at=now,
        )
        .where(BackgroundRequest.request_id == request_id, BackgroundRequest.status == "PENDING")
        .execute()
    )
    return BackgroundRequest.get(BackgroundRequest.request_id == request_id) if claimed else None


def _finish(request_id: str, result: any_pb2.Any | None, error: status_pb2.Status | None) -> None:
    BackgroundRequest.update(
        status="PROCESSED" if error is None else "FAILED",
        percent_complete=100 if error is None else BackgroundRequest.percent_complete,
        commentary="Done" if error is None else "Failed",
        result=result.SerializeToString() if result is not None else None,
        error=error.SerializeToString() if error is not None else None,
        lease_until=None,
        updated_at=utcnow(),
    ).where(BackgroundRequest.request_id == request_id).execute()


def _reporter(request_id: str) -> Progress:
    """Progress updates, at most a few a second, each renewing the lease."""
    last = [0.0]

    def report(percent: int, commentary: str) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2 and percent < 100:
            return
        last[0] = now
        BackgroundRequest.update(
            percent_complete=max(0, min(99, percent)),
            commentary=commentary[:500],
            lease_until=utcnow() + LEASE,
            updated_at=utcnow(),
        ).where(
            BackgroundRequest.request_id == request_id, BackgroundRequest.status == "PROCESSING"
        ).execute()

    return report


def recover_expired() -> list[str]:
    """Requests whose worker died: back to PENDING to retry, or FAILED when out of tries.
    Returns the ids to run again."""
    now = utcnow()
    expired = BackgroundRequest.select().where(
        BackgroundRequest.status == "PROCESSING", BackgroundRequest.lease_until < now
    )
    retry: list[str] = []
    for row in expired:
        if row.method in NOT_RERUNNABLE:
            status = build_status(
                grpc.StatusCode.ABORTED,
                "The request was interrupted and may have been partly applied, so it was "
                "not run again; check the data before retrying.",
                "interrupted",
            )
            _finish(row.request_id, None, status)
        elif row.attempts >= MAX_ATTEMPTS:
            status = build_status(
                grpc.StatusCode.ABORTED,
                f"The request was interrupted {row.attempts} times and was given up.",
                "interrupted",
            )
            _finish(row.request_id, None, status)
        else:
            BackgroundRequest.update(
                status="PENDING", commentary="Interrupted; queued again", updated_at=now
            ).where(
                BackgroundRequest.id == row.id, BackgroundRequest.status == "PROCESSING"
            ).execute()
            retry.append(row.request_id)
    pending = BackgroundRequest.select(BackgroundRequest.request_id).where(
        BackgroundRequest.status == "PENDING"
    )
    return sorted({*retry, *(row.request_id for row in pending)})


class BackgroundRunner:
    """Runs stored requests in this process, through the call pipeline, at most `limit`
    at once: the rest stay PENDING until one finishes, so a burst of background imports
    cannot take every thread from direct calls."""

    def __init__(self, pipeline: CallPipeline, limit: int = 2) -> None:
        self._pipeline = pipeline
        self.handlers: Mapping[str, grpc.RpcMethodHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(limit)

    def start(self, request_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover(self) -> None:
        for request_id in await run_db(recover_expired):
            self.start(request_id)

    async def _run(self, request_id: str) -> None:
        async with self._slots:
            await self._run_claimed(request_id)

    async def _run_claimed(self, request_id: str) -> None:
        row = await run_db(_claim, request_id)
        if row is None:
            return  # another worker has it, or it is done
        handler = self.handlers.get(row.method)
        user = await run_db(User.get_or_none, User.id == row.user_id)
        principal = await run_db(principal_for_user, user) if user else None
        if handler is None or principal is None:
            status = build_status(
                grpc.StatusCode.FAILED_PRECONDITION, "The request can no longer run.", "gone"
            )
            await run_db(_finish, request_id, None, status)
            return
        packed = any_pb2.Any.FromString(row.request)
        request = handler.request_deserializer(packed.value)
        token = current_progress.set(_reporter(request_id))
        try:
            response = await self._pipeline.run(
                row.method,
                handler.unary_unary,
                request,
                {},
                InProcessContext({}),
                run_as=principal,
            )
        except CallFailed as failure:
            await run_db(_finish, request_id, None, failure.status)
        except Exception:  # the pipeline turns errors into statuses; this is a last guard
            log.exception("background request %s failed", request_id)
            status = build_status(grpc.StatusCode.INTERNAL, "internal error", "internal")
            await run_db(_finish, request_id, None, status)
        else:
            result = any_pb2.Any()
            result.Pack(response)
            await run_db(_finish, request_id, result, None)
        finally:
            current_progress.reset(token)
