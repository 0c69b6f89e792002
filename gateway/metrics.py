"""Prometheus metrics of the HTTP side, and `GET /metrics` for whichever process serves it.

Every process keeps its own registry (prometheus_client's default): each `serve`,
`server` and `gateway` is scraped on its own. Labels stay bounded: a route is its
template as registered (`/api/c2c/contacts/{uuid}`), never the path a client sent, the
method one of HTTP's own (else `OTHER`), and no tenant appears anywhere. The hot path
finds its series once per (route, method), then only adds to plain numbers (`Series`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from itertools import accumulate

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.contract import DOWNLOAD_PATH, PUBLIC_MEDIA_PATH, STORAGE_PATH

log = logging.getLogger("crmgate.gateway")

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


class Series:
    """One label set's requests: in flight, by status, their latency and bytes. Plain
    numbers bumped on the event loop's thread (where every request and call is
    handled), read on the same thread when scraped: no lock, a few additions per
    request. prometheus_client's own metrics take a lock for each bump and walk the
    buckets in Python, which cost 14 % of a health check's CPU."""

    __slots__ = ("buckets", "in_flight", "labels", "received", "seconds", "sent", "statuses")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.in_flight = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last: +Inf
        self.seconds = 0.0
        self.statuses: dict[object, int] = {}  # status (an HTTP code, a gRPC code's name)
        self.received = 0
        self.sent = 0

    def start(self) -> float:
        self.in_flight += 1
        return time.perf_counter()

    def finish(self, started: float, status: object, received: int, sent: int) -> None:
        elapsed = time.perf_counter() - started
        self.in_flight -= 1
        self.buckets[bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        self.seconds += elapsed
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.received += received
        self.sent += sent


class RequestMetrics(Collector):
    """The five metrics of one kind of request (HTTP requests, gRPC calls), exposed as
    `<prefix>_requests_total{…, <status>}`, `<prefix>_request_duration_seconds`,
    `<prefix>_requests_in_flight`, `<prefix>_request_bytes_total` and
    `<prefix>_response_bytes_total`."""

    def __init__(self, prefix: str, what: str, labels: Sequence[str], status: str) -> None:
        self._prefix, self._what, self._labels, self._status = prefix, what, labels, status
        self._series: dict[tuple[str, ...], Series] = {}
        REGISTRY.register(self)

    def series(self, *labels: str) -> Series:
        found = self._series.get(labels)
        if found is None:
            found = self._series[labels] = Series(labels)
        return found

    def collect(self) -> Iterator[Metric]:
        name, what, labels = self._prefix, self._what, list(self._labels)
        requests = CounterMetricFamily(
            f"{name}_requests", f"{what} answered, by status", labels=[*labels, self._status]
        )
        duration = HistogramMetricFamily(
            f"{name}_request_duration_seconds",
            f"Time {what} took, from arrival to the answer's end (streams included)",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            f"{name}_requests_in_flight", f"{what} being handled now", labels=labels
        )
        received = CounterMetricFamily(
            f"{name}_request_bytes", f"Bytes of {what} bodies received", labels=labels
        )
        sent = CounterMetricFamily(
            f"{name}_response_bytes", f"Bytes of {what} answers sent", labels=labels
        )
        bounds = [*(f"{bound:g}" for bound in LATENCY_BUCKETS), "+Inf"]
        for series in list(self._series.values()):
            for status, count in list(series.statuses.items()):
                requests.add_metric([*series.labels, str(status)], count)
            duration.add_metric(
                series.labels,
                list(zip(bounds, accumulate(series.buckets), strict=True)),
                series.seconds,
            )
            in_flight.add_metric(series.labels, series.in_flight)
            received.add_metric(series.labels, series.received)
            sent.add_metric(series.labels, series.sent)
        yield from (requests, duration, in_flight, received, sent)


HTTP = RequestMetrics("crmgate_http", "HTTP requests", ("surface", "method", "route"), "status")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpMeasure:
    """Wraps route handlers so each request is counted, timed and sized by surface,
    route template and status. A wrapper per route rather than a middleware: it finds
    its series without a lookup by path, and aiohttp's middleware chain costs a health
    check about as much again (measured with wrk: 1-2 µs of 30 on a bare handler)."""

    def __init__(self, surface_for_path: Callable[[str], str]) -> None:
        self._surface_for_path = surface_for_path

    def route_def(self, definition: web.AbstractRouteDef) -> web.AbstractRouteDef:
        """A route definition with its handler wrapped (static files pass as they are)."""
        if not isinstance(definition, web.RouteDef):
            return definition
        handler = self.wrap(definition.handler)  # type: ignore[arg-type]
        return web.RouteDef(definition.method, definition.path, handler, definition.kwargs)

    def wrap(
        self, handler: Handler, *, surface: str | None = None, template: str | None = None
    ) -> Handler:
        """`handler`, measured under `template` (else the template of the route it
        serves, learnt at its first request) and `surface` (else the template's)."""
        by_method: dict[str, Series] = {}  # a route's verbs: its own, and HEAD for GET

        def series(request: web.Request) -> Series:
            method = _verb(request.method)
            resource = request.match_info.route.resource
            served = template or (resource.canonical if resource is not None else UNMATCHED)
            owner = surface or self._surface(served)
            found = by_method[request.method] = HTTP.series(owner, method, served)
            return found

        return self._measured(handler, series, by_method)

    def wrap_unmatched(self, handler: Handler) -> Handler:
        """The catch-all route's handler: one series per surface the raw path falls in
        and per verb, all under the template UNMATCHED."""

        def series(request: web.Request) -> Series:
            method = _verb(request.method)
            return HTTP.series(self._surface_for_path(request.path), method, UNMATCHED)

        return self._measured(handler, series, {})

    def _surface(self, template: str) -> str:
        return "storage" if template.startswith(OBJECT_PATHS) else self._surface_for_path(template)

    @staticmethod
    def _measured(
        handler: Handler, series: Callable[[web.Request], Series], known: dict[str, Series]
    ) -> Handler:
        """`series` finds a request's series where `known` (by verb) has none."""

        async def measured(request: web.Request) -> web.StreamResponse:
            found = known.get(request.method) or series(request)
            started = found.start()
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
                found.finish(started, status, request.content.total_bytes, sent)

        return measured


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


def _verb(method: str) -> str:
    """A request's method as a label: HTTP's own, else OTHER (the label set stays bounded)."""
    return method if method in KNOWN_METHODS else "OTHER"
