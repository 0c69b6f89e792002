"""What happens around every call, whichever way it arrives.

`CallPipeline.run` (and `.stream`, for server-streaming methods) authenticates the
caller, runs the servicer method with the principal in a context variable, turns every
outcome into a response or a google.rpc.Status, and writes one structured log line. The
gRPC server reaches it through `PipelineInterceptor`; the in-process caller
(`server.inprocess`) calls it directly, so both paths share auth, logging and error
details to the letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from grpc_status import rpc_status
from opentelemetry.trace import Span

from gateway.contract import (
    CREDENTIAL_CHECKS,
    REQUEST_ID_KEY,
    CallFailed,
    build_status,
    new_request_id,
    status_code,
)
from server.errors import ApiError
from server.interceptors import WrappingInterceptor
from server.logs import call_fields, log_call
from server.principal import Principal, current_principal
from server.rate_limits import CachedAuthenticate, RateLimits, current_client
from server.tracing import CallScope, end_call

log = logging.getLogger("crmgate.rpc")
#: Each code's name, looked up without the enum's descriptor (every call's log line).
STATUS_NAMES = {code: code.name for code in grpc.StatusCode}

Behavior = Callable[[Any, Any], Awaitable[Message]]
StreamBehavior = Callable[[Message, Any], AsyncIterator[Message]]
#: Given the method and the call's metadata, the caller's principal (None for a public
#: method); raises ApiError(UNAUTHENTICATED) for bad credentials.
Authenticator = Callable[[str, Mapping[str, str]], Awaitable[Principal | None]]


class CallPipeline:
    def __init__(self, authenticate: Authenticator, limits: RateLimits | None = None) -> None:
        self._authenticate = authenticate
        #: Its answer from memory, when it keeps one (server.authentication.Authenticator).
        self._cached: CachedAuthenticate | None = getattr(authenticate, "cached", None)
        self._limits = limits

    async def run(
        self,
        method: str,
        behavior: Behavior,
        request: Message | AsyncIterator[Message],
        metadata: Mapping[str, str],
        context: Any,
        *,
        run_as: Principal | None = None,
    ) -> Message:
        """Run one call with a single response (a unary call, or a client-streaming one:
        `request` is then the stream of messages); returns the response or raises
        CallFailed. `run_as` skips authentication for work a caller was already
        authenticated for (background requests), keeping everything else the same."""
        # Written out rather than through an async context manager shared with `stream`:
        # every request comes this way, and the context manager's generator cost more
        # than the rest of the pipeline.
        started = time.perf_counter()
        request_id = _request_id(metadata)
        principal: Principal | None = None
        failure: status_pb2.Status | None = None
        with CallScope(method, metadata, request_id) as span:
            try:
                admitted = run_as or self._admit(method, metadata, context)
                # Most calls are admitted from memory: the principal itself, no await.
                principal = admitted if isinstance(admitted, Principal) else await admitted
                token = current_principal.set(principal)
                try:
                    response = await behavior(request, context)
                finally:
                    current_principal.reset(token)
            except BaseException as error:
                failure = self._failed(method, started, principal, request_id, span, error)
            else:
                self._finished(method, started, principal, request_id, span, grpc.StatusCode.OK)
        if failure is not None:  # raised outside the span: only server faults mark it
            raise CallFailed(failure)
        return response

    async def stream(
        self,
        method: str,
        behavior: StreamBehavior,
        request: Message,
        metadata: Mapping[str, str],
        context: Any,
    ) -> AsyncIterator[Message]:
        """Run one server-streaming call: its responses, then CallFailed for a failure at
        any point (before the first response, for everything checked up front)."""
        started = time.perf_counter()
        request_id = _request_id(metadata)
        principal: Principal | None = None
        failure: status_pb2.Status | None = None
        with CallScope(method, metadata, request_id) as span:
            try:
                admitted = self._admit(method, metadata, context)
                principal = admitted if isinstance(admitted, Principal) else await admitted
                token = current_principal.set(principal)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    current_principal.reset(token)
            except BaseException as error:
                failure = self._failed(method, started, principal, request_id, span, error)
            else:
                self._finished(method, started, principal, request_id, span, grpc.StatusCode.OK)
        if failure is not None:
            raise CallFailed(failure)

    def _failed(
        self,
        method: str,
        started: float,
        principal: Principal | None,
        request_id: str,
        span: Span | None,
        error: BaseException,
    ) -> status_pb2.Status:
        """Log the failed call; the status it answers with. What is not an Exception
        (cancellation, a closed stream) is logged as CANCELLED and raised again. Called
        while `error` is being handled."""
        status = _failure_status(method, request_id, error)
        code = grpc.StatusCode.CANCELLED if status is None else status_code(status)
        self._finished(method, started, principal, request_id, span, code)
        if status is None:
            raise error
        return status

    def _finished(
        self,
        method: str,
        started: float,
        principal: Principal | None,
        request_id: str,
        span: Span | None,
        code: grpc.StatusCode,
    ) -> None:
        """The call's one log line, and its outcome on its span."""
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        tenant = principal.tenant_name if principal else None
        trace_id = end_call(span, code, request_id)
        status = STATUS_NAMES[code]
        # A credential check that passed is the prelude of the call that follows it
        # (same request id): logged only at DEBUG, so each request logs one line.
        if code == grpc.StatusCode.OK and method in CREDENTIAL_CHECKS:
            fields = call_fields(method, status, duration_ms, tenant, request_id, trace_id)
            log.debug("rpc", extra={"rpc": fields})
        else:
            log_call(method, status, duration_ms, tenant, request_id, trace_id)

    def _admit(
        self, method: str, metadata: Mapping[str, str], context: Any
    ) -> Principal | Awaitable[Principal | None]:
        """The caller's principal when memory answers (RateLimits.admit), else one to
        await (the authenticating coroutine itself: every call comes this way)."""
        if self._limits is None:
            return self._authenticate(method, metadata)
        address = self._limits.client_address(metadata, context.peer())
        current_client.set(address)  # this call's own context: the body's sign-in reads it
        return self._limits.admit(method, metadata, address, self._authenticate, self._cached)


