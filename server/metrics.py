"""Prometheus metrics of the server side: gRPC calls, the database, the thread pools,
background requests, rate limits and object storage.

Every value lives in this process's registry (see gateway.metrics, which serves it).
Bulk worker processes (server/workers.py) keep none: what an operator watches of them —
their jobs, as background requests by state and age — is read from the database, and
their statements would only add a second timeline of the same imports. Values that cost
nothing to read are read when scraped (pool queues, pooled connections); background
requests are counted in the database at scrape time, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import peewee
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.metrics import LATENCY_BUCKETS, RequestMetrics
from server import executors
from server.database import connection
from server.database.models import BackgroundRequest, utcnow
from server.interceptors import WrappingInterceptor

# `_created` twins of every counter would double the scrape and tell an operator nothing
# a process start time does not.
disable_created_metrics()

GRPC = RequestMetrics("crmgate_grpc", "gRPC calls", ("method",), "code")
STATEMENT_DURATION = Histogram(
    "crmgate_db_statement_duration_seconds",
    "Time to execute one SQL statement (to its first row), by its verb",
    ["statement"],
    buckets=LATENCY_BUCKETS,
)
RATE_LIMIT_REFUSALS = Counter(
    "crmgate_rate_limit_refusals",
    "Calls refused by a rate limit: an exhausted request budget, or a locked-out "
    "address or account",
    ["limit"],
)
STORAGE_OPERATIONS = Counter(
    "crmgate_storage_operations", "Object storage operations, by outcome", ["operation", "outcome"]
)
STORAGE_BYTES = Counter(
    "crmgate_storage_bytes", "Object bytes written to and read from storage", ["direction"]
)
BACKGROUND_REQUESTS = Gauge(
    "crmgate_background_requests",
    "Background (?async=true) requests of the whole deployment not yet settled, by state",
    ["state"],
)
BACKGROUND_OLDEST = Gauge(
    "crmgate_background_oldest_age_seconds",
    "Age of the oldest unsettled background request, by state (0: none)",
    ["state"],
)
BACKGROUND_STATES = ("PENDING", "RUNNING")
#: SQL verbs worth a series of their own; anything else is `other`.
STATEMENTS = frozenset({"select", "insert", "update", "delete", "begin", "declare", "fetch"})


def install() -> None:
    """Start keeping what only hooks can see (statement times, pool occupancy), once
    per process; the other metrics are kept by the pieces `Runtime` wires in when
    metrics are on."""
    if connection.statement_observer is observe_statement:
        return
    connection.statement_observer = observe_statement
    executors.keep_load()
    for limit in ("budget", "lockout"):  # every series present from the start, at 0
        RATE_LIMIT_REFUSALS.labels(limit)
    REGISTRY.register(PoolCollector())


_statements: dict[str, Histogram] = {}


def observe_statement(sql: str, seconds: float) -> None:
    verb = sql.lstrip()[:7].split(" ", 1)[0].lower()
    child = _statements.get(verb)
    if child is None:
        child = _statements[verb] = STATEMENT_DURATION.labels(
            verb if verb in STATEMENTS else "other"
        )
    child.observe(seconds)


class PoolCollector(Collector):
    """The thread pools' occupancy and PostgreSQL's pooled connections, read when
    scraped. The `database` pool is the database pool: one connection per thread."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        busy = GaugeMetricFamily(
            "crmgate_pool_busy", "Threads of a pool running work now", labels=["pool"]
        )
        queued = GaugeMetricFamily(
            "crmgate_pool_queued", "Work waiting for a thread of a pool", labels=["pool"]
        )
        size = GaugeMetricFamily("crmgate_pool_size", "Threads a pool may run", labels=["pool"])
        for pool, load in executors.load().items():
            busy.add_metric([pool], load.busy)
            queued.add_metric([pool], load.queued)
            size.add_metric([pool], load.size)
        yield from (busy, queued, size)
        db = connection.database.obj
        if isinstance(db, connection.PostgresStore):
            connections = GaugeMetricFamily(
                "crmgate_db_connections", "Pooled PostgreSQL connections", labels=["state"]
            )
            connections.add_metric(["in_use"], len(db._in_use))
            connections.add_metric(["idle"], len(db._connections))
            yield connections


def refresh_background() -> Callable[[], Awaitable[None]]:
    """What a scrape awaits first: unsettled background requests by state and the age
    of the oldest, counted in the database (the whole deployment's, so every server
    reports the same: aggregate with max, not sum)."""

    def count() -> dict[str, tuple[int, float]]:
        rows = (
            BackgroundRequest.select(
                BackgroundRequest.status,
                peewee.fn.COUNT(BackgroundRequest.id),
                peewee.fn.MIN(BackgroundRequest.created_at),
            )
            .where(BackgroundRequest.status.in_(BACKGROUND_STATES))
            .group_by(BackgroundRequest.status)
            .tuples()
        )
        now = utcnow()
        found = {}
        for state, number, oldest in rows:
            if isinstance(oldest, str):  # SQLite hands aggregates back as text
                oldest = peewee.format_date_time(oldest, BackgroundRequest.created_at.formats)
            found[state] = (number, max(0.0, (now - oldest).total_seconds()))
        return found

    async def refresh() -> None:
        found = await executors.run_db(count)
        for state in BACKGROUND_STATES:
            number, age = found.get(state, (0, 0.0))
            BACKGROUND_REQUESTS.labels(state.lower()).set(number)
            BACKGROUND_OLDEST.labels(state.lower()).set(age)

    return refresh


