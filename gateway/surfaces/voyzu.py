"""voyzu CRM API: session cookies, PascalCase JSON, POST-only, ErrorMessage bodies,
`?async=true` calls polled through /api/request/get/{id}.

Status mapping: 400 bad input, 401 no or bad session, 402 paid plan needed, 404 unknown
endpoint or verb, 429 throttled (beyond voyzu's list: HTTP's own), 540 a domain error, 541 a routing failure (backend unreachable or a
malformed reply), 500 only for the unanticipated — and then without details.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import grpc
from aiohttp import web
from crm.v1 import crm_pb2
from google.api import httpbody_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from gateway.calls import Caller
from gateway.contract import RATE_LIMITED, SESSION_KEY, field_violations
from gateway.errors import (
    MALFORMED_REPLY,
    METHOD_NOT_ALLOWED,
    ROUTE_NOT_FOUND,
    UPLOADS_BUSY,
    StatusTable,
)
from gateway.json_options import JsonOptions, field_key
from gateway.json_writer import http_body, message_to_json, response_payload
from gateway.routes import Route, resolve
from gateway.surfaces.base import (
    ApiDescription,
    StreamedCall,
    Surface,
    header_text,
    json_response,
    request_host,
    serve_stream,
    statuses_of,
    transcode,
)

SESSION_COOKIE = "voyzu_session_id"
START_REQUEST = "/crm.v1.Crm/StartRequest"
GET_SPREADSHEET = "/crm.v1.Crm/GetSpreadsheet"
DOWNLOAD_SPREADSHEET = "/crm.v1.Crm/DownloadSpreadsheet"
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
        UPLOADS_BUSY: 503,  # not a routing failure: this gateway is busy, retry later
        # Not in voyzu's list of statuses, which has no "slow down": HTTP's own, with
        # Retry-After, and the usual ErrorMessage body.
        RATE_LIMITED: 429,
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


def error_message(status: status_pb2.Status, body_labels: frozenset[str]) -> str:
    """What went wrong, never internals: a 500 says only that something did. Fields are
    named as the client sent them: the request field a route's body fills (`input`) is
    the client's whole body, not a key of it, so `input.Page` reads `Page`."""
    if http_status(status) == 500:
        return UNANTICIPATED
    details = "; ".join(_detail(v, body_labels) for v in field_violations(status))
    return f"{status.message} {details}".strip() if details else status.message


