"""What a surface decides, with the defaults most surfaces share.

The gateway core calls a surface to (1) turn an HTTP request's headers into call
metadata, enforcing its header rules, (2) write a response, and (3) write any failure —
its own, the transcoder's or the service's — which always arrives as a google.rpc.Status.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from google.protobuf.message import Message
from google.rpc import status_pb2

from gateway.calls import Caller
from gateway.contract import (
    ACCEPT_LANGUAGE_KEY,
    BASE_URL_KEY,
    CLIENT_ADDRESS_KEY,
    HOST_KEY,
    REQUEST_ID_KEY,
    new_request_id,
)
from gateway.json_options import JsonOptions
from gateway.json_writer import http_body, response_payload
from gateway.routes import Route

#: One encoder for every response: json.dumps with options builds a new one per call.
dump_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_response(document: Any, status: int = 200) -> web.Response:
    return web.Response(text=dump_json(document), status=status, content_type="application/json")


def request_host(request: web.Request) -> str:
    """The public host without its port, lowercased (`[::1]:8080` → `::1`): the Host
    header, or a trusted proxy's X-Forwarded-Host (gateway.forwarding)."""
    host = request.host.strip().lower()
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


class Surface:
    """A public API served by the gateway. Subclasses override what they do differently."""

    #: Short name, for logs.
    name = "surface"
    #: The proto services whose annotated routes this surface serves.
    services: frozenset[str] = frozenset()
    #: Unknown paths under this prefix are answered in this surface's error format.
    path_prefix = "/"
    json_options = JsonOptions()

    def call_metadata(self, request: web.Request, route: Route) -> list[tuple[str, str]]:
        """Metadata for the call; raise `reject(...)` to refuse the request before it."""
        return self.base_metadata(request)

    def base_metadata(self, request: web.Request) -> list[tuple[str, str]]:
        host = header_text(request.host)
        metadata = [
            (REQUEST_ID_KEY, header_text(request.headers.get("X-Request-Id")) or new_request_id()),
            (HOST_KEY, request_host(request) if host else ""),
            (BASE_URL_KEY, f"{request.scheme}://{host}" if host else ""),
            (CLIENT_ADDRESS_KEY, request.remote or ""),
        ]
        language = header_text(request.headers.get("Accept-Language"))
        if language:
            metadata.append((ACCEPT_LANGUAGE_KEY, language))
        return metadata

    def bind(self, routes: Sequence[Route], caller: Caller) -> None:
        """Told every route the gateway serves and how it calls services, for surfaces
        that look a route up or make calls of their own."""

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

    async def render_error(
        self, request: web.Request, status: status_pb2.Status
    ) -> web.StreamResponse:
        raise NotImplementedError


def error_map(violations: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Laravel's error map: field path → messages, in the order they were found."""
    errors: dict[str, list[str]] = {}
    for field, message in violations:
        errors.setdefault(field, []).append(message)
    return errors
