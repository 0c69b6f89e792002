"""The S3/object surface: the paths every gateway serves itself, streaming the bytes
through the contract in chunks — `POST /storage/{bucket}` (the S3 browser-POST target of
Close uploads) to Files.UploadObject, `GET /files/download/{token}/{name}` from
Files.DownloadFile and `GET /media/{uuid}/{name}` from ContactAssets.GetMedia.

The gateway holds no secret and no database: it reads the multipart form (the fields,
then the file part) and the server verifies the signed policy. Failures are S3's XML
error documents on the upload target and `{"error", "message"}` JSON on downloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar
from xml.sax.saxutils import escape

import grpc
from aiohttp import BodyPartReader, ClientPayloadError, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from c2c.v1 import contact_assets_pb2
from files.v1 import files_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2
from yarl import URL

from gateway.calls import Caller
from gateway.contract import (
    CHUNK_BYTES,
    DOWNLOAD_PATH,
    HTTP_STATUS_KEY,
    PUBLIC_MEDIA_PATH,
    STORAGE_PATH,
    CallFailed,
    build_status,
    error_info,
    error_reason,
)
from gateway.errors import Refused, StatusTable, default_http_status
from gateway.limits import LargeBodies
from gateway.refusal_log import log_refusal
from gateway.request_ids import request_id
from gateway.surfaces.base import StreamedCall, Surface, json_response, serve_stream

log = logging.getLogger("crmgate.gateway")

UPLOAD_METHOD = "/files.v1.Files/UploadObject"
DOWNLOAD_METHOD = "/files.v1.Files/DownloadFile"
MEDIA_METHOD = "/c2c.v1.ContactAssets/GetMedia"
#: All fields before the file together (S3's limit is 20 KiB; policies can be long).
MAX_FIELD_BYTES = 64 * 1024
XML = "application/xml"
T = TypeVar("T")

#: HTTP statuses of failures that carry none of their own (S3's refusals carry theirs in
#: ErrorInfo.metadata[HTTP_STATUS_KEY]).
STATUSES: StatusTable[int] = StatusTable(
    by_reason={"expired": 410}, by_code={grpc.StatusCode.NOT_FOUND: 404}
)
#: S3's words for a failure that is not an S3 refusal (the backend's, the transport's).
INTERNAL_ERROR = ("InternalError", "We encountered an internal error. Please try again.")
S3_CODES = {503: ("ServiceUnavailable", "Please reduce your request rate.")}

SVG = "image/svg+xml"
#: C2C media may be anything a tenant uploaded (SVGs are stored as sent): a browser must
#: never sniff or run it.
MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "Cache-Control": "public, max-age=31536000, immutable",
}


# The object routes as OpenAPI path items (gateway.openapi puts the upload target and
# downloads in the Close description, media in C2C's): the request is the capability.
_XML_ERROR = {"application/xml": {"schema": {"type": "string"}}}
_JSON_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        }
    }
}
_BYTES = {"*/*": {"schema": {"type": "string", "format": "binary"}}}


def _path_parameters(*names: str) -> list[dict[str, object]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]


UPLOAD_PATH_ITEM = {
    "post": {
        "operationId": "UploadObjectForm",
        "tags": ["storage"],
        "summary": "S3 browser-POST upload target",
        "description": "The `upload.url` and `upload.fields` of POST /api/v1/files/upload/: "
        "every field as given, the file last. The signed policy is the credential; "
        "refusals are S3's XML error documents with S3's statuses.",
        "security": [],
        "parameters": _path_parameters("bucket"),
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["key", "policy", "file"],
                        "properties": {
                            "key": {"type": "string"},
                            "policy": {"type": "string"},
                            "x-amz-signature": {"type": "string"},
                            "success_action_status": {"type": "string"},
                            "file": {"type": "string", "format": "binary"},
                        },
                        "additionalProperties": {"type": "string"},
                    }
                }
            },
        },
        "responses": {
            "200": {"description": "Stored (`success_action_status=200`)."},
            "201": {"description": "Stored; S3's PostResponse.", "content": _XML_ERROR},
            "204": {"description": "Stored."},
            "303": {"description": "Stored; redirected to `success_action_redirect`."},
            "4XX": {"description": "Refused, as S3 refuses.", "content": _XML_ERROR},
            "5XX": {"description": "Not stored.", "content": _XML_ERROR},
        },
    }
}


def _bytes_path_item(
    operation_id: str,
    summary: str,
    description: str,
    names: tuple[str, str],
    refusals: dict[str, str],
) -> dict[str, object]:
    """A GET of streamed bytes whose path is the capability; failures are JSON."""
    responses: dict[str, object] = {"200": {"description": "The bytes.", "content": _BYTES}}
    for status, text in {**refusals, "5XX": "Not served."}.items():
        responses[status] = {"description": text, "content": _JSON_ERROR}
    return {
        "get": {
            "operationId": operation_id,
            "tags": ["storage"],
            "summary": summary,
            "description": description,
            "security": [],
            "parameters": _path_parameters(*names),
            "responses": responses,
        }
    }


DOWNLOAD_PATH_ITEM = _bytes_path_item(
    "DownloadFile",
    "A 24-hour download link",
    "The file as an attachment; the token is the capability.",
    ("token", "name"),
    {"404": "No such file.", "410": "The link expired."},
)
MEDIA_PATH_ITEM = _bytes_path_item(
    "GetMedia",
    "A contact asset's media",
    "Served so a browser never sniffs or runs it (SVGs as attachments).",
    ("uuid", "name"),
    {"404": "No such media."},
)


class StorageSurface(Surface):
    name = "storage"

    def __init__(self, caller: Caller, bodies: LargeBodies) -> None:
        self._caller = caller
        self._bodies = bodies

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(STORAGE_PATH + "{bucket}", self.upload),
            # The name is for people (the token is the capability): it may hold a "/".
            web.get(DOWNLOAD_PATH + r"{token}/{name:[\s\S]+}", self.download),
            web.get(PUBLIC_MEDIA_PATH + "{uuid}/{name}", self.media),
        ]

    async def upload(self, request: web.Request) -> web.StreamResponse:
        """Stream the form to Files.UploadObject; answer as S3 does."""
        metadata = self.base_metadata(request)
        try:
            if request.content_length is None:  # chunked: S3 needs the length up front
                raise s3_refusal(
                    "MissingContentLength", "You must provide the Content-Length HTTP header.", 411
                )
            with self._bodies.hold(request):
                fields, file_part = await read_form(request)
                messages = upload_messages(request.match_info["bucket"], fields, file_part)
                stored = await self._caller.call_stream_in(
                    UPLOAD_METHOD, messages, metadata, files_pb2.UploadObjectResponse
                )
        except CallFailed as failure:
            log_refusal(request, self.name, STORAGE_PATH + "{bucket}", failure)
            return await self.refusal(request, failure.status)
        assert isinstance(stored, files_pb2.UploadObjectResponse)
        location = f"{request.url.with_query(None)}/{stored.key}"
        given = {name.lower(): value for name, value in fields}
        redirect = _redirect(given.get("success_action_redirect", ""), stored)
        if redirect is not None:
            return web.Response(status=303, headers={"ETag": stored.etag, "Location": redirect})
        status = given.get("success_action_status", "204")
        if status == "201":
            return post_response(location, stored.bucket, stored.key, stored.etag)
        return web.Response(
            status=200 if status == "200" else 204,
            headers={"ETag": stored.etag, "Location": location},
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        """A 24-hour download capability: the file as an attachment."""
        message = files_pb2.DownloadFileRequest(
            token=request.match_info["token"], name=request.match_info["name"]
        )
        return await self._serve(
            request,
            DOWNLOAD_METHOD,
            message,
            files_pb2.DownloadFileResponse,
            lambda file: {
                "Content-Type": file.content_type,
                "Content-Disposition": file.content_disposition,
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def media(self, request: web.Request) -> web.StreamResponse:
        """C2C media, served so a browser never sniffs or runs it."""
        message = contact_assets_pb2.GetMediaRequest(
            uuid=request.match_info["uuid"], name=request.match_info["name"]
        )
        return await self._serve(
            request,
            MEDIA_METHOD,
            message,
            contact_assets_pb2.GetMediaResponse,
            lambda media: {
                "Content-Type": media.content_type,
                **MEDIA_HEADERS,
                # An SVG is a document that could run as a page of ours: never inline.
                **({"Content-Disposition": "attachment"} if media.content_type == SVG else {}),
            },
        )

    async def _serve(
        self,
        request: web.Request,
        method: str,
        message: Message,
        response_type: type[Message],
        headers: Callable[[Message], Mapping[str, str]],
    ) -> web.StreamResponse:
        call = StreamedCall(method, message, response_type, headers)
        metadata = self.base_metadata(request)
        return await serve_stream(self._caller, request, call, metadata, self.render_error)

    def error_response(self, request: web.Request, status: status_pb2.Status) -> web.Response:
        http = http_status(status)
        if not request.path.startswith(STORAGE_PATH):
            return json_response(
                {"error": error_reason(status) or "error", "message": status.message}, http
            )
        info = error_info(status)
        if info is not None and HTTP_STATUS_KEY in info.metadata:
            code, message = info.reason, status.message
        else:
            code, message = S3_CODES.get(http, INTERNAL_ERROR)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{escape(request_id(request))}</RequestId></Error>"
        )
        return web.Response(text=body, status=http, content_type=XML)


def http_status(status: status_pb2.Status) -> int:
    """S3's own status for its refusals; this surface's table, else the default."""
    info = error_info(status)
    given = info.metadata.get(HTTP_STATUS_KEY, "") if info is not None else ""
    if given.isdigit():
        return int(given)
    return STATUSES.lookup(status) or default_http_status(status)


def _redirect(url: str, stored: files_pb2.UploadObjectResponse) -> str | None:
    """S3's `success_action_redirect`: the URL with bucket, key and etag added to its
    query; None when it is not an absolute http(s) URL (S3 then falls back to
    success_action_status)."""
    try:
        target = URL(url)
    except ValueError:
        return None
    if target.scheme not in ("http", "https") or not target.host:
        return None
    added = {"bucket": stored.bucket, "key": stored.key, "etag": stored.etag}
    return str(target.update_query(added))


def post_response(location: str, bucket: str, key: str, etag: str) -> web.Response:
    """S3's answer to `success_action_status=201`."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<PostResponse><Location>{escape(location)}</Location><Bucket>{escape(bucket)}</Bucket>"
        f"<Key>{escape(key)}</Key><ETag>{escape(etag)}</ETag></PostResponse>"
    )
    return web.Response(text=body, status=201, content_type=XML, headers={"ETag": etag})


