"""Background requests: one process runs at most its limit at once; the rest wait."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import peewee
import psycopg2
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


class HeldTable:
    """Another connection holding the write lock on the background requests' table, so a
    claim waits for it (SQLite's one writer; PostgreSQL's EXCLUSIVE table lock)."""

    def __init__(self, database_url: str) -> None:
        if database_url.startswith("sqlite"):
            self._connection: Any = sqlite3.connect(
                database_url.removeprefix("sqlite:///"), check_same_thread=False
            )
            self._connection.execute("BEGIN IMMEDIATE")
        else:
            self._connection = psycopg2.connect(database_url)
            self._connection.cursor().execute("LOCK TABLE background_request IN EXCLUSIVE MODE")

    def release(self) -> None:
        self._connection.commit()
        self._connection.close()


def test_a_claim_in_flight_when_draining_starts_is_never_left_processing(
    store: peewee.Database, database_url: str
) -> None:
    admin.create_tenant("acme", [], "en")
    user = admin.create_user("acme", "ada@acme.example", "long enough", None)
    request_id = enqueue(principal_for_user(user), METHOD, any_pb2.Any())
    held = HeldTable(database_url)

    async def stop_while_claiming() -> None:
        pipeline = HeldPipeline()
        pipeline.go.set()
        runner = BackgroundRunner(pipeline, LIMIT)  # type: ignore[arg-type]
        runner.handlers = {
            METHOD: grpc.unary_unary_rpc_method_handler(
                lambda request, context: None, request_deserializer=empty_pb2.Empty.FromString
            )
        }
        runner.start()
        await asyncio.sleep(0)  # one turn of the loop: the poll's claim waits on the lock
        draining = asyncio.create_task(runner.drain(0))
        await asyncio.sleep(0)  # the drain has begun
        await asyncio.to_thread(held.release)
        await draining

    asyncio.run(stop_while_claiming())
    # The claim went through (it counts an attempt), and the stopped runner either ran
    # the request or handed it back: it is not PROCESSING under a server that stopped.
    deadline = time.monotonic() + 30
    while (row := BackgroundRequest.get(BackgroundRequest.request_id == request_id)).attempts < 1:
        assert time.monotonic() < deadline, "the claim never went through"
    assert row.status in ("PENDING", "PROCESSED"), row.status
