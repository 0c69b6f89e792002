"""The API reference the gateway serves: `/openapi.json` (every surface),
`/openapi/{surface}.json`, built once from the contract by gateway.openapi, and `/docs`,
one page rendering each surface's description with Swagger UI (assets from the
swagger-ui-py package, served here: no CDN, works offline), "try it" against this server."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

import swagger_ui
from aiohttp import web

from gateway.openapi import describe_all, dump
from gateway.surfaces.base import Surface

ASSETS = Path(swagger_ui.__file__).parent / "static"
DOCS_PATH = "/docs"


def routes(surfaces: Sequence[Surface]) -> list[web.RouteDef]:
    described = describe_all(surfaces)
    documents = {name: dump(document) for name, document in described.items()}
    page = docs_page(
        {name: doc["info"]["title"] for name, doc in described.items() if name != "all"}
    )

    async def combined(request: web.Request) -> web.Response:
        return web.Response(text=documents["all"], content_type="application/json")

    async def one(request: web.Request) -> web.Response:
        name = request.match_info["surface"]
        if name == "all" or name not in documents:
            raise web.HTTPNotFound(text='{"error": "not_found"}', content_type="application/json")
        return web.Response(text=documents[name], content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    return [
        web.get("/openapi.json", combined),
        web.get("/openapi/{surface}.json", one),
        web.get(DOCS_PATH, docs),
        web.static(DOCS_PATH + "/assets", ASSETS),
    ]


def docs_page(titles: dict[str, str]) -> str:
    """One page, a section per surface, each its own Swagger UI."""
    sections = "\n".join(
        f'<section><h2>{html.escape(title)}</h2><p><a href="/openapi/{name}.json">'
        f'/openapi/{name}.json</a></p><div id="surface-{name}"></div></section>'
        for name, title in titles.items()
    )
    names = json.dumps(list(titles))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crmgate API reference</title>
<link rel="stylesheet" href="{DOCS_PATH}/assets/swagger-ui.css">
<style>body {{ margin: 0 2em; font-family: sans-serif; }} h2 {{ margin-top: 2em; }}</style>
</head>
<body>
<h1>crmgate API reference</h1>
<p>Every surface, described from the contract (<a href="/openapi.json">/openapi.json</a>).
"Try it out" sends requests to this server: authorize with a key first (a voyzu session
comes from POST /api/auth, as a cookie).</p>
{sections}
<script src="{DOCS_PATH}/assets/swagger-ui-bundle.js"></script>
<script>
for (const name of {names}) {{
  SwaggerUIBundle({{url: "/openapi/" + name + ".json", dom_id: "#surface-" + name,
                    deepLinking: false, withCredentials: true}});
}}
</script>
</body>
</html>
"""
