"""The one error type servicers raise.

Servicers never build statuses by hand: they raise ApiError with the canonical gRPC code
that describes the failure (AIP-193: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, …)
and a stable reason; the call pipeline turns it into a google.rpc.Status
(gateway.contract.build_status), which each gateway surface maps to its own HTTP status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc
from google.rpc import status_pb2

from gateway.contract import build_status


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
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.violations = list(violations)
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        """Whole across processes: bulk jobs raise it in worker processes (server/workers.py)."""
        return (type(self), (self.code, self.reason, self.message), self.__dict__)

    def to_status(self) -> status_pb2.Status:
        return build_status(
            self.code, self.message, self.reason, self.violations, self.metadata, self.retry_after
        )


def invalid_argument(message: str, reason: str = "bad_request") -> ApiError:
    """The request itself is wrong (a malformed id, a missing or ill-typed value)."""
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, reason, message)


def not_found(reason: str, message: str) -> ApiError:
    """What the request names does not exist (or is not the caller's to see)."""
    return ApiError(grpc.StatusCode.NOT_FOUND, reason, message)
