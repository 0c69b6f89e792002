"""Every HTTP request's id: the client's `X-Request-Id` when it is a sane one, else a new
one. It travels to the server as call metadata, is in every log line the request causes,
and comes back as the response's `X-Request-Id`, tracing on or off."""

from __future__ import annotations

import re
from contextvars import ContextVar

from aiohttp import web
from multidict import istr

from gateway.contract import new_request_id

#: What a client's id may be: short, and nothing a log or a header could misread.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_ID = web.RequestKey("request_id", str)
#: The header name as multidict's own case-insensitive key: looked up without folding.
X_REQUEST_ID = istr("X-Request-Id")
#: The id of the call being served (set by the server's pipeline), for log lines that
#: do not name it themselves.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


def request_id(request: web.Request) -> str:
    """The request's id, decided at its first use and kept on the request."""
    # A new request's state is empty: the lookup (whose miss raises within) is skipped.
    found = request.get(_ID) if len(request) else None
    if found is None:
        given = request.headers.get(X_REQUEST_ID, "")
        found = request[_ID] = given if SANE_REQUEST_ID.fullmatch(given) else new_request_id()
    return found


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the id in the response's headers, streamed responses too."""
    response.headers[X_REQUEST_ID] = request_id(request)
