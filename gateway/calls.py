"""The one narrow interface the gateway reaches services through.

`Caller.call(method, request, metadata, response_type)` returns the response message or
raises server.errors.CallFailed with the full google.rpc.Status. Two implementations:
`ChannelCaller` here (a grpc.aio channel to a remote server) and
`server.inprocess.InProcessCaller` (the same servicers, in this process).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from server.config import MAX_MESSAGE_BYTES
from server.errors import CallFailed, build_status
from server.pipeline import STATUS_DETAILS_KEY


class Caller(Protocol):
    async def call(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Message: ...

    async def close(self) -> None: ...


class ChannelCaller:
    """Calls a gRPC server over a grpc.aio channel."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stubs: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def call(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Message:
        stub = self._stubs.get(method)
        if stub is None:
            # Bytes in, bytes out: parsing the reply here lets a malformed one be told
            # apart from a server error.
            stub = self._channel.unary_unary(method)
            self._stubs[method] = stub
        try:
            reply = await stub(request.SerializeToString(), metadata=tuple(metadata))
        except grpc.aio.AioRpcError as error:
            raise CallFailed(status_from_error(error)) from None
        try:
            return response_type.FromString(reply)
        except DecodeError:
            raise CallFailed(
                build_status(
                    grpc.StatusCode.INTERNAL, "malformed reply from the backend", "malformed_reply"
                )
            ) from None

    async def close(self) -> None:
        await self._channel.close()


def status_from_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status the server sent, or one made from the bare code and details
    (a transport failure, or a server that sends no details)."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a malformed detail must not hide the code we do have
                break
            if status.code == error.code().value[0]:
                return status
    reason = {
        grpc.StatusCode.UNAVAILABLE: "backend_unavailable",
        grpc.StatusCode.DEADLINE_EXCEEDED: "backend_timeout",
    }.get(error.code())
    return build_status(error.code(), error.details() or error.code().name.lower(), reason)
