"""The services this server offers, bound once and used by both call paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from c2c.v1 import contact_assets_pb2_grpc
from crm.v1 import crm_pb2_grpc
from files.v1 import files_pb2_grpc
from google.longrunning import operations_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from server.c2c.servicer import ContactAssetsService
from server.config import Settings
from server.crm.background import BackgroundRunner
from server.crm.operations import OperationsService
from server.crm.servicer import CrmService
from server.files.servicer import FilesService
from server.files.storage import direct_uploads, object_storage, sign_upload_form, upload_target
from server.links import PublicLinks
from server.rate_limits import RateLimits
from server.tracing import traced_storage
from server.workers import BulkWorkers


@dataclass(frozen=True)
class Binding:
    """A servicer and the generated function that registers it."""

    register: Callable[[Any, Any], None]
    servicer: Any


def default_bindings(
    settings: Settings,
    links: PublicLinks,
    runner: BackgroundRunner,
    bulk: BulkWorkers | None = None,
    limits: RateLimits | None = None,
) -> list[Binding]:
    """Every service; bulk jobs run in `bulk`'s worker processes, or without it on this
    process's database threads."""
    stored = object_storage(settings)
    buckets = traced_storage(stored)
    return [
        Binding(
            contact_assets_pb2_grpc.add_ContactAssetsServicer_to_server,
            ContactAssetsService(buckets, links),
        ),
        Binding(
            files_pb2_grpc.add_FilesServicer_to_server,
            FilesService(
                links,
                sign_upload_form,
                buckets,
                upload_target(buckets),
                direct_uploads(settings, stored),
            ),
        ),
        Binding(
            crm_pb2_grpc.add_CrmServicer_to_server, CrmService(buckets, runner, bulk, limits, links)
        ),
        Binding(
            registrar(operations_pb2.DESCRIPTOR.services_by_name["Operations"]),
            OperationsService(),
        ),
    ]


def registrar(service: ServiceDescriptor) -> Callable[[Any, Any], None]:
    """What generated `add_XServicer_to_server` functions do, from a descriptor: for
    services whose shipped stubs predate registered method handlers (googleapis')."""

    def register(servicer: Any, server: Any) -> None:
        handlers = {
            method.name: grpc.unary_unary_rpc_method_handler(
                getattr(servicer, method.name),
                request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )
            for method in service.methods
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service.full_name, handlers),)
        )
        server.add_registered_method_handlers(service.full_name, handlers)

    return register


class _HandlerRecorder:
    """Stands in for a grpc server to capture the handlers generated code registers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """Generic handlers duplicate the registered ones below."""

    def add_registered_method_handlers(
        self, service: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in method_handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


def method_handlers(bindings: list[Binding]) -> dict[str, grpc.RpcMethodHandler]:
    """Full method name → handler, exactly as the gRPC server would dispatch them."""
    recorder = _HandlerRecorder()
    for binding in bindings:
        binding.register(binding.servicer, recorder)
    return recorder.handlers
