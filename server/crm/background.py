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
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

import grpc
from crm.v1 import crm_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from gateway.contract import CallFailed, build_status
from server.crm.sessions import principal_for_user
from server.database.connection import run_sync
from server.database.models import BackgroundRequest, User, utcnow
from server.inprocess import InProcessContext
from server.pipeline import CallPipeline

log = logging.getLogger("crmgate.background")

_CRM = crm_pb2.DESCRIPTOR.services_by_name["Crm"]
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


def background_allowed(method: str) -> bool:
    """Whether the contract marks a Crm method (`/crm.v1.Crm/Name`) `background_allowed`."""
    service, _, name = method.lstrip("/").partition("/")
    found = _CRM.methods_by_name.get(name) if service == _CRM.full_name else None
    return found is not None and found.GetOptions().Extensions[crm_pb2.background_allowed]


def progress_reporter() -> Progress:
    """The current background request's progress reporter, or one that ignores reports
    (a direct call). Read it on the event loop: worker threads do not see the context
    variable, so the servicer hands it to the domain function it runs."""
    return current_progress.get() or (lambda percent, commentary: None)


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
    """Runs stored requests in this process, through the call pipeline."""

    def __init__(self, pipeline: CallPipeline) -> None:
        self._pipeline = pipeline
        self.handlers: Mapping[str, grpc.RpcMethodHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, request_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def recover(self) -> None:
        for request_id in await run_sync(recover_expired):
            self.start(request_id)

    async def _run(self, request_id: str) -> None:
        row = await run_sync(_claim, request_id)
        if row is None:
            return  # another worker has it, or it is done
        handler = self.handlers.get(row.method)
        user = await run_sync(User.get_or_none, User.id == row.user_id)
        principal = await run_sync(principal_for_user, user) if user else None
        if handler is None or principal is None:
            status = build_status(
                grpc.StatusCode.FAILED_PRECONDITION, "The request can no longer run.", "gone"
            )
            await run_sync(_finish, request_id, None, status)
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
            await run_sync(_finish, request_id, None, failure.status)
        except Exception:  # the pipeline turns errors into statuses; this is a last guard
            log.exception("background request %s failed", request_id)
            status = build_status(grpc.StatusCode.INTERNAL, "internal error", "internal")
            await run_sync(_finish, request_id, None, status)
        else:
            result = any_pb2.Any()
            result.Pack(response)
            await run_sync(_finish, request_id, result, None)
        finally:
            current_progress.reset(token)
