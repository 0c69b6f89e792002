"""The one error type servicers raise, and its google.rpc.Status form.

Servicers never build status codes by hand: they raise ApiError, and the call pipeline
turns it into a gRPC status with ErrorInfo (reason = the surface's error code) and
BadRequest field violations, so every gateway surface can map it without guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "crmgate"


class ApiError(Exception):
    """A failure a caller should see: a gRPC code, a stable reason and a readable message."""

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *,
        violations: Iterable[tuple[str, str]] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.violations = list(violations)
        self.metadata = dict(metadata or {})

    def to_status(self) -> status_pb2.Status:
        return build_status(self.code, self.message, self.reason, self.violations, self.metadata)


class CallFailed(Exception):
    """A call ended with a non-OK status; carries the full google.rpc.Status.

    Raised by every way of calling a service (the in-process pipeline and the gRPC
    channel alike), so the gateway handles one exception type.
    """

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


def build_status(
    code: grpc.StatusCode,
    message: str,
    reason: str | None = None,
    violations: Iterable[tuple[str, str]] = (),
    metadata: Mapping[str, str] | None = None,
    domain: str = ERROR_DOMAIN,
) -> status_pb2.Status:
    """A google.rpc.Status carrying ErrorInfo and, when there are any, field violations."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if reason:
        info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {})
        status.details.append(_pack(info))
    violations = list(violations)
    if violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=text)
                for field, text in violations
            ]
        )
        status.details.append(_pack(bad_request))
    return status


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_code(status: status_pb2.Status) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Status (UNKNOWN for codes grpc does not know)."""
    for code in grpc.StatusCode:
        if code.value[0] == status.code:
            return code
    return grpc.StatusCode.UNKNOWN


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def field_violations(status: status_pb2.Status) -> list[tuple[str, str]]:
    violations: list[tuple[str, str]] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend((v.field, v.description) for v in bad_request.field_violations)
    return violations
