"""The baseline: a bare aiohttp handler answering the health JSON, nothing else."""

from __future__ import annotations

import sys

from aiohttp import web

from bench.bare import run_floor, serve_app


async def health(request: web.Request) -> web.Response:
    return web.json_response({"data": {"status": "ok"}})


async def main() -> None:
    app = web.Application()
    app.router.add_get("/api/c2c/health", health)
    await serve_app(app)


if __name__ == "__main__":
    run_floor(main())
    sys.exit(0)
