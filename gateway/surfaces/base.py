"""What a surface decides, with the defaults most surfaces share.

The gateway core calls a surface to (1) turn an HTTP request's headers into call
metadata, enforcing its header rules, (2) write a response, and (3) write any failure —
its own, the transcoder's or the service's — which always arrives as a google.rpc.Status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import hdrs, web
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway.calls import Caller
from gateway.contract import (
    ACCEPT_LANGUAGE_KEY,
    BASE_URL_KEY,
    CLIENT_ADDRESS_KEY,
    HOST_KEY,
    REQUEST_ID_KEY,
    CallFailed,
    build_status,
)
from gateway.errors import INVALID_REQUEST, MALFORMED_REPLY, StatusTable, reject, throttle_headers
from gateway.json_body import Path as JsonPath
from gateway.json_options import JsonOptions
from gateway.json_reader import TranscodeError, build_request
from gateway.json_text import text_encoder
from gateway.json_writer import http_body, response_payload
from gateway.request_ids import request_id
from gateway.routes import Route

log = logging.getLogger("crmgate.gateway")

#: One encoder for every response: json.dumps with options builds a new one per call.
dump_json = text_encoder(ensure_ascii=False, separators=(",", ":"))


#: The Content-Type aiohttp writes for `text=` JSON, given whole: from `text=` and
#: `content_type=` it builds and parses the header again for every response.
JSON_CONTENT_TYPE = {"Content-Type": "application/json; charset=utf-8"}


def json_response(document: Any, status: int = 200) -> web.Response:
    body = dump_json(document).encode()
    return web.Response(body=body, status=status, headers=JSON_CONTENT_TYPE)


def request_host(request: web.Request) -> str:
    """The public host without its port, lowercased (`[::1]:8080` → `::1`): the Host
    header, or a trusted proxy's X-Forwarded-Host (gateway.forwarding)."""
    return host_name(request.host)


def host_name(header: str) -> str:
    """A Host header's host without its port, lowercased (see `request_host`)."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.partition(":")
    return name if colon and ":" not in port else host


def header_text(value: str | None) -> str:
    """A header's value if it can travel as call metadata (printable ASCII), else "": a
    value with bytes that are not UTF-8 reaches here with lone surrogates, and counts as
    absent (a credential made of them is no credential)."""
    if value and value.isascii() and value.isprintable():
        return value
    return ""


#: (scheme, Host header) → the call's host and base URL, for the few hosts a gateway
#: serves; emptied when full, so made-up Host headers cannot grow it without bound.
_hosts: dict[tuple[str, str], tuple[str, str]] = {}
HOSTS_CACHED = 256


def _host_fields(scheme: str, header: str) -> tuple[str, str]:
    """The call's host (`host_name`) and base URL for a request's Host header; both ""
    when the header cannot travel as metadata."""
    key = (scheme, header)
    fields = _hosts.get(key)
    if fields is None:
        host = header_text(header)
        fields = (host_name(host), f"{scheme}://{host}") if host else ("", "")
        if len(_hosts) >= HOSTS_CACHED:
            _hosts.clear()
        _hosts[key] = fields
    return fields


class Surface:
    """A public API served by the gateway. Subclasses override what they do differently."""

    #: Short name, for logs.
    name = "surface"
    #: The proto services whose annotated routes this surface serves.
    services: frozenset[str] = frozenset()
    #: Unknown paths under this prefix are answered in this surface's error format.
    path_prefix = "/"
    json_options = JsonOptions()
    #: The call that checks a request's credentials from its headers alone — (method,
    #: request type, response type) — made before a large body is read; None: no credentials.
    credential_check: tuple[str, type[Message], type[Message]] | None = None
    #: What its OpenAPI description says beyond the annotations (None: not described).
    description: ApiDescription | None = None

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        """Metadata for the call; raise `reject(...)` to refuse the request before it."""
        return self.base_metadata(request)

    def router_paths(self, route: Route) -> list[str]:
        """The aiohttp paths a route answers on: by default its template's alone."""
        return [route.path.router_path()]

    def base_metadata(self, request: web.Request) -> list[tuple[str, str]]:
        headers = request.headers
        host, base_url = _host_fields(request.scheme, request.host)
        metadata = [
            (REQUEST_ID_KEY, request_id(request)),
            (HOST_KEY, host),
            (BASE_URL_KEY, base_url),
            (CLIENT_ADDRESS_KEY, request.remote or ""),
        ]
        language = headers.get(hdrs.ACCEPT_LANGUAGE)
        if language and header_text(language):
            metadata.append((ACCEPT_LANGUAGE_KEY, language))
        return metadata

    def bind(self, routes: Sequence[Route], caller: Caller) -> None:
        """Told every route the gateway serves and how it calls services, for surfaces
        that look a route up or make calls of their own."""

    def keep_raw(self, route: Route, path: JsonPath) -> bool:
        """Whether a long plain string of the route's body at `path` reaches `call` unread,
        as a gateway.json_body.RawText (for a surface that streams it on): none does."""
        return False

    def call(
        self,
        caller: Caller,
        request: web.Request,
        route: Route,
        values: Mapping[str, str],
        metadata: Sequence[tuple[str, str]],
        body: Any,
    ) -> Awaitable[Message | web.StreamResponse]:
        """Make the route's call: its request message from the path values, the query and
        the parsed JSON body (released once converted), sent as `outgoing_call` says. The
        answer is rendered by `render`, unless the surface streamed it itself (a response
        already written). Returns the caller's own awaitable: no coroutine around it."""
        message = transcode(route, values, request, body, self.json_options)
        del body
        method, outgoing, response_type = self.outgoing_call(request, route, message)
        return caller.call(method, outgoing, metadata, response_type)

    def outgoing_call(
        self, request: web.Request, route: Route, message: Message
    ) -> tuple[str, Message, type[Message]]:
        """The call to make for a request: by default the route's own method."""
        return route.full_method, message, route.response_type

    def render(self, request: web.Request, route: Route, message: Message) -> web.StreamResponse:
        body = http_body(route, message)
        if body is not None:
            return web.Response(
                body=body.data,  # type: ignore[attr-defined]
                headers={"Content-Type": body.content_type or "application/octet-stream"},  # type: ignore[attr-defined]
            )
        return json_response(response_payload(route, message, self.json_options))

    def error_response(self, request: web.Request, status: status_pb2.Status) -> web.Response:
        """The failure in this surface's envelope, worded as the status is, making no
        call: also for refusals made before a route runs (malformed HTTP, crashes)."""
        raise NotImplementedError

    async def render_error(
        self, request: web.Request, status: status_pb2.Status
    ) -> web.StreamResponse:
        """The failure in this surface's envelope; a surface may look up how to word it."""
        return self.error_response(request, status)

    async def refusal(self, request: web.Request, status: status_pb2.Status) -> web.StreamResponse:
        """`render_error`, with Retry-After (and RateLimit) when the refusal says when to
        retry."""
        response = await self.render_error(request, status)
        response.headers.update(throttle_headers(status))
        return response


