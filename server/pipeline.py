"""What happens around every call, whichever way it arrives.

`CallPipeline.run` authenticates the caller, runs the servicer method with the principal
in a context variable, turns every outcome into a response or a google.rpc.Status, and
writes one structured log line. The gRPC server reaches it through `PipelineInterceptor`;
the in-process caller (`server.inprocess`) calls it directly, so both paths share auth,
logging and error details to the letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from gateway.contract import REQUEST_ID_KEY, CallFailed, build_status, new_request_id, status_code
from server.errors import ApiError
from server.principal import Principal, current_principal

log = logging.getLogger("crmgate.rpc")

Behavior = Callable[[Message, Any], Awaitable[Message]]
#: Given the method and the call's metadata, the caller's principal (None for a public
#: method); raises ApiError(UNAUTHENTICATED) for bad credentials.
Authenticator = Callable[[str, Mapping[str, str]], Awaitable[Principal | None]]


class CallPipeline:
    def __init__(self, authenticate: Authenticator) -> None:
        self._authenticate = authenticate

    async def run(
        self,
        method: str,
        behavior: Behavior,
        request: Message,
        metadata: Mapping[str, str],
        context: Any,
        *,
        run_as: Principal | None = None,
    ) -> Message:
        """Run one unary call; returns the response or raises CallFailed. `run_as` skips
        authentication for work a caller was already authenticated for (background
        requests), keeping everything else the same."""
        started = time.perf_counter()
        # A caller's own id is kept (for tracing across systems), within reason.
        request_id = (metadata.get(REQUEST_ID_KEY) or new_request_id())[:128]
        principal: Principal | None = None
        status: status_pb2.Status | None = None
        response: Message | None = None
        try:
            principal = run_as or await self._authenticate(method, metadata)
            token = current_principal.set(principal)
            try:
                response = await behavior(request, context)
            finally:
                current_principal.reset(token)
        except ApiError as error:
            status = error.to_status()
        except NotImplementedError:
            status = build_status(
                grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented", "unimplemented"
            )
        except Exception:
            # The cause goes to the log only; the caller learns nothing of our insides.
            log.exception("unhandled error in %s (request %s)", method, request_id)
            status = build_status(grpc.StatusCode.INTERNAL, "internal error", "internal")
        if log.isEnabledFor(logging.INFO):
            code = status_code(status) if status is not None else grpc.StatusCode.OK
            log.info(
                "rpc",
                extra={
                    "rpc": {
                        "method": method,
                        "status": code.name,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        "tenant": principal.tenant_name if principal else None,
                        "request_id": request_id,
                    }
                },
            )
        if status is not None:
            raise CallFailed(status)
        assert response is not None
        return response


class PipelineInterceptor(grpc.aio.ServerInterceptor):
    """Routes every unary gRPC call through the pipeline."""

    def __init__(self, pipeline: CallPipeline) -> None:
        self._pipeline = pipeline
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or method.startswith("/grpc."):
            return handler  # health, reflection and anything not unary pass through
        wrapped = grpc.unary_unary_rpc_method_handler(
            self._wrap(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, behavior: Behavior) -> Behavior:
        pipeline = self._pipeline

        async def unary_unary(request: Message, context: grpc.aio.ServicerContext) -> Message:
            metadata = {key: value for key, value in context.invocation_metadata() or ()}
            try:
                return await pipeline.run(method, behavior, request, metadata, context)
            except CallFailed as failure:
                await context.abort_with_status(rpc_status.to_status(failure.status))
                raise  # abort() always raises; this keeps type checkers honest

        return unary_unary
