"""The API reference the gateway serves: `/openapi.json` (every surface) and
`/openapi/{surface}.json`, built once from the contract by gateway.openapi."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from gateway.openapi import describe_all, dump
from gateway.surfaces.base import Surface


def routes(surfaces: Sequence[Surface]) -> list[web.RouteDef]:
    documents = {name: dump(document) for name, document in describe_all(surfaces).items()}

    async def combined(request: web.Request) -> web.Response:
        return web.Response(text=documents["all"], content_type="application/json")

    async def one(request: web.Request) -> web.Response:
        name = request.match_info["surface"]
        if name == "all" or name not in documents:
            raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json")
        return web.Response(text=documents[name], content_type="application/json")

    return [web.get("/openapi.json", combined), web.get("/openapi/{surface}.json", one)]