def transcode(
    route: Route, values: Mapping[str, str], request: web.Request, body: Any, options: JsonOptions
) -> Message:
    """The route's request message; refuses (INVALID_REQUEST, every violation listed) what
    cannot become one."""
    if not (route.body or values or request.query_string):
        return route.request_type()  # nothing to read into it (health, lists without filters)
    try:
        return build_request(route, values, request.query.items(), body, options)
    except TranscodeError as error:
        raise reject(
            grpc.StatusCode.INVALID_ARGUMENT,
            INVALID_REQUEST,
            violations=[(v.field, v.message, v.kind) for v in error.violations],
        ) from None


@dataclass(frozen=True)
class StreamedCall:
    """A server-streaming call whose first message is the metadata (a `metadata` field:
    headers and `content_length`) and the rest `chunk`s."""

    method: str
    message: Message
    response_type: type[Message]
    headers: Callable[[Message], Mapping[str, str]]


async def serve_stream(
    caller: Caller,
    request: web.Request,
    call: StreamedCall,
    metadata: Sequence[tuple[str, str]],
    render_error: Callable[[web.Request, status_pb2.Status], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """The response of a streamed call: a failure before the first message is the
    surface's error document; one midway cuts the body short of its Content-Length."""
    responses = caller.call_stream_out(call.method, call.message, metadata, call.response_type)
    async with contextlib.aclosing(responses):
        try:
            first = await anext(responses, None)
            if first is None or first.WhichOneof("part") != "metadata":
                raise CallFailed(
                    build_status(
                        grpc.StatusCode.INTERNAL,
                        "malformed reply from the backend",
                        MALFORMED_REPLY,
                    )
                )
        except CallFailed as failure:
            return await render_error(request, failure.status)
        about = first.metadata  # type: ignore[attr-defined]
        response = web.StreamResponse(headers=dict(call.headers(about)))
        response.content_length = about.content_length
        await response.prepare(request)
        if request.method != "HEAD":
            try:
                async for part in responses:
                    await response.write(part.chunk)  # type: ignore[attr-defined]
            except CallFailed as failure:
                log.error("%s failed midway: %s", call.method, failure.status.message)
                response.force_close()
                return response
        await response.write_eof()
        return response


def error_map(violations: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Laravel's error map: field path → messages, in the order they were found."""
    errors: dict[str, list[str]] = {}
    for field, message in violations:
        errors.setdefault(field, []).append(message)
    return errors


@dataclass(frozen=True)
class ApiDescription:
    """What a surface's OpenAPI description says beyond the contract's annotations (read
    by gateway.openapi): its naming comes from `Surface.json_options`, the rest from here."""

    title: str
    version: str
    #: OpenAPI securitySchemes, by name.
    security_schemes: Mapping[str, Mapping[str, Any]]
    #: Alternatives: any one scheme of these names is enough.
    security: Sequence[str]
    #: Every HTTP status a failure may take (`statuses_of` reads them from status tables).
    error_statuses: frozenset[int]
    #: The error body's JSON Schema, by status; "default" for the statuses not listed.
    error_schemas: Mapping[int | str, Mapping[str, Any]]
    #: Full method paths (`/pkg.Service/Method`) that need no credentials.
    public_methods: frozenset[str] = frozenset()
    #: Header parameters every operation requires (OpenAPI parameter objects).
    headers: Sequence[Mapping[str, Any]] = ()
    #: Success statuses that are not 200, by full method path.
    success_statuses: Mapping[str, int] = dataclasses.field(default_factory=dict)
    #: The request body's media type.
    body_media_type: str = "application/json"
    #: Properties the surface adds to a message's JSON, by message full name.
    extra_properties: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    #: Full method paths that may run in the background with `?async=true`, answering
    #: the schema `async_response` names instead.
    async_methods: frozenset[str] = frozenset()
    async_response: str = ""
    #: Paths the surface's objects are served on (OpenAPI path items, by path).
    extra_paths: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)


def statuses_of(*tables: StatusTable[Any]) -> frozenset[int]:
    """The failure statuses in status tables (values that are tuples give their first
    item), with 500 for what no table names."""
    found = {500}
    for table in tables:
        for value in (*table.by_reason.values(), *table.by_code.values()):
            found.add(value[0] if isinstance(value, tuple) else value)
    return frozenset(status for status in found if status >= 400)  # OK maps to 200