async def read_form(request: web.Request) -> tuple[list[tuple[str, str]], BodyPartReader]:
    """The fields before the file (names as sent, at most MAX_FIELD_BYTES in all) and the
    file part, its body still unread: S3 ignores whatever follows it."""
    if not request.content_type.startswith("multipart/form-data"):
        raise s3_refusal(
            "PreconditionFailed",
            "Bucket POST must be of the enclosure-type multipart/form-data.",
            412,
        )
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        raise malformed() from None
    fields: list[tuple[str, str]] = []
    budget = MAX_FIELD_BYTES
    while (part := await _next_part(reader)) is not None:
        if not isinstance(part, BodyPartReader) or not part.name:
            raise malformed()
        if part.name.lower() == "file":
            return fields, part
        value = await _field(part, budget)
        budget -= len(value)
        fields.append((part.name, value.decode("utf-8", "replace")))
    raise s3_refusal(
        "IncorrectNumberOfFilesInPostRequest",
        "POST requires exactly one file upload per request.",
        400,
    )


async def upload_messages(
    bucket: str, fields: list[tuple[str, str]], file_part: BodyPartReader
) -> AsyncIterator[files_pb2.UploadObjectRequest]:
    """UploadObject's messages: the form, then the file in chunks, read as the call
    takes them."""
    yield files_pb2.UploadObjectRequest(
        form=files_pb2.ObjectForm(
            bucket=bucket,
            fields=[files_pb2.FormField(name=name, value=value) for name, value in fields],
            filename=file_part.filename or "",
        )
    )
    while chunk := await _read(file_part.read_chunk(CHUNK_BYTES)):
        yield files_pb2.UploadObjectRequest(chunk=chunk)


