"""google.longrunning.Operations over the voyzu background requests, for gRPC callers:
`requests/{RequestId}` is the same request /api/request/get/{RequestId} reports."""

from __future__ import annotations

import asyncio
import time

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from server.crm.background import request_status
from server.database.models import BackgroundRequest, utcnow
from server.errors import ApiError, build_status
from server.executors import run_db
from server.principal import require_principal

PREFIX = "requests/"
MAX_PAGE = 100
MAX_WAIT_SECONDS = 60
#: How often WaitOperation looks at the stored request (any process may be running it).
WAIT_POLL_SECONDS = 0.1


def _operation(row: BackgroundRequest) -> operations_pb2.Operation:
    status, error = request_status(row)
    operation = operations_pb2.Operation(name=PREFIX + row.request_id)
    operation.metadata.Pack(status)
    if row.status == "PROCESSED":
        operation.done = True
        operation.response.CopyFrom(status.result)
    elif error is not None:
        operation.done = True
        operation.error.CopyFrom(error)
    return operation


def _owned(user_id: int | None, name: str) -> BackgroundRequest:
    row = BackgroundRequest.get_or_none(
        BackgroundRequest.request_id == name.removeprefix(PREFIX),
        BackgroundRequest.user == user_id,
    )
    if row is None or not name.startswith(PREFIX):
        raise ApiError(grpc.StatusCode.NOT_FOUND, "not_found", f"No operation {name}.")
    return row


def _cancel(row: BackgroundRequest) -> BackgroundRequest:
    """A request that has not started is cancelled; one running or done cannot be."""
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
    return BackgroundRequest.get_by_id(row.id)


class OperationsService(operations_pb2_grpc.OperationsServicer):
    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation:
        principal = require_principal()
        return await run_db(lambda: _operation(_owned(principal.user_id, request.name)))

    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ListOperationsResponse:
        principal = require_principal()
        size = min(request.page_size or MAX_PAGE, MAX_PAGE)
        offset = int(request.page_token) if request.page_token.isdigit() else 0

        def listing() -> operations_pb2.ListOperationsResponse:
            rows = list(
                BackgroundRequest.select()
                .where(BackgroundRequest.user == principal.user_id)
                .order_by(BackgroundRequest.id.desc())
                .offset(offset)
                .limit(size + 1)
            )
            return operations_pb2.ListOperationsResponse(
                operations=[_operation(row) for row in rows[:size]],
                next_page_token=str(offset + size) if len(rows) > size else "",
            )

        return await run_db(listing)

    async def DeleteOperation(
        self, request: operations_pb2.DeleteOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        principal = require_principal()

        def delete() -> empty_pb2.Empty:
            row = _owned(principal.user_id, request.name)
            if row.status in ("PENDING", "PROCESSING"):
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "running",
                    "The operation is still running.",
                )
            row.delete_instance()
            return empty_pb2.Empty()

        return await run_db(delete)

    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        principal = require_principal()
        await run_db(lambda: _cancel(_owned(principal.user_id, request.name)))
        return empty_pb2.Empty()

    async def WaitOperation(
        self, request: operations_pb2.WaitOperationRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation:
        """The operation once done, or as it is when the timeout (default 30 s) runs out."""
        principal = require_principal()
        timeout = (
            request.timeout.ToTimedelta().total_seconds() if request.HasField("timeout") else 30
        )
        deadline = time.monotonic() + min(timeout, MAX_WAIT_SECONDS)
        while True:
            operation = await run_db(lambda: _operation(_owned(principal.user_id, request.name)))
            if operation.done or time.monotonic() >= deadline:
                return operation
            await asyncio.sleep(WAIT_POLL_SECONDS)
