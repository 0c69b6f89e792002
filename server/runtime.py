"""Composition root: the store, the services and the ways to serve them."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import peewee
from aiohttp import web

from server.access import Authenticator, api_key_verifier
from server.auth import KeyVerifier
from server.config import Settings
from server.grpc_server import build_grpc_server
from server.inprocess import InProcessCaller
from server.links import PublicLinks
from server.pipeline import CallPipeline
from server.registry import Binding, default_bindings, method_handlers
from server.storage_http import StorageRoutes, object_store
from server.store.db import connect


@dataclass
class Runtime:
    """Everything one server process shares between its gRPC server and gateway."""

    settings: Settings
    db: peewee.Database
    pipeline: CallPipeline
    links: PublicLinks
    bindings: list[Binding] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        db = connect(settings)
        verifier = KeyVerifier()
        authenticator = Authenticator(
            {kind: api_key_verifier(verifier, kind) for kind in ("c2c", "close")}
        )
        links = PublicLinks(settings.public_url)
        return cls(
            settings, db, CallPipeline(authenticator), links, default_bindings(settings, links)
        )

    async def grpc_server(self) -> grpc.aio.Server:
        return await build_grpc_server(self.pipeline, self.bindings)

    def storage_routes(self) -> list[web.RouteDef]:
        """Embedded object storage (uploads and download URLs), served beside the gateway."""
        return StorageRoutes(object_store(self.settings)).routes()

    def in_process_caller(self) -> InProcessCaller:
        return InProcessCaller(self.pipeline, method_handlers(self.bindings))
