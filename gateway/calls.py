"""The one narrow interface the gateway reaches services through.

`Caller.call(method, request, metadata, response_type)` returns the response message or
raises gateway.contract.CallFailed with the full google.rpc.Status; `call_stream_in` sends
a stream of requests for one response (uploads), `call_stream_out` yields a stream of
responses (downloads), failing with CallFailed at whichever point the call fails. Both
pull one message at a time, so bytes stream through in bounded memory. Two
implementations:
`ChannelCaller` here (a grpc.aio channel to a remote server) and the server's in-process
caller (the same servicers, in the same process, for `crmgate serve`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol

import grpc
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from gateway.channel import open_channel
from gateway.contract import FILE_DESCRIPTORS, CallFailed, build_status
from gateway.errors import BACKEND_TIMEOUT, BACKEND_UNAVAILABLE, MALFORMED_REPLY
from gateway.tracing import client_call
from gateway.upstream_log import log_upstream_failure

#: How long a call may take end to end (a synchronous import of many rows included).
DEFAULT_TIMEOUT_SECONDS = 300.0
#: What a caller learns of a transport failure: never an address or a library's words.
TRANSPORT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "The service is unavailable; please try again.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "The service did not answer in time.",
}


class Caller(Protocol):
    async def call(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Message: ...

    async def call_stream_in(
        self,
        method: str,
        requests: AsyncIterator[Message],
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Message: ...

    def call_stream_out(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> AsyncIterator[Message]: ...

    async def close(self) -> None: ...


class ChannelCaller:
    """Calls gRPC servers over one grpc.aio channel (see gateway.channel), each call with
    a deadline."""

    def __init__(
        self,
        target: str,
        files: Iterable[FileDescriptor] = FILE_DESCRIPTORS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._channel = open_channel(target, files)
        self._timeout = timeout
        self._stubs: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel, for the gateway's own health checks of its backends."""
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
            # apart from a server error. Registered once with the channel (as generated
            # stubs do), so gRPC's core does not look the method's path up per call.
            stub = self._channel.unary_unary(method, _registered_method=True)
            self._stubs[method] = stub
        with client_call(method, metadata) as sent:
            try:
                reply = await stub(
                    request.SerializeToString(), metadata=sent, timeout=self._timeout
                )
            except grpc.aio.AioRpcError as error:
                raise _failed(method, metadata, error) from None
            return _parsed(method, metadata, response_type, reply)

    async def call_stream_in(
        self,
        method: str,
        requests: AsyncIterator[Message],
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> Message:
        """Each request is written once gRPC's flow control takes it. A server that ends
        the call early (a refusal) stops the writing; its status is the answer."""
        with client_call(method, metadata) as sent:
            call = self._channel.stream_unary(method)(metadata=sent, timeout=self._timeout)
            try:
                async for request in requests:
                    try:
                        await call.write(request.SerializeToString())
                    except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                        # The server has ended the call. A write that raced its answer
                        # reports "Internal error from Core"; the status the server sent
                        # replaces that once it is in, and awaiting the call waits for it.
                        break
                else:
                    await call.done_writing()
                reply = await call
            except grpc.aio.AioRpcError as error:
                raise _failed(method, metadata, error) from None
            finally:
                call.cancel()  # a no-op once the call is done; else the requests failed
            return _parsed(method, metadata, response_type, reply)

    async def call_stream_out(
        self,
        method: str,
        request: Message,
        metadata: Sequence[tuple[str, str]],
        response_type: type[Message],
    ) -> AsyncIterator[Message]:
        with client_call(method, metadata) as sent:
            call = self._channel.unary_stream(method)(
                request.SerializeToString(), metadata=sent, timeout=self._timeout
            )
            try:
                while (reply := await call.read()) is not grpc.aio.EOF:
                    yield _parsed(method, metadata, response_type, reply)
            except grpc.aio.AioRpcError as error:
                raise _failed(method, metadata, error) from None
            finally:
                call.cancel()  # a no-op once the call is done; else the reader stopped early

    async def close(self) -> None:
        await self.channel.close()


def _parsed(
    method: str, metadata: Sequence[tuple[str, str]], response_type: type[Message], reply: bytes
) -> Message:
    """Bytes in, bytes out: parsing the reply here tells a malformed one apart from a
    server error (and logs it: no server did)."""
    try:
        return response_type.FromString(reply)
    except DecodeError:
        status = build_status(
            grpc.StatusCode.INTERNAL, "malformed reply from the backend", MALFORMED_REPLY
        )
        log_upstream_failure(method, metadata, status)
        raise CallFailed(status) from None


def _failed(
    method: str, metadata: Sequence[tuple[str, str]], error: grpc.aio.AioRpcError
) -> CallFailed:
    """The failure to raise for a call's error; logged when the server's own status did
    not come with it (its pipeline logged those)."""
    status = _server_status(error)
    if status is None:
        status = transport_status(error)
        log_upstream_failure(method, metadata, status)
    return CallFailed(status)


def _server_status(error: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The rich status the server sent (grpcio-status), if it sent one."""
    try:
        return rpc_status.from_call(error)
    except (
        ValueError,
        DecodeError,
    ):  # details that are malformed or contradict the code must not hide the code we have
        return None


def transport_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """A status made from the bare code: never an address or a library's words."""
    code = error.code()
    reason = {
        grpc.StatusCode.UNAVAILABLE: BACKEND_UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED: BACKEND_TIMEOUT,
    }.get(code)
    message = TRANSPORT_MESSAGES.get(code, f"The call failed ({code.name.lower()}).")
    return build_status(code, message, reason)
