"""What every crmgate server interceptor shares: each method's handler is wrapped once,
at its first call, and the wrapped handler is kept for every call after it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler once (`wrap`); a handler `wrap` leaves as it is passes
    through and is asked about again, as grpc.aio asks for it on every call."""

    def __init__(self) -> None:
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
        if handler is None:
            return handler  # an unknown method: grpc answers UNIMPLEMENTED
        wrapped = self.wrap(method, handler)
        if wrapped is not handler:
            self._wrapped[method] = wrapped
        return wrapped

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` with this interceptor's work around it, or `handler` itself."""
        raise NotImplementedError
