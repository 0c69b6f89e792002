"""Liveness and readiness over HTTP, for load balancers and orchestrators: /healthz (the
process answers) and /readyz (what it needs answers too; 503 naming what does not)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

#: Each component the process needs and whether it answers. Names only: never an
#: address or an error text, which would tell an outsider about the inside.
Checks = Callable[[], Awaitable[Mapping[str, bool]]]

BACKEND_TIMEOUT = 2.0


def health_routes(checks: Checks) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        answers = await checks()
        ready = all(answers.values())
        return web.json_response(
            {
                "status": "ready" if ready else "unavailable",
                "checks": {name: "ok" if up else "down" for name, up in answers.items()},
            },
            status=200 if ready else 503,
        )

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


def backend_checks(channel: grpc.aio.Channel) -> Checks:
    """The gateway alone is ready when its gRPC backend says SERVING (which it does while
    its own database and storage answer)."""
    stub = health_pb2_grpc.HealthStub(channel)

    async def checks() -> Mapping[str, bool]:
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=BACKEND_TIMEOUT)
        except grpc.aio.AioRpcError:
            return {"backend": False}
        return {"backend": reply.status == health_pb2.HealthCheckResponse.SERVING}

    return checks