def _detail(
    violation: error_details_pb2.BadRequest.FieldViolation, body_labels: frozenset[str]
) -> str:
    """One violation, its field path without the body field's label (the whole body
    itself, when wrong, is `body`)."""
    label, dot, rest = violation.field.partition(".")
    field = rest if dot and label in body_labels else violation.field
    field = "body" if field in body_labels else field
    return f"{field}: {violation.description}" if field else violation.description


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
    credential_check = (
        "/crm.v1.Crm/CheckCredentials",
        crm_pb2.CheckCredentialsRequest,
        crm_pb2.CheckCredentialsResponse,
    )
    description = DESCRIPTION

    def __init__(self, *, dev: bool = False) -> None:
        self._dev = dev
        self._routes: dict[str, Route] = {}
        self._body_labels: frozenset[str] = frozenset()

    def bind(self, routes: Sequence[Route], caller: Caller) -> None:
        labels = set()
        for route in routes:
            self._routes.setdefault(route.full_method, route)
            if route.service in self.services and route.body not in ("", "*"):
                target, leaf = resolve(route.request_type(), route.body)
                labels.add(field_key(target.DESCRIPTOR.fields_by_name[leaf], True))
        self._body_labels = frozenset(labels)

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
        if not _asynchronous(request) or not _background_allowed(route):
            return super().outgoing_call(request, route, message)
        packed = any_pb2.Any()
        packed.Pack(message)
        start = crm_pb2.StartRequestRequest(method=route.full_method, request=packed)
        return START_REQUEST, start, crm_pb2.StartRequestResponse

    async def call(
        self,
        caller: Caller,
        request: web.Request,
        route: Route,
        values: Mapping[str, str],
        metadata: Sequence[tuple[str, str]],
        body: Any,
    ) -> Message | web.StreamResponse:
        """Spreadsheets are downloaded in chunks (DownloadSpreadsheet), however big; a
        background request still runs GetSpreadsheet."""
        if route.full_method != GET_SPREADSHEET or _asynchronous(request):
            return await super().call(caller, request, route, values, metadata, body)
        message = transcode(route, values, request, body, self.json_options)
        assert isinstance(message, crm_pb2.GetSpreadsheetRequest)
        download = StreamedCall(
            DOWNLOAD_SPREADSHEET,
            crm_pb2.DownloadSpreadsheetRequest(id=message.id),
            crm_pb2.DownloadSpreadsheetResponse,
            lambda file: {"Content-Type": file.content_type},  # type: ignore[attr-defined]
        )
        return await serve_stream(caller, request, download, metadata, self.refusal)

    def render(self, request: web.Request, route: Route, message: Message) -> web.StreamResponse:
        if isinstance(message, crm_pb2.StartRequestResponse):
            return json_response(message_to_json(message, self.json_options))
        if isinstance(message, crm_pb2.GetRequestStatusResponse):
            return json_response(self._request_status(message))
        response = super().render(request, route, message)
        if isinstance(message, crm_pb2.AuthenticateResponse):
            self._set_session_cookie(request, response, message.auth)
        if isinstance(message, crm_pb2.SignOutResponse):
            response.del_cookie(SESSION_COOKIE, **_cookie_attributes(request))
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
            body = http_body(route, result)
            document["Result"] = (
                response_payload(route, result, self.json_options)
                if body is None
                else _body_as_json(body)  # type: ignore[arg-type]
            )
        if status.process_status == "FAILED":
            document["ErrorMessage"] = error_message(reply.error, self._body_labels)
            document["StatusCode"] = http_status(reply.error)
        return document

    def _set_session_cookie(
        self, request: web.Request, response: web.StreamResponse, auth: crm_pb2.Auth
    ) -> None:
        expires = datetime.fromisoformat(auth.expires_date.replace("Z", "+00:00"))
        response.set_cookie(
            SESSION_COOKIE,
            auth.session_id,
            expires=expires.strftime("%a, %d %b %Y %H:%M:%S GMT"),
            **_cookie_attributes(request),
        )

    def error_response(self, request: web.Request, status: status_pb2.Status) -> web.Response:
        return json_response(
            {"ErrorMessage": error_message(status, self._body_labels)}, http_status(status)
        )


def _cookie_attributes(request: web.Request) -> dict[str, Any]:
    """The session cookie's attributes, alike when set and when cleared: Secure except
    over plain HTTP on this machine."""
    plain_local = request.scheme == "http" and request_host(request) in LOCAL_HOSTS
    return {"path": "/", "httponly": True, "samesite": "Lax", "secure": not plain_local}


def _body_as_json(body: httpbody_pb2.HttpBody) -> str:
    """Raw bytes a method answers with, as a Result in JSON can hold them: text as the
    text the synchronous call's body decodes to, anything else as base64 of its bytes."""
    media_type, _, parameters = body.content_type.partition(";")
    media_type = media_type.strip().lower()
    charset = "utf-8"
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    textual = media_type.startswith("text/") or media_type.endswith(("json", "xml"))
    if textual:
        try:
            return body.data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return base64.b64encode(body.data).decode("ascii")


def _asynchronous(request: web.Request) -> bool:
    return request.query.get("async", "").lower() == "true"


def _background_allowed(route: Route) -> bool:
    """The contract's `crm.v1.background_allowed` method option."""
    return route.method.GetOptions().Extensions[crm_pb2.background_allowed]
