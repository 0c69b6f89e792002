"""HTTP before and beneath the routes: refusals aiohttp makes itself (a request line or
header too long, malformed HTTP, a handler that crashed) in the envelope of the surface
that owns the path, and connections closed when a client stalls mid-request.

aiohttp answers those refusals with text/plain that echoes the offending bytes (a header
holding a key or a session id) and logs them; `GatewayRequestHandler.handle_error`
replaces both. Serve the app with `GatewayRunner`: its connections are
GatewayRequestHandlers, configured by `build_app`'s `handler_args`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.http_parser import RawRequestMessage
from google.rpc import status_pb2

from gateway.calls import TRANSPORT_MESSAGES
from gateway.contract import build_status
from gateway.errors import (
    BACKEND_TIMEOUT,
    MALFORMED_HTTP,
    REQUEST_HEAD_TOO_LARGE,
    reject,
)
from gateway.limits import HttpLimits
from gateway.surfaces.base import Surface

log = logging.getLogger("crmgate.gateway")

SurfaceForPath = Callable[[str], Surface]


def handler_args(limits: HttpLimits, surface_for_path: SurfaceForPath) -> dict[str, Any]:
    """The keyword arguments of every connection's GatewayRequestHandler."""
    return {
        "surface_for_path": surface_for_path,
        "read_timeout": limits.read_timeout,
        "max_line_size": limits.max_line_bytes,
        "max_field_size": limits.max_line_bytes,
    }


class GatewayRequestHandler(web.RequestHandler):
    """One connection. Besides aiohttp's work: refusals as JSON envelopes, and a read
    timeout — the connection closes once the client, owing the head or the body of a
    request, has sent nothing for `read_timeout` seconds. Waits that are the server's
    (a handler at work, reading paused because a buffer is full) never count."""

    def __init__(
        self,
        manager: web.Server,
        *,
        surface_for_path: SurfaceForPath,
        read_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._surface_for_path = surface_for_path
        self._read_timeout = read_timeout
        self._last_read = 0.0
        self._stall_check: asyncio.TimerHandle | None = None
        #: The body of the latest request (still arriving unless at EOF).
        self._body: Any = None
        #: Whether the client owes a request head: a new connection, or bytes of a next
        #: request have arrived.
        self._owes_head = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._last_read = self._loop.time()
        self._stall_check = self._loop.call_at(
            self._last_read + self._read_timeout, self._check_stall
        )

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._stall_check is not None:
            self._stall_check.cancel()
            self._stall_check = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        body = self._body
        body_done = body is None or body.is_eof()
        requests = self._request_count
        super().data_received(data)
        arrived = self._request_count - requests
        if arrived and self._messages:
            messages = self._messages
            # Most often one request, whole: its body is the one to watch.
            if arrived == 1 and type(messages[-1][0]) is RawRequestMessage:
                self._body = messages[-1][1]
            else:
                self._take_messages(arrived)
            self._owes_head = False
        elif body_done and data:
            self._owes_head = True

    def _take_messages(self, count: int) -> None:
        """Note the latest request's body. A parse error in the middle of a body (a broken
        chunk) is that body's failure — its reader learns it, and answers in its surface's
        envelope — not a request of its own that would earn a second response."""
        messages = self._messages
        for index in range(max(0, len(messages) - count), len(messages)):
            entry = messages[index]
            message, payload = entry
            if isinstance(message, RawRequestMessage):
                self._body = payload
            elif self._body is not None and not self._body.is_eof():
                self._messages.remove(entry)
                self._body.set_exception(web.RequestPayloadError("malformed body"))
                self._body.feed_eof()  # nothing more will come: no lingering over it
                self.close()  # nor can anything that follows a broken body be trusted
                return

    def _check_stall(self) -> None:
        """Close the connection if the client has stalled; else look again later."""
        self._stall_check = None
        if self.transport is None:
            return
        now = self._loop.time()
        due = self._last_read + self._read_timeout
        if now >= due and self._stalled():
            log.info(
                "closed a connection that sent nothing for %ss mid-request", self._read_timeout
            )
            self.force_close()
            return
        self._stall_check = self._loop.call_at(
            max(due, now + self._read_timeout), self._check_stall
        )

    def _stalled(self) -> bool:
        if self._reading_paused:
            return False  # we stopped reading: the wait is ours
        if self._body is not None and not self._body.is_eof():
            return True
        return self._owes_head and not self._request_in_progress and not self._messages

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The refusal in the envelope of the surface that owns the path (a neutral JSON
        one when the request was too broken to have a path). Logged without the
        exception's text, which may quote a header."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun; no error can follow it")
        surface = self._surface_for_path(request.path)
        if isinstance(exc, ConnectionError):
            log.debug("the client went away during a request")
        elif status >= 500:  # the path stays out of the log: it may hold a capability
            log.error("unhandled error in a %s request", surface.name, exc_info=exc)
        else:
            log.info("refused malformed HTTP (%s)", type(exc).__name__ if exc else status)
        response = surface.error_response(
            request,  # type: ignore[arg-type]
            failure_status(status, exc, self.max_line_size),
        )
        response.force_close()
        return response


def failure_status(http: int, exc: BaseException | None, max_line: int) -> status_pb2.Status:
    """The google.rpc.Status of a refusal aiohttp made, for a surface to render."""
    if isinstance(exc, LineTooLong):
        return reject(grpc.StatusCode.INVALID_ARGUMENT, REQUEST_HEAD_TOO_LARGE, max=max_line).status
    if http < 500:
        return reject(grpc.StatusCode.INVALID_ARGUMENT, MALFORMED_HTTP).status
    if http == 504:
        code = grpc.StatusCode.DEADLINE_EXCEEDED
        return build_status(code, TRANSPORT_MESSAGES[code], BACKEND_TIMEOUT)
    return build_status(grpc.StatusCode.INTERNAL, "internal error", "internal")


class GatewayServer(web.Server):
    """aiohttp's Server, making GatewayRequestHandlers."""

    def __call__(self) -> web.RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner for `build_app`'s app: its connections are GatewayRequestHandlers."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GatewayServer  # the same server; only what it makes differs
        return server
