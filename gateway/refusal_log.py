"""One log line for each request the gateway refuses by itself (malformed JSON, a missing
header, an unknown path, a busy gateway, …): a request a service saw is logged by the
service's pipeline, so with this line every request is logged exactly once. Only the
route template, never the raw path (a download token is a capability) or a header."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway import tracing
from gateway.contract import CallFailed, error_reason, status_code
from gateway.errors import Refused
from gateway.request_ids import request_id
from gateway.routes import Route

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
        "request_id": request_id(request),
    }
    trace_id = tracing.trace_id()
    if trace_id is not None:
        fields["trace_id"] = trace_id
    log.info("refused", extra={"rpc": fields})
