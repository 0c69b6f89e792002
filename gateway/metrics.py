"""Prometheus metrics of the HTTP side, and `GET /metrics` for whichever process serves it.

Every process keeps its own registry (prometheus_client's default): each `serve`,
`server` and `gateway` is scraped on its own. Labels stay bounded: a route is its
template as registered (`/api/c2c/contacts/{uuid}`), never the path a client sent, the
method one of HTTP's own (else `OTHER`), and no tenant appears anywhere. The hot path
looks its label children up once per (route, method) and then only bumps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from gateway.contract import DOWNLOAD_PATH, PUBLIC_MEDIA_PATH, STORAGE_PATH

log = logging.getLogger("crmgate.gateway")

# `_created` twins of every counter would double the scrape and tell an operator nothing
# a process start time does not.
disable_created_metrics()

METRICS_PATH = "/metrics"
#: Seconds: from a cached key check (well under a millisecond) to a large upload.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
)  # fmt: skip
#: How long a scrape waits for values fetched on demand (background requests) before it
#: answers with the last ones: /metrics must answer while the process is under load.
REFRESH_SECONDS = 1.0
#: The route label of requests no registered route took (unknown paths, wrong verbs).
UNMATCHED = "(unmatched)"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The object routes belong to no REST surface of their own.
OBJECT_PATHS = (STORAGE_PATH, DOWNLOAD_PATH, PUBLIC_MEDIA_PATH)

_ROUTE = ("surface", "method", "route")
HTTP_REQUESTS = Counter(
    "crmgate_http_requests", "HTTP requests answered, by status", [*_ROUTE, "status"]
)
HTTP_DURATION = Histogram(
    "crmgate_http_request_duration_seconds",
    "Time from a request's head to its handler's answer (streamed bodies included)",
    _ROUTE,
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("crmgate_http_requests_in_flight", "Requests being handled now", ["surface"])
HTTP_REQUEST_BYTES = Counter("crmgate_http_request_bytes", "Request body bytes read", _ROUTE)
HTTP_RESPONSE_BYTES = Counter("crmgate_http_response_bytes", "Response body bytes written", _ROUTE)


@dataclass
class _Series:
    """The label children of one (route, method), looked up once."""

    labels: tuple[str, str, str]
    in_flight: Gauge
    duration: Histogram
    request_bytes: Counter
    response_bytes: Counter
    statuses: dict[int, Counter] = field(default_factory=dict)

    def status(self, code: int) -> Counter:
        counter = self.statuses.get(code)
        if counter is None:
            counter = self.statuses[code] = HTTP_REQUESTS.labels(*self.labels, str(code))
        return counter


def metrics_middleware(surface_for_path: Callable[[str], str]) -> web.Middleware:
    """Counts, times and sizes every request by surface, route template and status.
    `surface_for_path` names the surface of a route template."""
    series: dict[tuple[object, str], _Series] = {}

    def new_series(surface: str, method: str, template: str) -> _Series:
        labels = (surface, method, template)
        return _Series(
            labels,
            HTTP_IN_FLIGHT.labels(surface),
            HTTP_DURATION.labels(*labels),
            HTTP_REQUEST_BYTES.labels(*labels),
            HTTP_RESPONSE_BYTES.labels(*labels),
        )

    def lookup(request: web.Request) -> _Series:
        resource = request.match_info.route.resource
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        found = series.get((resource, method))
        if found is not None:
            return found
        template = resource.canonical if resource is not None else UNMATCHED
        if resource is None or template.strip("/") == "{tail}":
            # The catch-all route: one series per surface the raw path falls in.
            surface = surface_for_path(request.path)
            key: tuple[object, str] = (surface, method)
            found = series.get(key) or series.setdefault(
                key, new_series(surface, method, UNMATCHED)
            )
            return found
        surface = "storage" if template.startswith(OBJECT_PATHS) else surface_for_path(template)
        found = series[resource, method] = new_series(surface, method, template)
        return found

    @web.middleware
    async def measure(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        measured = lookup(request)
        started = time.perf_counter()
        measured.in_flight.inc()
        status, sent = 500, 0
        try:
            response = await handler(request)
            status = response.status
            sent = response.body_length or response.content_length or 0
            return response
        except web.HTTPException as answer:
            status = answer.status
            raise
        finally:
            measured.in_flight.dec()
            measured.duration.observe(time.perf_counter() - started)
            measured.status(status).inc()
            measured.request_bytes.inc(request.content.total_bytes)
            measured.response_bytes.inc(sent)

    return measure


Refresh = Callable[[], Awaitable[None]]


def metrics_routes(refresh: Iterable[Refresh] = ()) -> list[web.RouteDef]:
    """`GET /metrics` in Prometheus' text format. `refresh`: coroutines that update
    values fetched on demand (from the database) before the registry is read; one slower
    than REFRESH_SECONDS leaves its last values in the answer and finishes on its own."""
    refreshers = list(refresh)
    pending: dict[Refresh, asyncio.Task[None]] = {}

    async def refreshed(function: Refresh) -> None:
        task = pending.get(function)
        if task is None or task.done():
            task = pending[function] = asyncio.ensure_future(function())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), REFRESH_SECONDS)
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("metrics refresh failed: %s", task.exception())

    async def metrics(request: web.Request) -> web.Response:
        await asyncio.gather(*(refreshed(function) for function in refreshers))
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return [web.get(METRICS_PATH, metrics)]
