"""Background requests as their caller sees them: started, reported, listed, cancelled and
deleted, through the voyzu request API and google.longrunning.Operations. Running them
is server/crm/background.py."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import grpc
from crm.v1 import crm_pb2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from gateway.contract import build_status
from server.crm import messages
from server.crm.messages import OPERATION_PREFIX
from server.database.models import BackgroundRequest, utcnow
from server.errors import ApiError, not_found
from server.principal import Principal
from server.tracing import trace_carrier


def enqueue(principal: Principal, method: str, request: any_pb2.Any) -> str:
    """Store a request to run in the background; its id, for the caller to poll."""
    request_id = "req_" + secrets.token_hex(12)
    BackgroundRequest.create(
        request_id=request_id,
        tenant=principal.tenant_id,
        user=principal.user_id,
        method=method,
        request=request.SerializeToString(),
        trace_parent=trace_carrier().get("traceparent"),
    )
    return request_id


@dataclass(frozen=True)
class Report:
    """A request as GetRequestStatus answers it."""

    status: crm_pb2.RequestStatus
    error: status_pb2.Status | None
    method: str
    #: Still PROCESSING past its lease: its worker died, and the runner must retry it or
    #: give up on it before the report means anything.
    stale: bool


def _stored(request_id: str) -> str:
    """A request id as stored: ids are `req_` and lowercase hex, accepted in any case."""
    return request_id.lower()


def report(user_id: int | None, request_id: str) -> Report:
    """The user's request; NOT_FOUND for another's or an unknown one."""
    row = BackgroundRequest.get_or_none(
        BackgroundRequest.request_id == _stored(request_id), BackgroundRequest.user == user_id
    )
    if row is None:
        raise not_found("request_not_found", f"No request {request_id}.")
    status, error = messages.request_status(row)
    stale = row.status == "PROCESSING" and row.lease_until and row.lease_until < utcnow()
    return Report(status, error, row.method, bool(stale))


def _owned(user_id: int | None, name: str) -> BackgroundRequest:
    """The user's request named `requests/{RequestId}`; NOT_FOUND for any other name."""
    row = BackgroundRequest.get_or_none(
        BackgroundRequest.request_id == _stored(name.removeprefix(OPERATION_PREFIX)),
        BackgroundRequest.user == user_id,
    )
    if row is None or not name.startswith(OPERATION_PREFIX):
        raise ApiError(grpc.StatusCode.NOT_FOUND, "not_found", f"No operation {name}.")
    return row


def operation(user_id: int | None, name: str) -> operations_pb2.Operation:
    return messages.operation(_owned(user_id, name))


def operations(
    user_id: int | None, offset: int, size: int
) -> tuple[list[operations_pb2.Operation], bool]:
    """A page of the user's requests, newest first, and whether more follow."""
    rows = list(
        BackgroundRequest.select()
        .where(BackgroundRequest.user == user_id)
        .order_by(BackgroundRequest.id.desc())
        .offset(offset)
        .limit(size + 1)
    )
    return [messages.operation(row) for row in rows[:size]], len(rows) > size


def delete(user_id: int | None, name: str) -> None:
    """Forget a finished request; one pending or running cannot be deleted."""
    row = _owned(user_id, name)
    if row.status in ("PENDING", "PROCESSING"):
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION, "running", "The operation is still running."
        )
    row.delete_instance()


def cancel(user_id: int | None, name: str) -> None:
    """A request that has not started is cancelled; one running or done cannot be."""
    row = _owned(user_id, name)
    status = build_status(grpc.StatusCode.CANCELLED, "Cancelled by the caller.", "cancelled")
    cancelled = (
        BackgroundRequest.update(
            status="FAILED",
            commentary="Cancelled",
            error=status.SerializeToString(),
            updated_at=utcnow(),
        )
        .where(BackgroundRequest.id == row.id, BackgroundRequest.status == "PENDING")
        .execute()
    )
    if not cancelled:
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "not_pending",
            "Only a request that has not started can be cancelled.",
        )
