"""c2c.v1.ContactAssets: the C2C public API."""

from __future__ import annotations

import grpc
from c2c.v1 import contact_assets_pb2, contact_assets_pb2_grpc


class ContactAssetsService(contact_assets_pb2_grpc.ContactAssetsServicer):
    async def Health(
        self, request: contact_assets_pb2.HealthRequest, context: grpc.aio.ServicerContext
    ) -> contact_assets_pb2.HealthResponse:
        # Reaching here means the pipeline accepted the caller's key for this host.
        return contact_assets_pb2.HealthResponse(data=contact_assets_pb2.HealthStatus(status="ok"))
