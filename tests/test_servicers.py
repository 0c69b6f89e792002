"""Servicers through grpcio-testing, and the call pipeline through the in-process caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import peewee
import pytest
from c2c.v1 import contact_assets_pb2
from google.protobuf.message import Message

from gateway.contract import CallFailed, error_info, field_violations, status_code
from server.authentication import Authenticator
from server.bindings import default_bindings, method_handlers
from server.c2c.servicer import ContactAssetsService
from server.config import Settings
from server.crm.background import BackgroundRunner
from server.errors import ApiError
from server.inprocess import InProcessCaller
from server.links import PublicLinks
from server.objects.local import LocalObjects
from server.pipeline import CallPipeline
from server.principal import Principal, current_principal
from server.runtime import Runtime
from tests.support.servicers import grpc_testing_server

HEALTH = contact_assets_pb2.DESCRIPTOR.services_by_name["ContactAssets"].methods_by_name["Health"]


def test_health_servicer_under_grpc_testing(tmp_path: Path) -> None:
    service = ContactAssetsService(LocalObjects(tmp_path), PublicLinks(None))
    server = grpc_testing_server(HEALTH.containing_service, service)
    rpc = server.invoke_unary_unary(HEALTH, (), contact_assets_pb2.HealthRequest(), None)
    response, _, code, _ = rpc.termination()
    assert code == grpc.StatusCode.OK
    assert response == contact_assets_pb2.HealthResponse(
        data=contact_assets_pb2.HealthStatus(status="ok")
    )


PRINCIPAL = Principal(1, "acme", "en", True, "c2c", "key_1")


async def _allow(method: str, metadata: object) -> Principal:
    return PRINCIPAL


def _caller(behavior) -> InProcessCaller:  # type: ignore[no-untyped-def]
    handler = grpc.unary_unary_rpc_method_handler(behavior)
    return InProcessCaller(CallPipeline(_allow), {"/t.v1.T/M": handler})


def _call(caller: InProcessCaller, method: str = "/t.v1.T/M") -> Message:
    return asyncio.run(
        caller.call(method, contact_assets_pb2.HealthRequest(), [], contact_assets_pb2.HealthStatus)
    )


def test_pipeline_passes_the_principal_and_returns_the_response() -> None:
    async def behavior(request: Message, context: object) -> Message:
        principal = current_principal.get()
        assert principal is not None
        return contact_assets_pb2.HealthStatus(status=principal.tenant_name)

    assert _call(_caller(behavior)) == contact_assets_pb2.HealthStatus(status="acme")


def test_api_errors_become_statuses_with_details() -> None:
    async def behavior(request: Message, context: object) -> Message:
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "validation_failed",
            "bad",
            violations=[("files.0.content", "must be valid base64")],
        )

    with pytest.raises(CallFailed) as caught:
        _call(_caller(behavior))
    status = caught.value.status
    assert status_code(status) == grpc.StatusCode.INVALID_ARGUMENT and status.message == "bad"
    assert error_info(status).reason == "validation_failed"
    assert [(v.field, v.description) for v in field_violations(status)] == [
        ("files.0.content", "must be valid base64")
    ]


def test_unexpected_errors_reveal_nothing() -> None:
    async def behavior(request: Message, context: object) -> Message:
        raise RuntimeError("SELECT secret FROM /var/lib/passwords")

    with pytest.raises(CallFailed) as caught:
        _call(_caller(behavior))
    assert status_code(caught.value.status) == grpc.StatusCode.INTERNAL
    assert caught.value.status.message == "internal error"


def test_unknown_and_unimplemented_methods(store: peewee.Database) -> None:
    handlers = method_handlers(
        default_bindings(Settings(), PublicLinks(None), BackgroundRunner(CallPipeline(_allow)))
    )
    assert "/c2c.v1.ContactAssets/Health" in handlers
    caller = InProcessCaller(CallPipeline(Authenticator({})), handlers)
    for method in ("/nope.v1.Nope/Nothing", "/files.v1.Files/Nothing"):
        with pytest.raises(CallFailed) as caught:
            _call(caller, method)
        assert status_code(caught.value.status) == grpc.StatusCode.UNIMPLEMENTED


def test_runtime_rejects_calls_without_credentials(database_url: str, tmp_path: Path) -> None:
    """The whole runtime, on each backend: it binds the models to its own database."""
    runtime = Runtime.start(Settings(data_dir=tmp_path, database_url=database_url))
    assert runtime.db.database in database_url
    with pytest.raises(CallFailed) as caught:
        asyncio.run(
            runtime.in_process_caller().call(
                "/c2c.v1.ContactAssets/Health",
                contact_assets_pb2.HealthRequest(),
                [],
                contact_assets_pb2.HealthResponse,
            )
        )
    assert error_info(caught.value.status).reason == "invalid_api_key"
    runtime.db.close()
