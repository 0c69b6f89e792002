"""OpenTelemetry tracing: off unless the standard OTEL_* variables switch it on.

Off (the default) nothing is set up: the SDK is never imported, `tracer` stays None and
every hook here (and in server.tracing) returns at once. On, each process exports its
spans over OTLP/HTTP; a request is one trace, from the gateway's HTTP span through the gRPC
hop (W3C `traceparent` in the call's metadata) to the server's method span and its
database and storage spans. Both sides use this module: the set-up and the gateway's
hooks are here, the server's own hooks in server.tracing.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

import grpc
from aiohttp import web
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode

from gateway.contract import CallFailed, status_code
from gateway.request_ids import request_id

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

#: The tracer while tracing is on; None while it is off.
tracer: trace.Tracer | None = None

#: Variables that name where spans go: either switches tracing on (OTEL_TRACES_EXPORTER
#: alone defaults to "otlp" in the specification, but here tracing is opt-in).
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SUPPORTED_EXPORTERS = ("otlp", "console")
SUPPORTED_PROTOCOL = "http/protobuf"
#: Outcomes that are the server's fault: the span's status says ERROR for these alone.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.DATA_LOSS,
    }
)
#: Probes and scrapes, every few seconds each: traces of them would bury the requests'.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: The gateway's HTTP route that takes every unrouted path: its template says nothing.
_CATCH_ALL = "/{tail"


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether OTEL_* asks for traces: an exporter other than `none`, or an OTLP endpoint,
    unless OTEL_SDK_DISABLED=true."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters(environ)
    if exporters is not None:
        return bool(exporters)
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def _exporters(environ: Mapping[str, str]) -> list[str] | None:
    """OTEL_TRACES_EXPORTER's names without `none`; None when it is not set."""
    value = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not value:
        return None
    return [name for name in (n.strip().lower() for n in value.split(",")) if name != "none"]


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Switch tracing on when OTEL_* asks for it (returns whether it did): a batching
    OTLP/HTTP exporter (OTEL_EXPORTER_OTLP_*), the resource from OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES (`service_name` when neither names the service), the sampler
    from OTEL_TRACES_SAMPLER. ValueError for a setting this build cannot honour."""
    if not requested(environ):
        return False
    exporters = _exporters(environ) or ["otlp"]
    unsupported = sorted(set(exporters) - set(SUPPORTED_EXPORTERS))
    if unsupported:
        raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported {', '.join(unsupported)}")
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or SUPPORTED_PROTOCOL
    ).strip()
    if "otlp" in exporters and protocol != SUPPORTED_PROTOCOL:
        raise ValueError(f"OTLP protocol {protocol!r} is not supported: use {SUPPORTED_PROTOCOL}")

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)  # flushes and shuts down at exit
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    install(provider)
    return True


def install(provider: TracerProvider) -> None:
    """Trace through `provider` from now on (configure's last step; tests give theirs)."""
    global tracer
    tracer = provider.get_tracer("crmgate")


def uninstall() -> None:
    """Tracing off again (tests)."""
    global tracer
    tracer = None


def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
    parent: Context | None = None,
) -> AbstractContextManager[trace.Span]:
    """A span, current within the block (tracing on)."""
    assert tracer is not None
    return _Current(tracer.start_span(name, parent, kind, attributes))


class _Current:
    """Makes a span current for a block and ends it after: what the SDK's
    start_as_current_span does, in a third of its time (no generator-based context
    managers: a span the sampler drops must cost next to nothing). A failure marks the
    span ERROR by its type alone: an exception's words may quote data (a database's
    duplicate key, a parse error), so they are never recorded."""

    __slots__ = ("_span", "_token")

    def __init__(self, started: trace.Span) -> None:
        self._span = started

    def __enter__(self) -> trace.Span:
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None and issubclass(kind, Exception):  # not a cancellation
            self._span.set_status(StatusCode.ERROR, kind.__name__)
        context.detach(self._token)
        self._span.end()


def trace_id(span: trace.Span | None = None) -> str | None:
    """The trace id (32 hex digits) of `span`, else of the current span; None when off or
    outside any trace."""
    if tracer is None:
        return None
    found = (span or trace.get_current_span()).get_span_context()
    return trace.format_trace_id(found.trace_id) if found.is_valid else None


# ------------------------------------------------------------------ the gateway's hooks


def http_middleware() -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """The gateway app's tracing middleware while tracing is on, else none (no cost)."""
    return [_http_span] if tracer is not None else []


@web.middleware
async def _http_span(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One SERVER span per HTTP request (probes and scrapes aside), continuing a client's
    `traceparent`. Named by method and route template: never the raw path (a download
    token is a capability)."""
    if request.path in UNTRACED_PATHS:
        return await handler(request)
    with span(
        request.method,
        SpanKind.SERVER,
        {"http.request.method": request.method},
        propagate.extract(request.headers),
    ) as current:
        response = await handler(request)
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else ""
        if template and not template.startswith(_CATCH_ALL):
            current.update_name(f"{request.method} {template}")
            current.set_attribute("http.route", template)
        current.set_attribute("http.response.status_code", response.status)
        current.set_attribute("crmgate.request_id", request_id(request))
        if response.status >= 500:
            current.set_status(StatusCode.ERROR)
        return response


def client_call(
    method: str, metadata: Sequence[tuple[str, str]]
) -> AbstractContextManager[tuple[tuple[str, str], ...]]:
    """Around one call over a gRPC channel: the metadata to send. While tracing is on, a
    CLIENT span for the hop, whose `traceparent` the metadata carries."""
    if tracer is None:
        return nullcontext(tuple(metadata))
    return _client_span(method, metadata)


@contextmanager
def _client_span(
    method: str, metadata: Sequence[tuple[str, str]]
) -> Iterator[tuple[tuple[str, str], ...]]:
    assert tracer is not None
    # Not made current: a streaming call's span lives across the caller's awaits.
    span = tracer.start_span(
        method.lstrip("/"), kind=SpanKind.CLIENT, attributes=rpc_attributes(method)
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    try:
        yield (*metadata, *carrier.items())
    except CallFailed as failure:
        code = status_code(failure.status)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in SERVER_ERRORS:
            span.set_status(StatusCode.ERROR, code.name)
        raise
    else:
        span.set_attribute("rpc.grpc.status_code", 0)
    finally:
        span.end()


def rpc_attributes(method: str) -> dict[str, str]:
    """The semantic conventions' attributes of a gRPC method (`/pkg.Service/Name`)."""
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
