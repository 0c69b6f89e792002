"""The baseline: a bare aiohttp handler answering the health JSON, nothing else."""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from bench.bare import run_floor


async def health(request: web.Request) -> web.Response:
    return web.json_response({"data": {"status": "ok"}})


async def main() -> None:
    app = web.Application()
    app.router.add_get("/api/c2c/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    run_floor(main())
    sys.exit(0)
