"""voyzu CRM API: session cookies, PascalCase JSON, POST-only, ErrorMessage bodies.

Status mapping: 400 bad input, 401 no or bad session, 402 paid plan needed, 404 unknown
endpoint or verb, 540 a domain error, 541 a routing failure (backend unreachable or a
malformed reply), 500 only for the unanticipated.
"""

from __future__ import annotations

import grpc
from aiohttp import web
from google.rpc import status_pb2

from gateway.surfaces.base import (
    METHOD_NOT_ALLOWED,
    ROUTE_NOT_FOUND,
    Surface,
    json_response,
)
from gateway.transcode import JsonOptions, Route
from server.errors import error_info, status_code

SESSION_COOKIE = "voyzu_session_id"
SESSION_METADATA_KEY = "x-voyzu-session"

BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 402,
    grpc.StatusCode.NOT_FOUND: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 540,
    grpc.StatusCode.ALREADY_EXISTS: 540,
    grpc.StatusCode.ABORTED: 540,
    grpc.StatusCode.UNAVAILABLE: 541,
    grpc.StatusCode.DEADLINE_EXCEEDED: 541,
}
ROUTING_REASONS = {ROUTE_NOT_FOUND: 404, METHOD_NOT_ALLOWED: 404, "malformed_reply": 541}


class VoyzuSurface(Surface):
    name = "voyzu"
    services = frozenset({"crm.v1.Crm"})
    path_prefix = "/api/"
    json_options = JsonOptions(use_json_names=True, ignore_unknown_fields=True)

    def __init__(self, *, dev: bool = False) -> None:
        self._dev = dev

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        metadata = self.base_metadata(request)
        session = request.cookies.get(SESSION_COOKIE)
        if not session and self._dev:
            session = request.query.get("voyzu-session-id")
        if session:
            metadata.append((SESSION_METADATA_KEY, session))
        return metadata

    def render_error(self, request: web.Request, status: status_pb2.Status) -> web.StreamResponse:
        info = error_info(status)
        http = ROUTING_REASONS.get(info.reason if info else "") or BY_CODE.get(
            status_code(status), 500
        )
        message = status.message if http != 500 else "Something went wrong."
        return json_response({"ErrorMessage": message}, http)
