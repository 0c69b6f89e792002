"""C2C public API v1: X-Api-Version, tenant API keys, and the documented envelopes.

Errors are `{"error": code, "message": text}`; validation adds Laravel's `errors` map.
"""

from __future__ import annotations

import base64
import binascii

import grpc
from aiohttp import web
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway.json_options import JsonOptions
from gateway.json_writer import response_payload
from gateway.localisation import summary
from gateway.routes import Route
from gateway.surfaces.base import (
    BODY_TOO_LARGE,
    INVALID_JSON,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    ROUTE_NOT_FOUND,
    UNSUPPORTED_MEDIA_TYPE,
    Surface,
    first_violations,
    json_response,
    reject,
)
from server.errors import error_info, field_violations, status_code

SUPPORTED_VERSIONS = frozenset({"v1"})
#: Methods whose success is not a plain 200.
SUCCESS_STATUS = {"/c2c.v1.ContactAssets/AttachAssets": 201}


def decode_content(text: str) -> bytes:
    """File content: base64, optionally as a data URI (only what follows the last comma)."""
    if text.startswith("data:"):
        text = text.rsplit(",", 1)[-1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as error:
        raise ValueError("invalid base64") from error


# (HTTP status, error code) for each reason; anything else falls back on the gRPC code.
REASONS = {
    "missing_api_version": (400, "missing_api_version"),
    "unsupported_api_version": (400, "unsupported_api_version"),
    "invalid_api_key": (401, "invalid_api_key"),
    "contact_not_found": (422, "contact_not_found"),
    "store_failed": (500, "store_failed"),
    INVALID_JSON: (422, "validation_failed"),
    INVALID_REQUEST: (422, "validation_failed"),
    ROUTE_NOT_FOUND: (404, "not_found"),
    METHOD_NOT_ALLOWED: (405, "method_not_allowed"),
    UNSUPPORTED_MEDIA_TYPE: (415, "unsupported_media_type"),
    BODY_TOO_LARGE: (413, "payload_too_large"),
}
BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: (422, "validation_failed"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "invalid_api_key"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
}


class C2cSurface(Surface):
    name = "c2c"
    services = frozenset({"c2c.v1.ContactAssets"})
    path_prefix = "/api/c2c/"
    json_options = JsonOptions(
        use_json_names=False, ignore_unknown_fields=True, decode_bytes=decode_content
    )

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        version = request.headers.get("X-Api-Version", "").strip()
        if not version:
            raise reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                "missing_api_version",
                "The X-Api-Version header is required.",
            )
        if version.lower() not in SUPPORTED_VERSIONS:
            raise reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                "unsupported_api_version",
                f"API version {version!r} is not supported; use v1.",
            )
        metadata = self.base_metadata(request)
        key = presented_key(request)
        if key:
            metadata.append(("authorization", f"Bearer {key}"))
        if route.body and request.content_type != "application/json":
            raise reject(
                grpc.StatusCode.INVALID_ARGUMENT,
                UNSUPPORTED_MEDIA_TYPE,
                "The Content-Type header must be application/json.",
            )
        return metadata

    def render(self, request: web.Request, route: Route, message: Message) -> web.StreamResponse:
        return json_response(
            response_payload(route, message, self.json_options),
            SUCCESS_STATUS.get(route.full_method, 200),
        )

    def render_error(self, request: web.Request, status: status_pb2.Status) -> web.StreamResponse:
        info = error_info(status)
        http, code = REASONS.get(info.reason if info else "", (0, ""))
        if not http:
            http, code = BY_CODE.get(status_code(status), (500, "server_error"))
        document: dict[str, object] = {"error": code, "message": status.message}
        if code == "validation_failed":
            violations = field_violations(status)
            if info is not None and info.reason == INVALID_REQUEST:
                # The transcoder's findings, worded the way the service words its own.
                spanish = _prefers_spanish(request)
                violations = [(f, _phrase(f, text, spanish)) for f, text in violations]
                if violations:
                    texts = [text for _, text in violations]
                    document["message"] = summary(texts, "es" if spanish else "en")
            document["errors"] = first_violations(violations)
        return json_response(document, http)


#: Spanish for the transcoder's descriptions (gateway errors come before the tenant, and
#: so its locale, is known: only Accept-Language can choose).
_SPANISH = {
    "must be a string": "debe ser una cadena de texto",
    "must be an array": "debe ser un arreglo",
    "must be an object": "debe ser un objeto",
    "must be an integer": "debe ser un número entero",
    "must be a number": "debe ser un número",
    "must be a boolean": "debe ser verdadero o falso",
    "must be valid base64": "debe ser base64 válido",
    "is not a known field": "no es un campo conocido",
    "is out of range": "está fuera de rango",
}


def _phrase(field: str, description: str, spanish: bool) -> str:
    if spanish:
        description = _SPANISH.get(description, description)
        return f"El campo {field} {description}." if field else f"El cuerpo {description}."
    return f"The {field} field {description}." if field else f"The request body {description}."


def _prefers_spanish(request: web.Request) -> bool:
    first = request.headers.get("Accept-Language", "").split(",")[0].strip().lower()
    return first.startswith("es")


def presented_key(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer …` or `X-Api-Key`. Two different keys at once
    are refused (the contract says: exactly one), by presenting neither."""
    bearer = None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        bearer = token.strip()
    header = request.headers.get("X-Api-Key", "").strip() or None
    if bearer and header and bearer != header:
        return None
    return bearer or header
