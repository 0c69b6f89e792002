"""What the gateway and the server agree on beyond the .proto files.

The compiled descriptors, the call metadata keys the gateway sets, the message size
limit, and the one encoding of failures: a google.rpc.Status with an ErrorInfo (a stable
reason) and BadRequest field violations, carried in the trailers by grpcio-status.

A leaf: it imports grpc and protobuf only, never aiohttp or anything of server/, so the
gateway can stand alone and the server can use the same names.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources

import grpc
from c2c.v1 import contact_assets_pb2
from crm.v1 import crm_pb2
from files.v1 import files_pb2
from google.protobuf import any_pb2, descriptor_pb2, message
from google.rpc import error_details_pb2, status_pb2

#: The contract's files: the server registers and reflects them, the gateway routes them.
FILE_DESCRIPTORS = (contact_assets_pb2.DESCRIPTOR, files_pb2.DESCRIPTOR, crm_pb2.DESCRIPTOR)

#: The largest request the contract documents: C2C allows 50 MiB of files, sent as bytes,
#: plus the envelope around them.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Call metadata the gateway sets; internal gRPC callers may set them too.
REQUEST_ID_KEY = "x-request-id"
#: The HTTP Host (lowercase, no port): API keys and sessions are bound to tenants' hosts.
HOST_KEY = "x-crmgate-host"
#: scheme://host of the HTTP request, for absolute links when CRMGATE_PUBLIC_URL is unset.
BASE_URL_KEY = "x-crmgate-base-url"
#: The caller's Accept-Language, for messages worded in its language.
ACCEPT_LANGUAGE_KEY = "accept-language"
#: The voyzu session id (the voyzu surface reads it from its cookie).
SESSION_KEY = "x-voyzu-session"
#: Credentials of API-key surfaces: `Bearer <key>`.
AUTHORIZATION_KEY = "authorization"
#: The HTTP client's address (after trusted proxies), for per-address rate limits; the
#: server believes it only from trusted gateways (CRMGATE_TRUSTED_GATEWAYS).
CLIENT_ADDRESS_KEY = "x-crmgate-client-address"

ERROR_DOMAIN = "crmgate"
#: ErrorInfo reason of a throttled call (RESOURCE_EXHAUSTED); its ErrorInfo.metadata has
#: `limit`, `remaining` and `reset` (seconds), and a google.rpc.RetryInfo says when to retry.
RATE_LIMITED = "rate_limited"

#: Methods anyone may call: signing in, the class modules, and the byte streams whose
#: request is itself the capability (a signed policy, a download token, a media URL).
#: The server authenticates every other method; a gateway checks those credentials
#: before it reads a request's body.
PUBLIC_METHODS = frozenset(
    {
        "/crm.v1.Crm/Authenticate",
        "/crm.v1.Crm/GetResourceClass",
        "/files.v1.Files/UploadObject",
        "/files.v1.Files/DownloadFile",
        "/c2c.v1.ContactAssets/GetMedia",
    }
)
#: The methods a gateway calls to have a request's credentials checked before it reads the
#: body, one per surface: they answer from the call's metadata alone.
CREDENTIAL_CHECKS = frozenset(
    {
        "/c2c.v1.ContactAssets/GetMessageLocale",
        "/files.v1.Files/CheckCredentials",
        "/crm.v1.Crm/CheckCredentials",
    }
)

# Paths every gateway serves itself, streaming the bytes through Files.UploadObject,
# Files.DownloadFile and ContactAssets.GetMedia; the server builds links with them.
#: `POST {STORAGE_PATH}{bucket}`: the S3 browser-POST target of Close uploads.
STORAGE_PATH = "/storage/"
#: `GET {DOWNLOAD_PATH}{token}/{name}`: 24-hour download capabilities.
DOWNLOAD_PATH = "/files/download/"
#: `GET {PUBLIC_MEDIA_PATH}{uuid}/{name}`: C2C media.
PUBLIC_MEDIA_PATH = "/media/"
#: ErrorInfo.metadata key of an UploadObject failure: the HTTP status S3 gives it.
HTTP_STATUS_KEY = "http_status"
#: Bytes per streamed message, both ways: small beside gRPC's flow-control window, so
#: neither side ever holds much of a file.
CHUNK_BYTES = 256 * 1024

#: Request ids: a random per-process prefix and a counter — unique, and cheaper than uuid4
#: on the hot path.
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


class CallFailed(Exception):
    """A call ended with a non-OK status; carries the full google.rpc.Status.

    Raised by every way of calling a service (in process and over a channel) and by the
    gateway's own refusals, so one handler renders every failure.
    """

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


def build_status(
    code: grpc.StatusCode,
    message: str,
    reason: str | None = None,
    violations: Iterable[tuple[str, str] | tuple[str, str, str]] = (),
    metadata: Mapping[str, str] | None = None,
    retry_after: int | None = None,
) -> status_pb2.Status:
    """A google.rpc.Status carrying ErrorInfo, a RetryInfo when `retry_after` (seconds) is
    given and, when there are any, field violations (`(field, description)` or
    `(field, description, rule)`, the rule a stable key)."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if reason:
        info = error_details_pb2.ErrorInfo(
            reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {}
        )
        status.details.append(_pack(info))
    field_violations = [
        error_details_pb2.BadRequest.FieldViolation(
            field=item[0], description=item[1], reason=item[2] if len(item) > 2 else ""
        )
        for item in violations
    ]
    if field_violations:
        bad_request = error_details_pb2.BadRequest(field_violations=field_violations)
        status.details.append(_pack(bad_request))
    if retry_after is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.seconds = retry_after
        status.details.append(_pack(retry))
    return status


