"""Calling servicers in the same process, through the same pipeline as the gRPC server.

What grpc-gateway's RegisterXxxHandlerServer does, minus its loss of interceptors: the
request message goes to the servicer object as is (no serialization round trip), and the
call still passes authentication, logging and status-detail handling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf.message import Message

from gateway.contract import CallFailed, build_status
from server.errors import ApiError
from server.pipeline import CallPipeline


class InProcessContext:
    """The part of grpc.aio.ServicerContext our servicers (and generated stubs) use."""

    def __init__(self, metadata: Mapping[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._metadata.items())

    def peer(self) -> str:
        return "in-process"

    def set_code(self, code: grpc.StatusCode) -> None:
        """Generated UNIMPLEMENTED stubs call this, then raise NotImplementedError, which
        the pipeline turns into the status itself."""

    def set_details(self, details: str) -> None:
        """See set_code."""

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: object) -> None:
        raise ApiError(code, code.name.lower(), details)


class InProcessCaller:
    """The gateway's call interface, answered by servicers in this process."""

    def __init__(self, pipeline: CallPipeline, handlers: Mapping[str, grpc.RpcMethodHandler]):
        self._pipeline = pipeline
        self._handlers = handlers

    async def call(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Message:
        handler = self._handlers.get(method)
        if handler is None or handler.unary_unary is None:
            raise CallFailed(
                build_status(
                    grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented", "unimplemented"
                )
            )
        headers = dict(metadata)
        return await self._pipeline.run(
            method, handler.unary_unary, request, headers, InProcessContext(headers)
        )

    async def close(self) -> None:
        """Nothing to release: the servicers belong to the server."""
