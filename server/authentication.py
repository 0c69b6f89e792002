"""Which credential each method needs, and checking it.

One table says it: a service's methods need the credential kind of that service's
surface, except the few public methods. Verifiers per kind are pluggable so a surface's
own credential (voyzu sessions) plugs in beside API keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import grpc

from gateway.contract import HOST_KEY, PUBLIC_METHODS
from server.api_keys import KeyVerifier
from server.errors import ApiError
from server.executors import run_db
from server.principal import Principal

#: The credential each service's methods need.
SERVICE_CREDENTIALS = {
    "c2c.v1.ContactAssets": "c2c",
    "files.v1.Files": "close",
    "crm.v1.Crm": "session",
    "google.longrunning.Operations": "session",
}

#: Verifies a credential of one kind from the call metadata; None means "not valid".
CredentialVerifier = Callable[[Mapping[str, str]], Awaitable[Principal | None]]

UNAUTHENTICATED_REASONS = {
    "c2c": "invalid_api_key",
    "close": "invalid_api_key",
    "session": "invalid_session",
}


def bearer_token(metadata: Mapping[str, str]) -> str | None:
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def api_key_verifier(
    verifier: KeyVerifier, kind: str, before_lookup: Callable[[], Awaitable[None]] | None = None
) -> CredentialVerifier:
    """API keys travel as `authorization: Bearer <key>`, the host as x-crmgate-host.
    `before_lookup` runs before a key the cache does not know is looked up (the rate
    limits' check of the caller's address)."""

    async def verify(metadata: Mapping[str, str]) -> Principal | None:
        token = bearer_token(metadata)
        if token is None or not token.isascii():
            return None  # keys are ASCII; anything else (an in-process caller's) is none
        host = metadata.get(HOST_KEY) or None
        hit, principal = verifier.cached(token, kind, host)
        if hit:
            return principal
        if before_lookup is not None:
            await before_lookup()
        return await run_db(verifier.verify, token, kind, host)

    return verify


def required_credential(method: str) -> str | None:
    """The credential kind a method (`/package.Service/Method`) needs."""
    return SERVICE_CREDENTIALS.get(method.lstrip("/").partition("/")[0])


class Authenticator:
    """The pipeline's authentication step."""

    def __init__(self, verifiers: Mapping[str, CredentialVerifier]) -> None:
        self._verifiers = dict(verifiers)
        self._kinds: dict[str, str | None] = {}

    def register(self, kind: str, verifier: CredentialVerifier) -> None:
        self._verifiers[kind] = verifier

    async def __call__(self, method: str, metadata: Mapping[str, str]) -> Principal | None:
        if method in PUBLIC_METHODS:
            return None
        kind = self._kinds.get(method)
        if kind is None:
            kind = self._kinds[method] = required_credential(method)
        verifier = self._verifiers.get(kind) if kind else None
        principal = await verifier(metadata) if verifier else None
        if principal is None:
            reason = UNAUTHENTICATED_REASONS.get(kind or "", "unauthenticated")
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED, reason, "Invalid or missing credentials."
            )
        return principal
