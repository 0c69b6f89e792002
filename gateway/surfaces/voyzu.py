"""voyzu CRM API: session cookies, PascalCase JSON, POST-only, ErrorMessage bodies,
`?async=true` calls polled through /api/request/get/{id}.

Status mapping: 400 bad input, 401 no or bad session, 402 paid plan needed, 404 unknown
endpoint or verb, 540 a domain error, 541 a routing failure (backend unreachable or a
malformed reply), 500 only for the unanticipated — and then without details.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import grpc
from aiohttp import web
from crm.v1 import crm_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway.calls import Caller
from gateway.contract import SESSION_KEY, field_violations
from gateway.errors import MALFORMED_REPLY, METHOD_NOT_ALLOWED, ROUTE_NOT_FOUND, StatusTable
from gateway.json_options import JsonOptions
from gateway.json_writer import message_to_json, response_payload
from gateway.routes import Route
from gateway.surfaces.base import (
    ApiDescription,
    Surface,
    header_text,
    json_response,
    request_host,
    statuses_of,
)

SESSION_COOKIE = "voyzu_session_id"
START_REQUEST = "/crm.v1.Crm/StartRequest"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

#: The voyzu statuses: 400 bad input (a malformed or unknown id included), 401 no or bad
#: session, 402 a paid plan needed, 404 an unknown endpoint, 540 a domain error, 541 a
#: routing failure; anything else is 500.
STATUSES: StatusTable[int] = StatusTable(
    by_reason={
        ROUTE_NOT_FOUND: 404,
        METHOD_NOT_ALLOWED: 404,
        "unknown_resource": 404,  # /api/{resource}/class of no resource: no such endpoint
        "payment_required": 402,
        MALFORMED_REPLY: 541,
    },
    by_code={
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.OUT_OF_RANGE: 400,
        grpc.StatusCode.NOT_FOUND: 400,
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.FAILED_PRECONDITION: 540,
        grpc.StatusCode.ALREADY_EXISTS: 540,
        grpc.StatusCode.ABORTED: 540,
        grpc.StatusCode.CANCELLED: 540,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 540,
        grpc.StatusCode.PERMISSION_DENIED: 540,
        grpc.StatusCode.UNAVAILABLE: 541,
        grpc.StatusCode.DEADLINE_EXCEEDED: 541,
        grpc.StatusCode.UNIMPLEMENTED: 541,
    },
)
UNANTICIPATED = "Something went wrong; please try again."


def http_status(status: status_pb2.Status) -> int:
    return STATUSES.lookup(status) or 500


def error_message(status: status_pb2.Status) -> str:
    """What went wrong, never internals: a 500 says only that something did."""
    if http_status(status) == 500:
        return UNANTICIPATED
    details = "; ".join(
        f"{v.field}: {v.description}" if v.field else v.description
        for v in field_violations(status)
    )
    return f"{status.message} {details}".strip() if details else status.message


DESCRIPTION = ApiDescription(
    title="voyzu CRM API",
    version="v1",
    security_schemes={
        "voyzuSession": {
            "type": "apiKey",
            "in": "cookie",
            "name": SESSION_COOKIE,
            "description": "The session POST /api/auth sets.",
        }
    },
    security=("voyzuSession",),
    error_statuses=statuses_of(STATUSES),
    error_schemas={
        "default": {
            "type": "object",
            "required": ["ErrorMessage"],
            "properties": {"ErrorMessage": {"type": "string"}},
        }
    },
    public_methods=frozenset({"/crm.v1.Crm/Authenticate", "/crm.v1.Crm/GetResourceClass"}),
    # voyzu clients send JSON under any content type (curl -d sends a form's).
    body_media_type="*/*",
    extra_properties={"crm.v1.RequestStatus": {"StatusCode": {"type": "integer"}}},
    async_methods=frozenset(
        f"/{method.containing_service.full_name}/{method.name}"
        for method in crm_pb2.DESCRIPTOR.services_by_name["Crm"].methods
        if method.GetOptions().Extensions[crm_pb2.background_allowed]
    ),
    async_response="crm.v1.StartRequestResponse",
)


class VoyzuSurface(Surface):
    name = "voyzu"
    services = frozenset({"crm.v1.Crm"})
    path_prefix = "/api/"
    json_options = JsonOptions(use_json_names=True, ignore_unknown_fields=True)
    description = DESCRIPTION

    def __init__(self, *, dev: bool = False) -> None:
        self._dev = dev
        self._routes: dict[str, Route] = {}

    def bind(self, routes: Sequence[Route], caller: Caller) -> None:
        for route in routes:
            self._routes.setdefault(route.full_method, route)

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        metadata = self.base_metadata(request)
        session = header_text(request.cookies.get(SESSION_COOKIE))
        if not session and self._dev:
            session = header_text(request.query.get("voyzu-session-id"))
        if session:
            metadata.append((SESSION_KEY, session))
        return metadata

    def outgoing_call(
        self, request: web.Request, route: Route, message: Message
    ) -> tuple[str, Message, type[Message]]:
        if request.query.get("async", "").lower() != "true" or not _background_allowed(route):
            return super().outgoing_call(request, route, message)
        packed = any_pb2.Any()
        packed.Pack(message)
        start = crm_pb2.StartRequestRequest(method=route.full_method, request=packed)
        return START_REQUEST, start, crm_pb2.StartRequestResponse

    def render(self, request: web.Request, route: Route, message: Message) -> web.StreamResponse:
        if isinstance(message, crm_pb2.StartRequestResponse):
            return json_response(message_to_json(message, self.json_options))
        if isinstance(message, crm_pb2.GetRequestStatusResponse):
            return json_response(self._request_status(message))
        response = super().render(request, route, message)
        if isinstance(message, crm_pb2.AuthenticateResponse):
            self._set_session_cookie(request, response, message.auth)
        return response

    def _request_status(self, reply: crm_pb2.GetRequestStatusResponse) -> dict[str, object]:
        """The RequestStatus, its Result rendered exactly as the synchronous call would."""
        status = reply.status
        document = message_to_json(status, self.json_options)
        document.pop("Result", None)
        for key in ("ErrorMessage", "StatusCode"):
            document.pop(key, None)
        route = self._routes.get(reply.method)
        if status.process_status == "PROCESSED" and route is not None:
            result = route.response_type()
            status.result.Unpack(result)
            document["Result"] = response_payload(route, result, self.json_options)
        if status.process_status == "FAILED":
            document["ErrorMessage"] = error_message(reply.error)
            document["StatusCode"] = http_status(reply.error)
        return document

    def _set_session_cookie(
        self, request: web.Request, response: web.StreamResponse, auth: crm_pb2.Auth
    ) -> None:
        plain_local = request.scheme == "http" and request_host(request) in LOCAL_HOSTS
        expires = datetime.fromisoformat(auth.expires_date.replace("Z", "+00:00"))
        response.set_cookie(
            SESSION_COOKIE,
            auth.session_id,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=not plain_local,
            expires=expires.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        )

    async def render_error(
        self, request: web.Request, status: status_pb2.Status
    ) -> web.StreamResponse:
        return json_response({"ErrorMessage": error_message(status)}, http_status(status))


def _background_allowed(route: Route) -> bool:
    """The contract's `crm.v1.background_allowed` method option."""
    return route.method.GetOptions().Extensions[crm_pb2.background_allowed]
