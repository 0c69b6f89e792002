"""Background requests: one process runs at most its limit at once; the rest wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import peewee
from google.protobuf import any_pb2, empty_pb2

from server import admin
from server.crm.background import BackgroundRunner
from server.crm.requests import enqueue
from server.crm.sessions import principal_for_user
from server.database.models import BackgroundRequest

METHOD = "/crm.v1.Crm/SearchContacts"
LIMIT = 2


class HeldPipeline:
    """Stands in for the call pipeline: counts the requests running at once and holds
    each until `go` is set."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.go = asyncio.Event()

    async def run(self, *args: Any, **options: Any) -> empty_pb2.Empty:
        self.running += 1
        self.most = max(self.most, self.running)
        await self.go.wait()
        self.running -= 1
        return empty_pb2.Empty()


def test_background_requests_run_under_a_limit(store: peewee.Database) -> None:
    admin.create_tenant("acme", [], "en")
    user = admin.create_user("acme", "ada@acme.example", "long enough", None)
    principal = principal_for_user(user)
    request_ids = [enqueue(principal, METHOD, any_pb2.Any()) for _ in range(6)]

    def count(status: str) -> int:
        return BackgroundRequest.select().where(BackgroundRequest.status == status).count()

    async def until(condition: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + 30
        while not await condition():
            assert time.monotonic() < deadline, "background requests stuck"
            await asyncio.sleep(0.01)

    async def run_all() -> tuple[int, int, int]:
        pipeline = HeldPipeline()
        runner = BackgroundRunner(pipeline, LIMIT)  # type: ignore[arg-type]
        runner.handlers = {
            METHOD: grpc.unary_unary_rpc_method_handler(
                lambda request, context: None, request_deserializer=empty_pb2.Empty.FromString
            )
        }
        runner.start()

        async def full() -> bool:
            return pipeline.running == LIMIT

        await until(full)
        held = (await asyncio.to_thread(count, "PROCESSING"), pipeline.running)
        pipeline.go.set()

        async def done() -> bool:
            return await asyncio.to_thread(count, "PROCESSED") == len(request_ids)

        await until(done)
        await runner.drain(0)
        return (*held, pipeline.most)

    # While LIMIT run, the others have not even been claimed; all finish in the end.
    assert asyncio.run(run_all()) == (LIMIT, LIMIT, LIMIT)
