"""Who a call runs as: set by the call pipeline once the caller is authenticated, read by
servicers through `require_principal`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

import grpc

from server.errors import ApiError


@dataclass(frozen=True)
class Principal:
    """Who a call runs as: always a tenant, and the credential that proved it."""

    tenant_id: int
    tenant_name: str
    locale: str
    honor_accept_language: bool
    credential_kind: str  # "c2c", "close", "session"
    credential_id: str
    user_id: int | None = None
    #: The tenant's requests per rate window for each credential; None: the default.
    request_limit: int | None = None


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None
)


def require_principal() -> Principal:
    """The caller of the current call; the pipeline has authenticated it already."""
    principal = current_principal.get()
    if principal is None:
        raise ApiError(grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "Not authenticated.")
    return principal
