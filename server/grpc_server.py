"""The grpc.aio server: our services behind the pipeline, plus health and reflection."""

from __future__ import annotations

import grpc
from google.longrunning import operations_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from gateway.contract import FILE_DESCRIPTORS, MAX_MESSAGE_BYTES
from server.bindings import Binding, method_handlers
from server.health import Readiness
from server.metrics import MetricsInterceptor
from server.pipeline import CallPipeline, PipelineInterceptor


async def build_grpc_server(
    pipeline: CallPipeline, bindings: list[Binding], readiness: Readiness, *, measured: bool
) -> grpc.aio.Server:
    """Health says SERVING while the process is ready (its database and storage answer)
    and NOT_SERVING while not, for the whole server and for each service. `measured`:
    every call is counted (server.metrics), outside the pipeline."""
    interceptors: list[grpc.aio.ServerInterceptor] = [PipelineInterceptor(pipeline)]
    if measured:
        interceptors.insert(0, MetricsInterceptor())
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Gateways keep idle connections alive with a ping every 20 s: allow it.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    names = [
        service.full_name
        for file in (*FILE_DESCRIPTORS, operations_pb2.DESCRIPTOR)
        for service in file.services_by_name.values()
    ]
    reflected = (
        *names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    every_service = [
        *bindings,
        Binding(health_pb2_grpc.add_HealthServicer_to_server, health_servicer),
        Binding(
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
            reflection.aio.ReflectionServicer(reflected),
        ),
    ]
    server.add_generic_rpc_handlers((MethodTable(method_handlers(every_service)),))

    async def report(ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.NOT_SERVING
        if ready:
            status = health_pb2.HealthCheckResponse.SERVING
        for name in ("", *names):
            await health_servicer.set(name, status)

    await report(readiness.ready)
    readiness.subscribe(report)
    return server


class MethodTable(grpc.GenericRpcHandler):
    """Every method's handler, found by its full name. One table rather than the
    registered method handlers generated code asks for: grpc.aio keeps a request pending
    per registered method and, for every call, waits on all of them at once
    (asyncio.wait over some 45 futures, each given a callback and relieved of it),
    about 15 % of the server's event loop per call (README, Benchmarks)."""

    def __init__(self, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers = handlers

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)
