"""Calling servicers in the same process, through the same pipeline as the gRPC server.

What grpc-gateway's RegisterXxxHandlerServer does, minus its loss of interceptors: the
request message goes to the servicer object as is (no serialization round trip), and the
call still passes authentication, logging and status-detail handling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from gateway.contract import CallFailed, build_status
from server.errors import ApiError
from server.pipeline import CallPipeline


class InProcessContext:
    """The part of grpc.aio.ServicerContext our servicers (and generated stubs) use."""

    __slots__ = ("_metadata",)

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
    """The gateway's call interface, answered by servicers in this process. Streams pass
    through as they are: the servicer pulls the gateway's messages (and the gateway pulls
    the servicer's) one at a time, so a file is never whole in memory."""

    def __init__(self, pipeline: CallPipeline, handlers: Mapping[str, grpc.RpcMethodHandler]):
        self._pipeline = pipeline
        self._handlers = handlers
        #: (method, kind) → its servicer method, found once.
        self._behaviors: dict[tuple[str, str], Any] = {}

    def call(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Awaitable[Message]:
        # The pipeline's own coroutine, not one around it: every request comes this way.
        return self._run(method, "unary_unary", request, metadata)

    def call_stream_in(
        self,
        method: str,
        requests: AsyncIterator[Message],
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Awaitable[Message]:
        return self._run(method, "stream_unary", requests, metadata)

    def _run(
        self,
        method: str,
        kind: str,
        request: Message | AsyncIterator[Message],
        metadata: Sequence[tuple[str, str]],
    ) -> Awaitable[Message]:
        headers = dict(metadata)
        behavior = self._behavior(method, kind)
        return self._pipeline.run(method, behavior, request, headers, InProcessContext(headers))

    async def call_stream_out(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> AsyncIterator[Message]:
        headers = dict(metadata)
        behavior = self._behavior(method, "unary_stream")
        responses = self._pipeline.stream(
            method, behavior, request, headers, InProcessContext(headers)
        )
        try:
            async for response in responses:
                yield response
        finally:
            await responses.aclose()

    def _behavior(self, method: str, kind: str) -> Any:
        """The servicer method behind `method`, if it is of this kind (unary_unary, …)."""
        behavior = self._behaviors.get((method, kind))
        if behavior is None:
            behavior = self._behaviors[method, kind] = self._find(method, kind)
        return behavior

    def _find(self, method: str, kind: str) -> Any:
        handler = self._handlers.get(method)
        behavior = getattr(handler, kind, None)
        if behavior is None:
            raise CallFailed(
                build_status(
                    grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented", "unimplemented"
                )
            )
        return behavior

    async def close(self) -> None:
        """Nothing to release: the servicers belong to the server."""
