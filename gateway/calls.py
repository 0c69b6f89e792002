"""The one narrow interface the gateway reaches services through.

`Caller.call(method, request, metadata, response_type)` returns the response message or
raises gateway.contract.CallFailed with the full google.rpc.Status. Two implementations:
`ChannelCaller` here (a grpc.aio channel to a remote server) and the server's in-process
caller (the same servicers, in the same process, for `crmgate serve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from gateway.contract import MAX_MESSAGE_BYTES, CallFailed, build_status
from gateway.errors import BACKEND_TIMEOUT, BACKEND_UNAVAILABLE, MALFORMED_REPLY


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
                    grpc.StatusCode.INTERNAL, "malformed reply from the backend", MALFORMED_REPLY
                )
            ) from None

    async def close(self) -> None:
        await self._channel.close()


def status_from_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status the server sent (grpcio-status), or one made from the bare code and
    details (a transport failure, or a server that sends no details)."""
    try:
        status = rpc_status.from_call(error)
    except (
        ValueError,
        DecodeError,
    ):  # details that are malformed or contradict the code must not hide the code we have
        status = None
    if status is not None:
        return status
    reason = {
        grpc.StatusCode.UNAVAILABLE: BACKEND_UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED: BACKEND_TIMEOUT,
    }.get(error.code())
    return build_status(error.code(), error.details() or error.code().name.lower(), reason)