class PipelineInterceptor(WrappingInterceptor):
    """Routes every call of our services (unary and streaming) through the pipeline."""

    def __init__(self, pipeline: CallPipeline) -> None:
        super().__init__()
        self._pipeline = pipeline

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if method.startswith("/grpc."):
            return handler  # health and reflection pass through
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            # The request arrives as bytes and is parsed inside the pipeline, so one that
            # cannot be parsed is INVALID_ARGUMENT (and logged) rather than grpc's UNKNOWN.
            behavior = _parsed(handler.request_deserializer, handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(
                self._single(method, behavior),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._single(method, handler.stream_unary), **options
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream), **options
            )
        return handler  # no bidirectional streams in the contract

    def _single(self, method: str, behavior: Behavior) -> Behavior:
        """A unary or client-streaming handler through the pipeline."""
        pipeline = self._pipeline

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Message:
            try:
                return await pipeline.run(method, behavior, request, _metadata(context), context)
            except CallFailed as failure:
                await context.abort_with_status(rpc_status.to_status(failure.status))
                raise  # abort() always raises; this keeps type checkers honest

        return handle

    def _streaming(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        """A server-streaming handler through the pipeline."""
        pipeline = self._pipeline

        async def handle(
            request: Message, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Message]:
            responses = pipeline.stream(method, behavior, request, _metadata(context), context)
            try:
                async for response in responses:
                    yield response
            except CallFailed as failure:
                await context.abort_with_status(rpc_status.to_status(failure.status))

        return handle


def _parsed(parse: Callable[[bytes], Message], behavior: Behavior) -> Behavior:
    async def run(raw: bytes, context: Any) -> Message:
        try:
            request = parse(raw)
        except DecodeError:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "malformed_request",
                "The request message could not be parsed.",
            ) from None
        return await behavior(request, context)

    return run


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key: value for key, value in context.invocation_metadata() or ()}


def _request_id(metadata: Mapping[str, str]) -> str:
    """A caller's own id is kept (for tracing across systems), within reason."""
    return (metadata.get(REQUEST_ID_KEY) or new_request_id())[:128]


def _failure_status(method: str, request_id: str, error: BaseException) -> status_pb2.Status | None:
    """The status a failed call answers with; None for what is not an Exception."""
    if isinstance(error, ApiError):
        return error.to_status()
    if isinstance(error, CallFailed):
        # An in-process caller's request stream failed (a malformed upload body): its
        # status is the call's, as the same failure ends a call over a channel.
        return error.status
    if isinstance(error, NotImplementedError):
        return build_status(
            grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented", "unimplemented"
        )
    if isinstance(error, Exception):
        # The cause goes to the log only; the caller learns nothing of our insides.
        log.exception("unhandled error in %s (request %s)", method, request_id)
        return build_status(grpc.StatusCode.INTERNAL, "internal error", "internal")
    return None
