"""Failures in the gateway: its own reasons, the one shared gRPC → HTTP default, and the
table type each surface uses to refine it.

Like grpc-gateway's runtime/errors.go: every failure — the gateway's own refusal, the
transcoder's findings, or a service's status — arrives at a surface as a google.rpc.Status;
each surface turns code + ErrorInfo reason into its HTTP status and envelope through one
`StatusTable` in its own module, falling back on `default_http_status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import grpc
from google.rpc import status_pb2

from gateway.contract import (
    RATE_LIMITED,
    CallFailed,
    build_status,
    error_info,
    error_reason,
    retry_after,
    status_code,
)
from gateway.localisation import translate

# Reasons the gateway itself gives, before or instead of a call.
ROUTE_NOT_FOUND = "route_not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
INVALID_JSON = "invalid_json"
JSON_TOO_DEEP = "json_too_deep"
NUMBER_TOO_LONG = "number_too_long"
NUL_CHARACTER = "nul_character"
INVALID_REQUEST = "invalid_request"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
BODY_TOO_LARGE = "body_too_large"
MISSING_API_VERSION = "missing_api_version"
UNSUPPORTED_API_VERSION = "unsupported_api_version"
BACKEND_UNAVAILABLE = "backend_unavailable"
BACKEND_TIMEOUT = "backend_timeout"
MALFORMED_REPLY = "malformed_reply"
UNREADABLE_BODY = "unreadable_body"
MALFORMED_HTTP = "malformed_http"
REQUEST_HEAD_TOO_LARGE = "request_head_too_large"
UPLOADS_BUSY = "uploads_busy"
#: ErrorInfo.metadata key of a refusal worth retrying: seconds to wait (the Retry-After
#: header every surface adds).
RETRY_AFTER_KEY = "retry_after"

#: Refusals of what a request body holds (its type, its JSON, its fields): feedback a
#: caller without valid credentials must not get.
BODY_REFUSALS = frozenset(
    {
        INVALID_JSON,
        JSON_TOO_DEEP,
        NUMBER_TOO_LONG,
        NUL_CHARACTER,
        INVALID_REQUEST,
        UNSUPPORTED_MEDIA_TYPE,
        UNREADABLE_BODY,
    }
)
#: Refusals worded from the catalogue — the gateway's own, and the server's throttling —
#: which a surface may re-word in the caller's language; every other status was worded by
#: the service.
GATEWAY_WORDED = BODY_REFUSALS | {
    RATE_LIMITED,
    ROUTE_NOT_FOUND,
    METHOD_NOT_ALLOWED,
    BODY_TOO_LARGE,
    MISSING_API_VERSION,
    UNSUPPORTED_API_VERSION,
    UPLOADS_BUSY,
}


class Refused(CallFailed):
    """A failure the gateway decided itself: no service saw the request, so no service
    logged it (gateway.refusal_log does)."""


def reject(
    code: grpc.StatusCode,
    reason: str,
    *,
    violations: Iterable[tuple[str, str, str]] = (),
    **params: object,
) -> CallFailed:
    """A failure decided in the gateway, in the same form as a service's: the English
    message from the catalogue, its parameters in ErrorInfo.metadata for re-wording, and
    any field violations as (field, rule in English, kind)."""
    message = translate(reason, "en", **params)
    metadata = {name: str(value) for name, value in params.items()}
    seconds = params.get(RETRY_AFTER_KEY)  # also a RetryInfo, as the services' throttles
    retry = int(seconds) if isinstance(seconds, int | str) else None
    return Refused(build_status(code, message, reason, violations, metadata, retry))


#: The usual mapping (grpc-gateway's HTTPStatusFromCode, google.rpc.Code's comments).
HTTP_BY_CODE: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
#: The gateway's reasons whose HTTP status is more precise than their code's.
HTTP_BY_REASON: Mapping[str, int] = {
    METHOD_NOT_ALLOWED: 405,
    UNSUPPORTED_MEDIA_TYPE: 415,
    BODY_TOO_LARGE: 413,
    REQUEST_HEAD_TOO_LARGE: 431,
    UPLOADS_BUSY: 503,
}

T = TypeVar("T")


@dataclass(frozen=True)
class StatusTable(Generic[T]):
    """One surface's rendering of failures: by ErrorInfo reason first, then by code."""

    by_reason: Mapping[str, T] = field(default_factory=dict)
    by_code: Mapping[grpc.StatusCode, T] = field(default_factory=dict)

    def lookup(self, status: status_pb2.Status) -> T | None:
        found = self.by_reason.get(error_reason(status))
        return found if found is not None else self.by_code.get(status_code(status))


DEFAULT_STATUSES: StatusTable[int] = StatusTable(HTTP_BY_REASON, HTTP_BY_CODE)


def default_http_status(status: status_pb2.Status) -> int:
    """The shared default every surface falls back on."""
    return DEFAULT_STATUSES.lookup(status) or 500


def throttle_headers(status: status_pb2.Status) -> dict[str, str]:
    """For a status with a RetryInfo: `Retry-After`, and Close's `RateLimit: limit=…,
    remaining=…, reset=…` (what the `closeio` client reads to sleep) when the ErrorInfo
    carries those figures; else nothing."""
    seconds = retry_after(status)
    if seconds is None:
        return {}
    headers = {"Retry-After": str(seconds)}
    info = error_info(status)
    if info is not None and all(name in info.metadata for name in ("limit", "remaining")):
        headers["RateLimit"] = (
            f"limit={info.metadata['limit']}, remaining={info.metadata['remaining']}, "
            f"reset={seconds}"
        )
    return headers
