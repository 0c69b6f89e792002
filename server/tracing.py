"""The server's tracing hooks (set-up and the gateway's hooks: gateway.tracing).

A call's span continues the trace whose `traceparent` its metadata carries (a gateway
over gRPC, a bulk worker's job), else the current one (the gateway in this process).
Database statements and object storage operations are spans only within a call's trace:
the probes and sweeps that run on their own every second start none. While tracing is
off each hook is one check of `gateway.tracing.tracer`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from gateway import tracing
from gateway.request_ids import current_request_id
from gateway.tracing import SERVER_ERRORS, rpc_attributes

if TYPE_CHECKING:
    from server.objects import ObjectStorage

_OFF: nullcontext[None] = nullcontext()
#: Longest statement text a span keeps (the text has placeholders, never values).
STATEMENT_CHARS = 2000


def call_span(method: str, metadata: Mapping[str, str]) -> AbstractContextManager[Any]:
    """Around one call in the pipeline: its SERVER span, current while the call runs
    (None while tracing is off)."""
    if tracing.tracer is None:
        return _OFF
    parent = propagate.extract(metadata, context=context.get_current())
    return tracing.span(method.lstrip("/"), SpanKind.SERVER, rpc_attributes(method), parent)


class CallScope:
    """Around one call: its request id for the log lines logged within it (see
    server.logs) and, while tracing is on, its span (None while off: no span's context
    is entered at all, every call comes this way)."""

    __slots__ = ("_request_id", "_span", "_token")

    def __init__(self, method: str, metadata: Mapping[str, str], request_id: str) -> None:
        self._span = None if tracing.tracer is None else call_span(method, metadata)
        self._request_id = request_id

    def __enter__(self) -> trace.Span | None:
        self._token = current_request_id.set(self._request_id)
        return None if self._span is None else self._span.__enter__()

    def __exit__(self, *failure: Any) -> None:
        try:
            if self._span is not None:
                self._span.__exit__(*failure)
        finally:
            current_request_id.reset(self._token)


def end_call(span: trace.Span | None, code: grpc.StatusCode, request_id: str) -> str | None:
    """Record a call's outcome on its span; its trace id for the call's log line."""
    if span is None:
        return None
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    span.set_attribute("crmgate.request_id", request_id)
    if code in SERVER_ERRORS:
        span.set_status(StatusCode.ERROR, code.name)
    return tracing.trace_id(span)


def statement_span(system: str, sql: str) -> AbstractContextManager[Any]:
    """Around one SQL statement: a CLIENT span with its text (placeholders, no values)."""
    if tracing.tracer is None or not trace.get_current_span().is_recording():
        return _OFF
    operation = sql.lstrip()[:12].split(None, 1)[0].upper() if sql.strip() else "SQL"
    attributes = {
        "db.system.name": system,
        "db.operation.name": operation,
        "db.query.text": sql[:STATEMENT_CHARS],
    }
    return tracing.span(operation, SpanKind.CLIENT, attributes)


def traced_storage(buckets: ObjectStorage) -> ObjectStorage:
    """`buckets`, its operations spans while tracing is on (as it is when this is called)."""
    if tracing.tracer is None:
        return buckets
    return _TracedStorage(buckets)  # type: ignore[return-value]


class _TracedStorage:
    """An ObjectStorage whose calls are spans named `storage <operation>`, with the
    logical bucket (never the key: keys name tenants and tokens)."""

    OPERATIONS = frozenset({"publish", "write", "read", "delete", "open", "head", "open_temp"})

    def __init__(self, buckets: ObjectStorage) -> None:
        self._buckets = buckets

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._buckets, name)
        if name not in self.OPERATIONS:
            return attribute

        def traced(*args: Any, **kwargs: Any) -> Any:
            with _storage_span(name, args):
                return attribute(*args, **kwargs)

        return traced


def _storage_span(operation: str, args: tuple[Any, ...]) -> AbstractContextManager[Any]:
    if tracing.tracer is None or not trace.get_current_span().is_recording():
        return _OFF
    bucket = next((arg for arg in args if isinstance(arg, str)), "")
    attributes = {"crmgate.storage.operation": operation, "crmgate.storage.bucket": bucket}
    return tracing.span(f"storage {operation}", SpanKind.CLIENT, attributes)


def trace_carrier() -> dict[str, str]:
    """The current trace as W3C headers (none while off), for work that runs later or
    elsewhere: a background request, a bulk worker's job."""
    carrier: dict[str, str] = {}
    if tracing.tracer is not None:
        propagate.inject(carrier)
    return carrier


def job_span(name: str, carrier: Mapping[str, str]) -> AbstractContextManager[Any]:
    """Around a job another process handed over with `trace_carrier`: a span in its trace,
    exported before the job's outcome goes back (the process may be killed idle)."""
    if tracing.tracer is None or not carrier:
        return _OFF
    return _job_span(name, carrier)


@contextmanager
def _job_span(name: str, carrier: Mapping[str, str]) -> Iterator[None]:
    try:
        with tracing.span(name, SpanKind.CONSUMER, parent=propagate.extract(carrier)):
            yield
    finally:
        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:
            flush()
