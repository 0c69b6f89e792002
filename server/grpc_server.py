"""The grpc.aio server: our services behind the pipeline, plus health and reflection."""

from __future__ import annotations

import grpc
from google.longrunning import operations_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.contract import FILE_DESCRIPTORS, MAX_MESSAGE_BYTES
from server.bindings import Binding
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
    for binding in bindings:
        binding.register(binding.servicer, server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [
        service.full_name
        for file in (*FILE_DESCRIPTORS, operations_pb2.DESCRIPTOR)
        for service in file.services_by_name.values()
    ]

    async def report(ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.NOT_SERVING
        if ready:
            status = health_pb2.HealthCheckResponse.SERVING
        for name in ("", *names):
            await health_servicer.set(name, status)

    await report(readiness.ready)
    readiness.subscribe(report)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return server
