"""Running our asyncio servicers under grpcio-testing, whose server calls methods
synchronously: each call runs the coroutine to completion on a fresh event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc_testing
from google.protobuf.descriptor import ServiceDescriptor


class SyncServicer:
    def __init__(self, servicer: object) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._servicer, name)

        def call(request: Any, context: Any) -> Any:
            return asyncio.run(method(request, context))

        return call


def grpc_testing_server(service: ServiceDescriptor, servicer: object) -> grpc_testing.Server:
    return grpc_testing.server_from_dictionary(
        {service: SyncServicer(servicer)}, grpc_testing.strict_real_time()
    )
