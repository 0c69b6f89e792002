"""One log line for each request the gateway refuses by itself (malformed JSON, a missing
header, an unknown path, a busy gateway, …): a request a service saw is logged by the
service's pipeline, so with this line every request is logged exactly once. Only the
route template, never the raw path (a download token is a capability) or a header."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.contract import REQUEST_ID_KEY, CallFailed, error_reason, status_code
from gateway.errors import Refused
from gateway.routes import Route
from gateway.surfaces.base import header_text

log = logging.getLogger("crmgate.gateway")


def log_refusal(
    request: web.Request, surface: str, route: Route | str | None, failure: CallFailed
) -> None:
    """`route`: the route (or its template) the request took, if it took one."""
    if not isinstance(failure, Refused) or not log.isEnabledFor(logging.INFO):
        return
    template = route.path.template if isinstance(route, Route) else route
    fields = {
        "surface": surface,
        "route": f"{request.method} {template}" if template else None,
        "status": status_code(failure.status).name,
        "reason": error_reason(failure.status),
        "request_id": request.get(REQUEST_ID_KEY)
        or header_text(request.headers.get("X-Request-Id"))
        or None,
    }
    log.info("refused", extra={"rpc": fields})
