"""C2C public API v1: X-Api-Version, tenant API keys, and the documented envelopes.

Errors are `{"error": code, "message": text}`; validation adds Laravel's `errors` map.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from typing import Any

import grpc
from aiohttp import hdrs, web
from c2c.v1 import contact_assets_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2
from multidict import istr

from gateway.calls import Caller
from gateway.contract import (
    AUTHORIZATION_KEY,
    CHUNK_BYTES,
    PUBLIC_MEDIA_PATH,
    RATE_LIMITED,
    CallFailed,
    error_info,
    field_violations,
)
from gateway.errors import (
    BODY_REFUSALS,
    BODY_TOO_LARGE,
    DEFAULT_STATUSES,
    GATEWAY_WORDED,
    INVALID_JSON,
    INVALID_REQUEST,
    JSON_TOO_DEEP,
    METHOD_NOT_ALLOWED,
    MISSING_API_VERSION,
    NUL_CHARACTER,
    NUMBER_TOO_LONG,
    ROUTE_NOT_FOUND,
    UNREADABLE_BODY,
    UNSUPPORTED_API_VERSION,
    UNSUPPORTED_MEDIA_TYPE,
    UPLOADS_BUSY,
    StatusTable,
    default_http_status,
    reject,
)
from gateway.json_body import Path as JsonPath
from gateway.json_body import RawText
from gateway.json_options import JsonOptions
from gateway.json_writer import response_payload
from gateway.localisation import choose_locale, field_message, summary, translate
from gateway.routes import Route
from gateway.surfaces.base import (
    ApiDescription,
    Surface,
    error_map,
    header_text,
    json_response,
    statuses_of,
    transcode,
)
from gateway.surfaces.storage import MEDIA_PATH_ITEM

SUPPORTED_VERSIONS = frozenset({"v1"})
X_API_VERSION = istr("X-Api-Version")
X_API_KEY = istr("X-Api-Key")
ATTACH_METHOD = "/c2c.v1.ContactAssets/AttachAssets"
#: The route's uploads go to the server as this stream (the same request, bytes chunked).
UPLOAD_METHOD = "/c2c.v1.ContactAssets/UploadAssets"
#: Methods whose success is not a plain 200.
SUCCESS_STATUS = {ATTACH_METHOD: 201}
LOCALE_METHOD = "/c2c.v1.ContactAssets/GetMessageLocale"


_SKIPPED_WHITESPACE = " \t\r\n"


def decode_content(text: str) -> bytes:
    """File content: base64, optionally as a data URI (only what follows the last comma).
    Space, tab, CR and LF are skipped (line-wrapped base64), the whitespace PHP's strict
    base64_decode skips; any other character outside the alphabet (U+00A0 too) is refused."""
    if text.startswith("data:"):
        text = text.rsplit(",", 1)[-1]
    for space in _SKIPPED_WHITESPACE:
        if space in text:
            text = text.replace(space, "")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError("invalid base64") from error


#: (HTTP status, error code) for each reason, then for each gRPC code; anything else gets
#: the shared default status and `server_error`.
STATUSES: StatusTable[tuple[int, str]] = StatusTable(
    by_reason={
        MISSING_API_VERSION: (400, "missing_api_version"),
        UNSUPPORTED_API_VERSION: (400, "unsupported_api_version"),
        "invalid_api_key": (401, "invalid_api_key"),
        "contact_not_found": (422, "contact_not_found"),
        "store_failed": (500, "store_failed"),
        INVALID_JSON: (422, "validation_failed"),
        JSON_TOO_DEEP: (422, "validation_failed"),
        NUMBER_TOO_LONG: (422, "validation_failed"),
        NUL_CHARACTER: (422, "validation_failed"),
        INVALID_REQUEST: (422, "validation_failed"),
        ROUTE_NOT_FOUND: (404, "not_found"),
        METHOD_NOT_ALLOWED: (405, "method_not_allowed"),
        UNSUPPORTED_MEDIA_TYPE: (415, "unsupported_media_type"),
        BODY_TOO_LARGE: (413, "payload_too_large"),
        UNREADABLE_BODY: (422, "validation_failed"),
        UPLOADS_BUSY: (503, "service_unavailable"),
        RATE_LIMITED: (429, "too_many_requests"),
    },
    by_code={
        grpc.StatusCode.INVALID_ARGUMENT: (422, "validation_failed"),
        grpc.StatusCode.UNAUTHENTICATED: (401, "invalid_api_key"),
        grpc.StatusCode.NOT_FOUND: (404, "not_found"),
        grpc.StatusCode.UNIMPLEMENTED: (501, "not_implemented"),
        grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
    },
)


#: The documented error envelope: `errors` (Laravel's map) comes with validation failures.
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "examples": ["validation_failed"]},
        "message": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}

DESCRIPTION = ApiDescription(
    title="C2C public API",
    version="v1",
    security_schemes={
        "c2cBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant's `c2c_` API key.",
        },
        "c2cApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    },
    security=("c2cBearer", "c2cApiKey"),
    error_statuses=statuses_of(STATUSES, DEFAULT_STATUSES),
    error_schemas={"default": ERROR_SCHEMA},
    headers=(
        {
            "name": "X-Api-Version",
            "in": "header",
            "required": True,
            "description": "The API version; only `v1` exists.",
            "schema": {"type": "string", "enum": sorted(SUPPORTED_VERSIONS)},
        },
    ),
    success_statuses=SUCCESS_STATUS,
    extra_paths={PUBLIC_MEDIA_PATH + "{uuid}/{name}": MEDIA_PATH_ITEM},
)


class C2cSurface(Surface):
    name = "c2c"
    services = frozenset({"c2c.v1.ContactAssets"})
    path_prefix = "/api/c2c/"
    json_options = JsonOptions(
        use_json_names=False, ignore_unknown_fields=True, decode_bytes=decode_content
    )
    credential_check = (
        LOCALE_METHOD,
        contact_assets_pb2.GetMessageLocaleRequest,
        contact_assets_pb2.GetMessageLocaleResponse,
    )
    description = DESCRIPTION

    def bind(self, routes: Sequence[Route], caller: Caller) -> None:
        self._caller = caller

    def keep_raw(self, route: Route, path: JsonPath) -> bool:
        """Files' contents stay in the body until they are streamed, decoded a chunk at a
        time."""
        return (
            route.full_method == ATTACH_METHOD
            and len(path) == 3
            and path[0] == "files"
            and isinstance(path[1], int)
            and path[2] == "content"
        )

    def call(
        self,
        caller: Caller,
        request: web.Request,
        route: Route,
        values: Mapping[str, str],
        metadata: Sequence[tuple[str, str]],
        body: Any,
    ) -> Awaitable[Message | web.StreamResponse]:
        if route.full_method != ATTACH_METHOD:
            return super().call(caller, request, route, values, metadata, body)
        return self._attach(caller, request, route, values, metadata, body)

    async def _attach(
        self,
        caller: Caller,
        request: web.Request,
        route: Route,
        values: Mapping[str, str],
        metadata: Sequence[tuple[str, str]],
        body: Any,
    ) -> Message:
        """An upload goes on as UploadAssets: the manifest, then each file's bytes decoded
        from the body chunk by chunk. Every check the transcoder makes comes first, so a
        request is refused exactly as a whole AttachAssetsRequest would be."""
        streamed = _measure_contents(body)
        message = transcode(route, values, request, body, self.json_options)
        del body
        assert isinstance(message, contact_assets_pb2.AttachAssetsRequest)
        messages = _upload_messages(message, streamed)
        del streamed
        stored = await caller.call_stream_in(
            UPLOAD_METHOD, messages, metadata, contact_assets_pb2.UploadAssetsResponse
        )
        return contact_assets_pb2.AttachAssetsResponse(data=stored.data)  # type: ignore[attr-defined]

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        version = request.headers.get(X_API_VERSION, "")
        if version not in SUPPORTED_VERSIONS:
            self._refuse_version(version)
        metadata = self._credentials(request)
        if route.body and request.content_type != "application/json":
            raise reject(grpc.StatusCode.INVALID_ARGUMENT, UNSUPPORTED_MEDIA_TYPE)
        return metadata

    @staticmethod
    def _refuse_version(header: str) -> None:
        """Raises for a version header that is missing or names no supported version; a
        supported one with spaces around it, or in capitals, passes."""
        version = header.strip()
        if not version:
            raise reject(grpc.StatusCode.INVALID_ARGUMENT, MISSING_API_VERSION)
        if version.lower() not in SUPPORTED_VERSIONS:
            raise reject(grpc.StatusCode.INVALID_ARGUMENT, UNSUPPORTED_API_VERSION, version=version)

    def _credentials(self, request: web.Request) -> list[tuple[str, str]]:
        metadata = self.base_metadata(request)
        key = presented_key(request)
        if key:
            metadata.append((AUTHORIZATION_KEY, f"Bearer {key}"))
        return metadata

    def render(self, request: web.Request, route: Route, message: Message) -> web.StreamResponse:
        return json_response(
            response_payload(route, message, self.json_options),
            SUCCESS_STATUS.get(route.full_method, 200),
        )

    async def render_error(
        self, request: web.Request, status: status_pb2.Status
    ) -> web.StreamResponse:
        info = error_info(status)
        if info is None or info.reason not in GATEWAY_WORDED:
            return self.error_response(request, status)  # the service worded it already
        try:
            locale = await self._locale(request)
        except CallFailed as failure:
            if info.reason in BODY_REFUSALS:
                return await self.render_error(request, failure.status)
            locale = choose_locale("en", True, request.headers.get("Accept-Language", ""))
        violations = [
            (v.field, field_message(v.field, v.description, locale))
            for v in field_violations(status)
        ]
        if violations:
            message = summary([text for _, text in violations], locale)
        else:
            message = translate(info.reason, locale, **dict(info.metadata))
        return _envelope(status, message, violations)

    def error_response(self, request: web.Request, status: status_pb2.Status) -> web.Response:
        violations = [(v.field, v.description) for v in field_violations(status)]
        return _envelope(status, status.message, violations)

    async def _locale(self, request: web.Request) -> str:
        """The caller's message language, as the service decides it for the tenant of the
        presented key; raises CallFailed when there is no valid key."""
        reply = await self._caller.call(
            LOCALE_METHOD,
            contact_assets_pb2.GetMessageLocaleRequest(),
            self._credentials(request),
            contact_assets_pb2.GetMessageLocaleResponse,
        )
        return reply.locale  # type: ignore[attr-defined]


def _measure_contents(body: Any) -> dict[int, tuple[RawText, int]]:
    """Each file content left in the body (by file index), with its decoded size. The
    body keeps a stand-in the transcoder reads as it would the content: empty, or not
    base64 when the content is not."""
    files = body.get("files") if isinstance(body, dict) else None
    streamed: dict[int, tuple[RawText, int]] = {}
    for index, upload in enumerate(files if isinstance(files, list) else ()):
        content = upload.get("content") if isinstance(upload, dict) else None
        if not isinstance(content, RawText):
            continue
        try:
            size = sum(len(chunk) for chunk in content.base64_chunks(CHUNK_BYTES))
        except ValueError:
            upload["content"] = "!"
            continue
        upload["content"] = ""
        streamed[index] = (content, size)
    return streamed


async def _upload_messages(
    request: contact_assets_pb2.AttachAssetsRequest, streamed: dict[int, tuple[RawText, int]]
) -> AsyncIterator[contact_assets_pb2.UploadAssetsRequest]:
    """UploadAssets' messages for the request; each file's text is let go once sent."""
    files = [
        contact_assets_pb2.AssetDescription(
            filename=upload.filename,
            mime_type=upload.mime_type,
            size=streamed[index][1] if index in streamed else len(upload.content),
            alt=upload.alt,
            description=upload.description,
        )
        for index, upload in enumerate(request.files)
    ]
    yield contact_assets_pb2.UploadAssetsRequest(
        manifest=contact_assets_pb2.AssetsManifest(email=request.email, files=files)
    )
    for index, upload in enumerate(request.files):
        chunks: Iterable[bytes]
        if index in streamed:
            chunks = streamed.pop(index)[0].base64_chunks(CHUNK_BYTES)
        else:
            chunks = (
                upload.content[start : start + CHUNK_BYTES]
                for start in range(0, len(upload.content), CHUNK_BYTES)
            )
        for chunk in chunks:
            if chunk:
                yield contact_assets_pb2.UploadAssetsRequest(chunk=chunk)
        del chunks


def _envelope(
    status: status_pb2.Status, message: str, violations: list[tuple[str, str]]
) -> web.Response:
    """The documented envelope: `error` and `message`, and Laravel's `errors` map for
    validation failures."""
    http, code = STATUSES.lookup(status) or (default_http_status(status), "server_error")
    document: dict[str, object] = {"error": code, "message": message}
    if code == "validation_failed":
        document["errors"] = error_map(violations)
    return json_response(document, http)


def presented_key(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer …` or `X-Api-Key`. Two different keys at once
    are refused (the contract says: exactly one), by presenting neither."""
    headers = request.headers
    bearer = None
    scheme, _, token = header_text(headers.get(hdrs.AUTHORIZATION)).partition(" ")
    if scheme.lower() == "bearer":
        bearer = token.strip() or None
    header = header_text(headers.get(X_API_KEY)).strip() or None
    if bearer and header and bearer != header:
        return None
    return bearer or header
