"""Every HTTP request's id: the client's `X-Request-Id` when it is a sane one, else a new
one. It travels to the server as call metadata, is in every log line the request causes,
and comes back as the response's `X-Request-Id`, tracing on or off."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.contract import REQUEST_ID_KEY, new_request_id

#: What a client's id may be: short, and nothing a log or a header could misread.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(request: web.Request) -> str:
    """The request's id, decided at its first use and kept on the request."""
    found: str | None = request.get(REQUEST_ID_KEY)
    if found is None:
        given = request.headers.get("X-Request-Id", "")
        found = given if SANE_REQUEST_ID.fullmatch(given) else new_request_id()
        request[REQUEST_ID_KEY] = found
    return found


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the id in the response's headers, streamed responses too."""
    response.headers["X-Request-Id"] = request_id(request)
