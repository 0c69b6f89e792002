"""google.longrunning.Operations over the voyzu background requests, for gRPC callers:
`requests/{RequestId}` is the same request /api/request/get/{RequestId} reports."""

from __future__ import annotations

import asyncio
import time

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from server.crm import requests
from server.errors import invalid_argument
from server.executors import run_db
from server.principal import require_principal

MAX_PAGE = 100
#: Page tokens are offsets; no page of a user's requests is further than this.
MAX_TOKEN_DIGITS = 9
MAX_WAIT_SECONDS = 60
#: How often WaitOperation looks at the stored request (any process may be running it).
WAIT_POLL_SECONDS = 0.1


class OperationsService(operations_pb2_grpc.OperationsServicer):
    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation:
        principal = require_principal()
        return await run_db(requests.operation, principal.user_id, request.name)

    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ListOperationsResponse:
        principal = require_principal()
        if request.page_size < 0:
            raise invalid_argument("page_size must not be negative.")
        if request.page_token and not (
            request.page_token.isascii()
            and request.page_token.isdigit()
            and len(request.page_token) <= MAX_TOKEN_DIGITS
        ):
            raise invalid_argument("page_token is not one this service gave out.")
        size = min(request.page_size or MAX_PAGE, MAX_PAGE)
        offset = int(request.page_token or 0)
        found, more = await run_db(requests.operations, principal.user_id, offset, size)
        return operations_pb2.ListOperationsResponse(
            operations=found, next_page_token=str(offset + size) if more else ""
        )

    async def DeleteOperation(
        self, request: operations_pb2.DeleteOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        principal = require_principal()
        await run_db(requests.delete, principal.user_id, request.name)
        return empty_pb2.Empty()

    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        principal = require_principal()
        await run_db(requests.cancel, principal.user_id, request.name)
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
            operation = await run_db(requests.operation, principal.user_id, request.name)
            if operation.done or time.monotonic() >= deadline:
                return operation
            await asyncio.sleep(WAIT_POLL_SECONDS)
