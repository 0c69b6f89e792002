"""Paths no surface claims: plain JSON errors, never an HTML page."""

from __future__ import annotations

from aiohttp import web
from google.rpc import status_pb2

from gateway.surfaces.base import Surface, json_response
from gateway.surfaces.http_status import http_status
from server.errors import error_info


class FallbackSurface(Surface):
    name = "fallback"

    def render_error(self, request: web.Request, status: status_pb2.Status) -> web.StreamResponse:
        info = error_info(status)
        return json_response(
            {"error": info.reason if info else "error", "message": status.message},
            http_status(status),
        )
