"""Running our asyncio servicers under grpcio-testing, whose server calls methods
synchronously: each call runs the coroutine on a fresh event loop, through the same call
pipeline as production (so ApiErrors become statuses with details), as a given caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc_testing
from google.protobuf.descriptor import ServiceDescriptor
from grpc_status import rpc_status

from gateway.contract import CallFailed
from server.pipeline import CallPipeline
from server.principal import Principal


class SyncServicer:
    def __init__(self, service: ServiceDescriptor, servicer: object, caller: Principal | None):
        self._service = service
        self._servicer = servicer

        async def authenticate(method: str, metadata: object) -> Principal | None:
            return caller

        self._pipeline = CallPipeline(authenticate)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        behavior = getattr(self._servicer, name)
        method = f"/{self._service.full_name}/{name}"

        def call(request: Any, context: Any) -> Any:
            try:
                return asyncio.run(self._pipeline.run(method, behavior, request, {}, context))
            except CallFailed as failure:
                # grpcio-testing's abort() drops trailing metadata: end the call by hand.
                status = rpc_status.to_status(failure.status)
                context.set_trailing_metadata(status.trailing_metadata)
                context.set_code(status.code)
                context.set_details(status.details)
                return None

        return call


def grpc_testing_server(
    service: ServiceDescriptor, servicer: object, caller: Principal | None = None
) -> grpc_testing.Server:
    return grpc_testing.server_from_dictionary(
        {service: SyncServicer(service, servicer, caller)}, grpc_testing.strict_real_time()
    )
