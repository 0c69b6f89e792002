"""Paths no surface claims: plain JSON errors, never an HTML page."""

from __future__ import annotations

from aiohttp import web
from google.rpc import status_pb2

from gateway.contract import error_reason
from gateway.errors import default_http_status
from gateway.surfaces.base import Surface, json_response


class FallbackSurface(Surface):
    name = "fallback"

    def error_response(self, request: web.Request, status: status_pb2.Status) -> web.Response:
        return json_response(
            {"error": error_reason(status) or "error", "message": status.message},
            default_http_status(status),
        )
