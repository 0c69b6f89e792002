"""The aiohttp application: every route comes from the annotations in the descriptors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.descriptor import FileDescriptor

from gateway.calls import Caller
from gateway.json_reader import TranscodeError, build_request
from gateway.routes import Route, discover_routes
from gateway.routing import Router
from gateway.surfaces.base import (
    BODY_TOO_LARGE,
    INVALID_JSON,
    INVALID_REQUEST,
    Surface,
    reject,
)
from gateway.surfaces.fallback import FallbackSurface
from server.config import MAX_MESSAGE_BYTES
from server.errors import CallFailed, build_status

#: Base64 grows bytes by a third; the largest documented JSON body fits in this.
MAX_BODY_BYTES = MAX_MESSAGE_BYTES * 4 // 3 + 1024 * 1024


class Gateway:
    """Dispatches HTTP requests to service methods through a Caller."""

    def __init__(self, caller: Caller, surfaces: Sequence[Surface], routes: Sequence[Route]):
        self._caller = caller
        self._router = Router(routes)
        self._owners = {service: surface for surface in surfaces for service in surface.services}
        # Longest prefix first, so /api/c2c/ wins over /api/.
        self._by_prefix = sorted(surfaces, key=lambda s: len(s.path_prefix), reverse=True)
        self._fallback = FallbackSurface()
        for surface in surfaces:
            surface.bind(routes)

    def surface_for_path(self, path: str) -> Surface:
        for surface in self._by_prefix:
            if path.startswith(surface.path_prefix):
                return surface
        return self._fallback

    def handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler of one annotated route."""
        surface = self._owners.get(route.service) or self.surface_for_path(route.path.template)

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                values = route.path.field_values(request.match_info)
                return await self.dispatch(request, route, surface, values)
            except CallFailed as failure:
                return surface.render_error(request, failure.status)

        return handle

    async def unrouted(self, request: web.Request) -> web.StreamResponse:
        """Requests no route took: tell 'no such path' from 'wrong verb', in the format of
        the surface that owns the path."""
        surface = self.surface_for_path(request.path)
        try:
            route, values = self._router.match(request.method, request.rel_url.raw_path)
            # HEAD on a GET route lands here (aiohttp routes GET exactly).
            return await self.dispatch(
                request, route, self._owners.get(route.service, surface), values
            )
        except CallFailed as failure:
            return surface.render_error(request, failure.status)

    async def dispatch(
        self, request: web.Request, route: Route, surface: Surface, values: dict[str, str]
    ) -> web.StreamResponse:
        metadata = surface.call_metadata(request, route)
        body = await read_json(request) if route.body else None
        try:
            message = build_request(
                route, values, request.query.items(), body, surface.json_options
            )
        except TranscodeError as error:
            raise CallFailed(
                build_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "The given data was invalid.",
                    INVALID_REQUEST,
                    [(v.field, v.message) for v in error.violations],
                )
            ) from None
        del body
        method, outgoing, response_type = surface.outgoing_call(request, route, message)
        response = await self._caller.call(method, outgoing, metadata, response_type)
        return surface.render(request, route, response)


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; an empty body reads as {}."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            BODY_TOO_LARGE,
            f"The request body is larger than {MAX_BODY_BYTES} bytes.",
        ) from None
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise reject(
            grpc.StatusCode.INVALID_ARGUMENT, INVALID_JSON, f"The body is not valid JSON: {error}"
        ) from None


def build_app(
    caller: Caller,
    surfaces: Sequence[Surface],
    files: Iterable[FileDescriptor],
    *,
    extra_routes: Iterable[web.RouteDef] = (),
) -> web.Application:
    """The gateway app: `extra_routes` (non-RPC endpoints such as object storage) first,
    then every annotated RPC route through one dispatcher."""
    routes = discover_routes(files)
    gateway = Gateway(caller, surfaces, routes)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_routes(list(extra_routes))
    for route in routes:
        app.router.add_route(route.http_method, route.path.router_path(), gateway.handler(route))
    app.router.add_route("*", "/{tail:.*}", gateway.unrouted)

    async def close_caller(app: web.Application) -> None:
        await caller.close()

    app.on_cleanup.append(close_caller)
    return app
