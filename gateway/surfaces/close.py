"""Close-compatible API: HTTP Basic with the API key as user name, Close's error shapes.

The `closeio` client raises ValidationError from a 400 body with `errors` and
`field-errors`; every other failure is JSON with an `error` key.
"""

from __future__ import annotations

import grpc
from aiohttp import BasicAuth, web
from files.v1 import files_pb2
from google.rpc import status_pb2

from gateway.contract import AUTHORIZATION_KEY, DOWNLOAD_PATH, STORAGE_PATH, field_violations
from gateway.errors import DEFAULT_STATUSES, UPLOADS_BUSY, StatusTable, default_http_status
from gateway.json_options import JsonOptions
from gateway.routes import Route
from gateway.surfaces.base import (
    ApiDescription,
    Surface,
    error_map,
    header_text,
    json_response,
    statuses_of,
)
from gateway.surfaces.storage import DOWNLOAD_PATH_ITEM, UPLOAD_PATH_ITEM

#: Close answers bad input with 400 and its validation envelope.
STATUSES: StatusTable[int] = StatusTable(
    by_reason={UPLOADS_BUSY: 503}, by_code={grpc.StatusCode.INVALID_ARGUMENT: 400}
)


DESCRIPTION = ApiDescription(
    title="Close-compatible Files API",
    version="v1",
    security_schemes={
        "closeBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "The `api_` key as the user name, an empty password.",
        }
    },
    security=("closeBasic",),
    error_statuses=statuses_of(STATUSES, DEFAULT_STATUSES),
    error_schemas={
        400: {
            "type": "object",
            "required": ["errors", "field-errors"],
            "properties": {
                "errors": {"type": "array", "items": {"type": "string"}},
                "field-errors": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "default": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
    },
    extra_paths={
        STORAGE_PATH + "{bucket}": UPLOAD_PATH_ITEM,
        DOWNLOAD_PATH + "{token}/{name}": DOWNLOAD_PATH_ITEM,
    },
)


class CloseSurface(Surface):
    name = "close"
    services = frozenset({"files.v1.Files"})
    path_prefix = "/api/v1/"
    json_options = JsonOptions(use_json_names=False, ignore_unknown_fields=False)
    credential_check = (
        "/files.v1.Files/CheckCredentials",
        files_pb2.CheckCredentialsRequest,
        files_pb2.CheckCredentialsResponse,
    )
    description = DESCRIPTION

    def router_paths(self, route: Route) -> list[str]:
        """Close answers each route with and without its trailing slash."""
        path = route.path.router_path()
        return [path, path.removesuffix("/") if path.endswith("/") else path + "/"]

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        metadata = self.base_metadata(request)
        key = basic_user(header_text(request.headers.get("Authorization")))
        if key:
            metadata.append((AUTHORIZATION_KEY, f"Bearer {key}"))
        return metadata

    def error_response(self, request: web.Request, status: status_pb2.Status) -> web.Response:
        http = STATUSES.lookup(status) or default_http_status(status)
        if http != 400:
            return json_response({"error": status.message}, http)
        violations = [(v.field, v.description) for v in field_violations(status)]
        field_errors = {field: "; ".join(texts) for field, texts in error_map(violations).items()}
        errors = [] if field_errors else [status.message]
        return json_response({"errors": errors, "field-errors": field_errors}, 400)


def basic_user(header: str) -> str | None:
    """The user name of an HTTP Basic credential (Close puts the API key there)."""
    try:
        user = BasicAuth.decode(header, encoding="utf-8").login
    except ValueError:
        return None
    return header_text(user) or None
