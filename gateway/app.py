"""The aiohttp application: every route comes from the annotations in the descriptors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message

from gateway import json_body
from gateway.calls import Caller
from gateway.contract import MAX_MESSAGE_BYTES, PUBLIC_METHODS, CallFailed
from gateway.errors import (
    BODY_TOO_LARGE,
    INVALID_JSON,
    JSON_TOO_DEEP,
    NUL_CHARACTER,
    NUMBER_TOO_LONG,
    UNREADABLE_BODY,
    Refused,
    reject,
)
from gateway.forwarding import Network, forwarded_middleware
from gateway.json_body import Path as JsonPath
from gateway.limits import (
    DEFAULT_LIMITS,
    SMALL_BODY_BYTES,
    HttpLimits,
    LargeBodies,
    announced_over,
)
from gateway.metrics import HttpMeasure
from gateway.protocol import handler_args
from gateway.refusal_log import log_refusal
from gateway.request_ids import echo_request_id
from gateway.routes import Route, discover_routes
from gateway.routing import Router
from gateway.surfaces.base import Surface
from gateway.surfaces.fallback import FallbackSurface
from gateway.surfaces.storage import StorageSurface
from gateway.tracing import http_middleware

#: Enough for any 64-bit integer (20 digits), with room for leading zeros.
MAX_INTEGER_DIGITS = 32
#: Objects and arrays within each other: far more than any message of the contract nests.
MAX_JSON_DEPTH = 64
#: Base64 grows bytes by a third; the largest documented JSON body fits in this.
MAX_BODY_BYTES = MAX_MESSAGE_BYTES * 4 // 3 + 1024 * 1024


class Gateway:
    """Dispatches HTTP requests to service methods through a Caller."""

    def __init__(
        self,
        caller: Caller,
        surfaces: Sequence[Surface],
        routes: Sequence[Route],
        bodies: LargeBodies,
    ):
        self._caller = caller
        self._bodies = bodies
        self._router = Router(routes)
        self._owners = {service: surface for surface in surfaces for service in surface.services}
        # Longest prefix first, so /api/c2c/ wins over /api/.
        self._by_prefix = sorted(surfaces, key=lambda s: len(s.path_prefix), reverse=True)
        self._fallback = FallbackSurface()
        for surface in surfaces:
            surface.bind(routes, caller)

    def surface_for_path(self, path: str) -> Surface:
        """The surface owning a path: the longest prefix, the prefix's own path without
        its slash (`/api/c2c`) included."""
        for surface in self._by_prefix:
            if path.startswith(surface.path_prefix) or path == surface.path_prefix.rstrip("/"):
                return surface
        return self._fallback

    def surface_for_route(self, route: Route) -> Surface:
        return self._owners.get(route.service) or self.surface_for_path(route.path.template)

    def handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler of one annotated route: `dispatch` itself, bound to it (no
        coroutine around it: every request comes this way)."""
        return partial(self.dispatch, route=route, surface=self.surface_for_route(route))

    async def unrouted(self, request: web.Request) -> web.StreamResponse:
        """Requests no route took: tell 'no such path' from 'wrong verb', in the format of
        the surface that owns the path."""
        surface = self.surface_for_path(request.path)
        try:
            route, values = self._router.match(request.method, request.rel_url.raw_path)
        except CallFailed as failure:
            log_refusal(request, surface.name, None, failure)
            return await surface.refusal(request, failure.status)
        # HEAD on a GET route lands here (aiohttp routes GET exactly).
        surface = self._owners.get(route.service, surface)
        return await self.dispatch(request, route, surface, values)

    async def dispatch(
        self,
        request: web.Request,
        route: Route,
        surface: Surface,
        values: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """The route's call and its answer, a failure in the surface's envelope. `values`:
        the path's variables (else read from the request's match)."""
        try:
            if values is None:
                values = route.path.field_values(request.match_info)
            metadata = surface.call_metadata(request, route)
            guarded = route.full_method not in PUBLIC_METHODS
            # A body that may be large is read only once the credentials are known good;
            # a small one (what aiohttp buffers anyway) is read first, saving authenticated
            # callers the extra call, and what is wrong with it is told only to a caller.
            checked = guarded and bool(route.body) and announced_over(request, SMALL_BODY_BYTES)
            if checked:
                await self._check_credentials(surface, metadata)
            try:
                with self._bodies.hold(request):
                    response = await surface.call(
                        self._caller,
                        request,
                        route,
                        values,
                        metadata,
                        # Passed, not held here: the surface releases the body once sent on.
                        await read_json(request, partial(surface.keep_raw, route))
                        if route.body
                        else None,
                    )
            except Refused:
                # The gateway's own refusal (of the body, a header, …) is told only to a
                # caller with valid credentials; a service's answer came after its own
                # check.
                if guarded and not checked:
                    await self._check_credentials(surface, metadata)
                raise
            # Streamed by the surface already: asked as "not a message", which costs a
            # third of asking aiohttp's abstract response class.
            if not isinstance(response, Message):
                return response
            return surface.render(request, route, response)
        except CallFailed as failure:
            log_refusal(request, surface.name, route, failure)
            return await surface.refusal(request, failure.status)

    async def _check_credentials(self, surface: Surface, metadata: list[tuple[str, str]]) -> None:
        """Raises CallFailed (UNAUTHENTICATED) unless the request's headers carry valid
        credentials for the surface: the server decides, the gateway holds no secret."""
        if surface.credential_check is not None:
            method, request_type, response_type = surface.credential_check
            await self._caller.call(method, request_type(), metadata, response_type)


async def read_json(request: web.Request, keep_raw: Callable[[JsonPath], bool]) -> Any:
    """The parsed JSON body; an empty body reads as {}. Long plain strings where
    `keep_raw(path)` stay in the body, as gateway.json_body.RawText."""
    body = await read_body(request)
    if not body or body.isspace():
        return {}
    try:
        document = json_body.parse(body, _loads, keep_raw)
        _refuse_what_no_field_takes(document)
        return document
    except NumberTooLong:
        raise reject(
            grpc.StatusCode.INVALID_ARGUMENT, NUMBER_TOO_LONG, max=MAX_INTEGER_DIGITS
        ) from None
    except RecursionError:
        raise reject(grpc.StatusCode.INVALID_ARGUMENT, JSON_TOO_DEEP) from None
    except json.JSONDecodeError as error:
        line, column = error.lineno, error.colno
    except UnicodeDecodeError as error:
        line = body.count(b"\n", 0, error.start) + 1
        column = error.start - body.rfind(b"\n", 0, error.start)
    raise reject(grpc.StatusCode.INVALID_ARGUMENT, INVALID_JSON, line=line, column=column)


async def read_body(request: web.Request) -> bytearray:
    """The request body in one buffer, at most MAX_BODY_BYTES (aiohttp's own read() holds
    it twice at the end, as a bytearray and as bytes). A body announced larger than the
    limit is refused unread."""
    too_large = reject(grpc.StatusCode.INVALID_ARGUMENT, BODY_TOO_LARGE, max=MAX_BODY_BYTES)
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    # Sized once from Content-Length: a buffer grown step by step is copied when the
    # allocator moves it (from the heap to its own mapping), twice the body for a moment.
    body, filled = bytearray(request.content_length or 0), 0
    try:
        while chunk := await request.content.readany():
            body[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            if filled > MAX_BODY_BYTES:
                raise too_large
    except web.RequestPayloadError:  # broken chunking or compression
        raise reject(grpc.StatusCode.INVALID_ARGUMENT, UNREADABLE_BODY) from None
    del body[filled:]
    return body


def _loads(text: bytes | bytearray) -> Any:
    return json.loads(text, parse_int=_bounded_int)


class NumberTooLong(ValueError):
    """A JSON integer with more digits than any field can hold."""


def _bounded_int(text: str) -> int:
    """JSON integers as Python ints, refusing before conversion those no 64-bit field can
    hold (Python would convert up to 4,300 digits, slowly, then raise)."""
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise NumberTooLong(text[:20])
    return int(text)


def _refuse_what_no_field_takes(document: Any) -> None:
    """Raises CallFailed for a document nested deeper than MAX_JSON_DEPTH (no message of
    the contract is) or holding U+0000 in a string (no field takes it, and PostgreSQL
    cannot store it). Iterative: depth costs no stack."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise reject(grpc.StatusCode.INVALID_ARGUMENT, NUL_CHARACTER)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise reject(grpc.StatusCode.INVALID_ARGUMENT, JSON_TOO_DEEP)
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
            if isinstance(value, dict):
                pending.extend((key, depth) for key in value)


def build_app(
    caller: Caller,
    surfaces: Sequence[Surface],
    files: Iterable[FileDescriptor],
    *,
    extra_routes: Iterable[web.RouteDef] = (),
    trusted_proxies: Iterable[Network] = (),
    limits: HttpLimits = DEFAULT_LIMITS,
    measured: bool = False,
) -> web.Application:
    """The gateway app: `extra_routes` (the process's own, such as /healthz and /readyz)
    and the object routes (uploads, downloads, media; streamed) first, then every
    annotated RPC route through one dispatcher. X-Forwarded-* headers count only from
    `trusted_proxies`; `measured` keeps request metrics (gateway.metrics). Serve it with
    `gateway.protocol.GatewayRunner`, which applies `limits` before a route runs."""
    routes = discover_routes(files)
    bodies = LargeBodies(limits.large_bodies, MAX_BODY_BYTES)
    gateway = Gateway(caller, surfaces, routes, bodies)
    trusted = list(trusted_proxies)
    middlewares = [*http_middleware(), *([forwarded_middleware(trusted)] if trusted else [])]
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=middlewares,
        handler_args=handler_args(limits, gateway.surface_for_path),
    )
    app.on_response_prepare.append(echo_request_id)
    measure = HttpMeasure(lambda path: gateway.surface_for_path(path).name) if measured else None
    definitions = [*extra_routes, *StorageSurface(caller, bodies).routes()]
    if measure:
        definitions = [measure.route_def(definition) for definition in definitions]
    app.router.add_routes(definitions)
    for route in routes:
        surface = gateway.surface_for_route(route)
        handler = gateway.handler(route)
        if measure:
            # One template for every path it answers on (Close's with and without "/").
            handler = measure.wrap(handler, surface=surface.name, template=route.path.template)
        for path in surface.router_paths(route):
            app.router.add_route(route.http_method, path, handler)
    # Every path, newlines (%0A) included: none gets aiohttp's plain-text 404.
    unrouted = measure.wrap_unmatched(gateway.unrouted) if measure else gateway.unrouted
    app.router.add_route("*", r"/{tail:[\s\S]*}", unrouted)

    async def close_caller(app: web.Application) -> None:
        await caller.close()

    app.on_cleanup.append(close_caller)
    return app