def _pack(detail: message.Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def status_code(status: status_pb2.Status) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Status (UNKNOWN for codes grpc does not know)."""
    return _CODES.get(status.code, grpc.StatusCode.UNKNOWN)


def error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def error_reason(status: status_pb2.Status) -> str:
    """The ErrorInfo reason, or "" when the status has none."""
    info = error_info(status)
    return info.reason if info is not None else ""


def retry_after(status: status_pb2.Status) -> int | None:
    """Whole seconds of the status's RetryInfo (rounded up), or None without one."""
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay
            return delay.seconds + (1 if delay.nanos > 0 else 0)
    return None


def field_violations(
    status: status_pb2.Status,
) -> list[error_details_pb2.BadRequest.FieldViolation]:
    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(bad_request.field_violations)
    return violations


@cache
def source_comments(package: str, stem: str) -> dict[str, str]:
    """Leading comments of a contract file's services, methods, messages and fields, by
    full name, from its descriptor set with source info (`{stem}_descriptor.binpb` beside
    the generated package, written by `make proto`): the voyzu /class modules and the
    OpenAPI descriptions quote them."""
    data = resources.files(package).joinpath(f"{stem}_descriptor.binpb").read_bytes()
    comments: dict[str, str] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        for location in file.source_code_info.location:
            name = _located_name(file, list(location.path))
            if name:
                comments[name] = " ".join(location.leading_comments.split())
    return comments


def _located_name(file: descriptor_pb2.FileDescriptorProto, path: list[int]) -> str | None:
    """The full name a source location path points at: a top-level message (4) or one of
    its fields (4, i, 2, j), a service (6) or one of its methods (6, i, 2, j)."""
    if len(path) not in (2, 4) or path[0] not in (4, 6) or (len(path) == 4 and path[2] != 2):
        return None
    if path[0] == 4:
        parent = file.message_type[path[1]]
        children = [field.name for field in parent.field]
    else:
        parent = file.service[path[1]]
        children = [method.name for method in parent.method]
    name = f"{file.package}.{parent.name}"
    return name if len(path) == 2 else f"{name}.{children[path[3]]}"
