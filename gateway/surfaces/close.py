"""Close-compatible API: HTTP Basic with the API key as user name, Close's error shapes.

The `closeio` client raises ValidationError from a 400 body with `errors` and
`field-errors`; every other failure is JSON with an `error` key.
"""

from __future__ import annotations

import base64
import binascii

import grpc
from aiohttp import web
from google.rpc import status_pb2

from gateway.json_options import JsonOptions
from gateway.routes import Route
from gateway.surfaces.base import Surface, first_violations, json_response
from gateway.surfaces.http_status import http_status
from server.errors import field_violations, status_code


class CloseSurface(Surface):
    name = "close"
    services = frozenset({"files.v1.Files"})
    path_prefix = "/api/v1/"
    json_options = JsonOptions(use_json_names=False, ignore_unknown_fields=False)

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        metadata = self.base_metadata(request)
        key = basic_user(request.headers.get("Authorization", ""))
        if key:
            metadata.append(("authorization", f"Bearer {key}"))
        return metadata

    def render_error(self, request: web.Request, status: status_pb2.Status) -> web.StreamResponse:
        if status_code(status) == grpc.StatusCode.INVALID_ARGUMENT:
            field_errors = {
                field: "; ".join(messages)
                for field, messages in first_violations(field_violations(status)).items()
            }
            errors = [] if field_errors else [status.message]
            return json_response({"errors": errors, "field-errors": field_errors}, 400)
        return json_response({"error": status.message}, http_status(status))


def basic_user(header: str) -> str | None:
    """The user name of an HTTP Basic credential (Close puts the API key there)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0]
    return user or None
