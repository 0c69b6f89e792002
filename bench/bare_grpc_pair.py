"""The split-mode floor: a bare aiohttp handler that makes one unary grpc.aio call (the
C2C contract's Health) to a bare grpc.aio server in a second process, and answers its
JSON; nothing else. What `gateway` → `server` costs at best on these libraries: no keys,
logs, metrics or envelopes. `python -m bench.bare_grpc_pair [asyncio]` prints the URL of
the HTTP side; the gRPC server runs as its child (`--grpc-server`), stopped with it."""

from __future__ import annotations

import subprocess
import sys

import grpc
from aiohttp import web

from bench.bare import run_floor, serve_app
from generated.c2c.v1 import contact_assets_pb2 as pb
from generated.c2c.v1 import contact_assets_pb2_grpc as pb_grpc


class Health(pb_grpc.ContactAssetsServicer):
    async def Health(self, request: pb.HealthRequest, context: object) -> pb.HealthResponse:
        return pb.HealthResponse(data=pb.HealthStatus(status="ok"))


async def grpc_server() -> None:
    server = grpc.aio.server()
    pb_grpc.add_ContactAssetsServicer_to_server(Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def http_side(port: str) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = pb_grpc.ContactAssetsStub(channel).Health

    async def health(request: web.Request) -> web.Response:
        answer = await call(pb.HealthRequest())
        return web.json_response({"data": {"status": answer.data.status}})

    app = web.Application()
    app.router.add_get("/api/c2c/health", health)
    await serve_app(app)


def main() -> None:
    if "--grpc-server" in sys.argv:
        run_floor(grpc_server())
        return
    loop = sys.argv[1:2]
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_grpc_pair", *loop, "--grpc-server"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        run_floor(http_side(child.stdout.readline().strip()))
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    main()