def refused(limit: str) -> None:
    """Count a rate-limit refusal: `budget`, or a `lockout` (address or account)."""
    RATE_LIMIT_REFUSALS.labels(limit).inc()


class MeasuredStorage:
    """Object storage that counts its operations and the bytes of objects passing
    through; everything else (S3's presigning, …) goes to the store as it is."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _count(self, operation: str, function: Callable[..., Any], *args: Any) -> Any:
        try:
            result = function(*args)
        except FileNotFoundError:
            STORAGE_OPERATIONS.labels(operation, "missing").inc()
            raise
        except Exception:
            STORAGE_OPERATIONS.labels(operation, "error").inc()
            raise
        STORAGE_OPERATIONS.labels(operation, "ok").inc()
        return result

    def check(self) -> None:
        self._count("check", self.inner.check)

    def publish(self, temp: Any, bucket: str, key: str) -> None:
        size = temp.stat().st_size
        self._count("publish", self.inner.publish, temp, bucket, key)
        STORAGE_BYTES.labels("written").inc(size)

    def write(self, bucket: str, key: str, data: bytes) -> None:
        self._count("write", self.inner.write, bucket, key, data)
        STORAGE_BYTES.labels("written").inc(len(data))

    def read(self, bucket: str, key: str) -> bytes:
        data: bytes = self._count("read", self.inner.read, bucket, key)
        STORAGE_BYTES.labels("read").inc(len(data))
        return data

    def delete(self, bucket: str, key: str) -> None:
        self._count("delete", self.inner.delete, bucket, key)

    def open(self, bucket: str, key: str) -> tuple[int, Any]:
        size, reader = self._count("open", self.inner.open, bucket, key)
        return size, _CountingReader(reader)


class _CountingReader:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._read = STORAGE_BYTES.labels("read")

    def read(self, size: int) -> bytes:
        data: bytes = self._inner.read(size)
        self._read.inc(len(data))
        return data

    def close(self) -> None:
        self._inner.close()


Behavior = Callable[[Any, Any], Any]


class MetricsInterceptor(WrappingInterceptor):
    """Counts, times and sizes every gRPC call by method and status code (health and
    reflection included; bidirectional streams, of which the contract has none of its
    own, pass through). Kept apart from the pipeline's interceptor: this one only
    watches."""

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.stream_stream is not None:
            return handler  # reflection
        call = _Measured(method)
        options = {
            "request_deserializer": call.counting_in(handler.request_deserializer),
            "response_serializer": call.counting_out(handler.response_serializer),
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary, raw=handler.request_deserializer is None),
                **options,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                call.unary(handler.stream_unary, raw=False), **options
            )
        return grpc.unary_stream_rpc_method_handler(call.streaming(handler.unary_stream), **options)


class _Measured:
    """One method's series and the wrappers that add to it (on the event loop's thread,
    where grpc.aio runs handlers and (de)serializers)."""

    def __init__(self, method: str) -> None:
        self._series = GRPC.series(method)

    def counting_in(self, parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        if parse is None:
            return None  # raw bytes reach the behavior: counted there
        series = self._series

        def counted(raw: bytes) -> Any:
            series.received += len(raw)
            return parse(raw)

        return counted

    def counting_out(self, serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
        series = self._series

        def counted(message: Any) -> bytes:
            raw = serialize(message) if serialize is not None else message
            series.sent += len(raw)
            return raw

        return counted

    def unary(self, behavior: Behavior, *, raw: bool) -> Behavior:
        series = self._series

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if raw:
                series.received += len(request)
            started, code = series.start(), grpc.StatusCode.UNKNOWN
            try:
                response = await behavior(request, context)
                code = _code(context.code(), grpc.StatusCode.OK)
                return response
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                code = _code(context.code(), grpc.StatusCode.UNKNOWN)
                raise
            finally:
                series.finish(started, code.name, 0, 0)

        return handle

    def streaming(self, behavior: Behavior) -> Behavior:
        series = self._series

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, code = series.start(), grpc.StatusCode.CANCELLED
            try:
                async for response in behavior(request, context):
                    yield response
                code = _code(context.code(), grpc.StatusCode.OK)
            except asyncio.CancelledError:
                raise
            except Exception:
                code = _code(context.code(), grpc.StatusCode.UNKNOWN)
                raise
            finally:
                series.finish(started, code.name, 0, 0)

        return handle


def _code(code: Any, default: grpc.StatusCode) -> grpc.StatusCode:
    """The status a call ends with: the one it set or aborted with, else `default`."""
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    return default
