"""Composition root: the store, the services and the ways to serve them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
import peewee
from aiohttp import web

from gateway.health import health_routes
from gateway.metrics import metrics_routes
from server import executors, metrics
from server.api_keys import KeyVerifier
from server.authentication import ApiKeyCredential, Authenticator
from server.bindings import Binding, default_bindings, method_handlers
from server.config import Settings
from server.consistency import OrphanSweeper
from server.crm.background import BackgroundRunner
from server.crm.sessions import verify_session
from server.database.connection import connect
from server.files.storage import object_storage
from server.grpc_server import build_grpc_server
from server.health import Readiness
from server.inprocess import InProcessCaller
from server.links import PublicLinks
from server.pipeline import CallPipeline
from server.rate_limits import RateLimits
from server.tenant_hosts import tenant_hosts
from server.workers import BulkWorkers


@dataclass
class Runtime:
    """Everything one server process shares between its gRPC server and gateway."""

    settings: Settings
    db: peewee.Database
    pipeline: CallPipeline
    links: PublicLinks
    runner: BackgroundRunner
    readiness: Readiness
    bulk: BulkWorkers
    bindings: list[Binding] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        executors.configure(executors.PoolSizes(database=settings.db_pool_size))
        if settings.metrics:
            metrics.install()
        db = connect(settings)
        verifier = KeyVerifier(hosts=tenant_hosts)
        limits = RateLimits(settings)
        authenticator = Authenticator(
            {
                "c2c": ApiKeyCredential(verifier, "c2c", limits.before_lookup),
                "close": ApiKeyCredential(verifier, "close", limits.before_lookup),
                "session": limits.guarded(verify_session),
            }
        )
        pipeline = CallPipeline(authenticator, limits)
        links = PublicLinks(settings.public_url)
        runner = BackgroundRunner(
            pipeline, settings.background_limit, timedelta(seconds=settings.lease_seconds)
        )
        bulk = BulkWorkers(settings)
        bindings = default_bindings(settings, links, runner, bulk, limits)
        runner.handlers = method_handlers(bindings)
        readiness = Readiness(object_storage(settings))
        return cls(settings, db, pipeline, links, runner, readiness, bulk, bindings)

    async def grpc_server(self) -> grpc.aio.Server:
        """The gRPC server; this process takes its share of background requests with it."""
        self.runner.start()
        await self.readiness.probe()
        return await build_grpc_server(
            self.pipeline, self.bindings, self.readiness, measured=self.settings.metrics
        )

    async def drain(self) -> None:
        """Stop taking background requests; let running ones finish within the grace
        period (CRMGATE_DRAIN_SECONDS), then release them for other servers; stop the
        idle bulk workers."""
        await self.runner.drain(self.settings.drain_seconds)
        self.bulk.close()

    def start_sweeper(self) -> asyncio.Task[None]:
        """Sweep crash debris now and every ten minutes; cancel the task to stop it."""
        grace = timedelta(seconds=self.settings.orphan_grace_seconds)
        sweeper = OrphanSweeper(
            object_storage(self.settings), grace, direct_uploads=self.settings.direct_uploads
        )
        return asyncio.create_task(sweeper.run(), name="orphan-sweeper")

    def health_routes(self) -> list[web.RouteDef]:
        """/healthz and /readyz, reporting this process's database and storage."""

        async def checks() -> Mapping[str, bool]:
            return self.readiness.checks()

        return health_routes(checks)

    def metrics_routes(self) -> list[web.RouteDef]:
        """GET /metrics, with background requests counted at each scrape; none when
        metrics are off."""
        if not self.settings.metrics:
            return []
        return metrics_routes([metrics.refresh_background()])

    def in_process_caller(self) -> InProcessCaller:
        return InProcessCaller(self.pipeline, self.runner.handlers)
