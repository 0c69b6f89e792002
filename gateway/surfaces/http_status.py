"""The usual gRPC → HTTP status mapping (as grpc-gateway and google.rpc.Code document it),
which surfaces refine for their own reasons."""

from __future__ import annotations

import grpc
from google.rpc import status_pb2

from gateway.surfaces.base import METHOD_NOT_ALLOWED
from server.errors import error_info, status_code

HTTP_BY_CODE = {
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


def http_status(status: status_pb2.Status) -> int:
    info = error_info(status)
    if info is not None and info.reason == METHOD_NOT_ALLOWED:
        return 405
    return HTTP_BY_CODE.get(status_code(status), 500)