async def _next_part(reader: MultipartReader) -> object | None:
    return await _read(reader.next())


async def _field(part: BodyPartReader, budget: int) -> bytes:
    """A form field's value, read in chunks so an oversized one is refused unread."""
    value = bytearray()
    while chunk := await _read(part.read_chunk(8192)):
        value += chunk
        if len(value) > budget:
            raise s3_refusal(
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceeding the upload file was too large.",
                400,
            )
    return bytes(value)


async def _read(reading: Awaitable[T]) -> T:
    """Await a read of the body; a body that is not well-formed multipart is S3's
    MalformedPOSTRequest (a part header aiohttp's parser refuses included)."""
    try:
        return await reading
    except (
        ValueError,
        AssertionError,
        asyncio.IncompleteReadError,
        ClientPayloadError,
        HttpProcessingError,
    ):
        raise malformed() from None


def s3_refusal(code: str, message: str, http: int) -> CallFailed:
    """A refusal of the form itself, decided here as the server decides the rest: S3's
    code as the reason, its HTTP status in the metadata."""
    grpc_code = (
        grpc.StatusCode.FAILED_PRECONDITION if http == 412 else grpc.StatusCode.INVALID_ARGUMENT
    )
    return Refused(build_status(grpc_code, message, code, metadata={HTTP_STATUS_KEY: str(http)}))


def malformed() -> CallFailed:
    return s3_refusal(
        "MalformedPOSTRequest",
        "The body of your POST request is not well-formed multipart/form-data.",
        400,
    )
