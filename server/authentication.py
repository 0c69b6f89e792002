"""Which credential each method needs, and checking it.

One table says it: a service's methods need the credential kind of that service's
surface, except the few public methods. Verifiers per kind are pluggable so a surface's
own credential (voyzu sessions) plugs in beside API keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import grpc

from gateway.contract import HOST_KEY, PUBLIC_METHODS
from server.api_keys import KeyVerifier, hash_secret
from server.errors import ApiError
from server.executors import run_db
from server.principal import Principal
from server.single_flight import SingleFlight

#: The credential each service's methods need.
SERVICE_CREDENTIALS = {
    "c2c.v1.ContactAssets": "c2c",
    "files.v1.Files": "close",
    "crm.v1.Crm": "session",
    "google.longrunning.Operations": "session",
}

#: Verifies a credential of one kind from the call metadata; None means "not valid".
CredentialVerifier = Callable[[Mapping[str, str]], Awaitable[Principal | None]]
#: A verifier's answer from memory alone: the principal of a credential verified moments
#: ago, else None (unknown, lapsed or invalid: ask the verifier itself).
CachedVerifier = Callable[[Mapping[str, str]], Principal | None]

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


class ApiKeyCredential:
    """Verifies API keys of one kind: they travel as `authorization: Bearer <key>`, the
    host as x-crmgate-host. `before_lookup` runs before a key the cache does not know is
    looked up (the rate limits' check of the caller's address). Calls that present the
    same key while it is being looked up wait for that one lookup."""

    def __init__(
        self,
        verifier: KeyVerifier,
        kind: str,
        before_lookup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._verifier, self._kind, self._before_lookup = verifier, kind, before_lookup
        self._lookups: SingleFlight[Principal | None] = SingleFlight()

    async def __call__(self, metadata: Mapping[str, str]) -> Principal | None:
        token, host = _key_and_host(metadata)
        if token is None:
            return None
        digest = hash_secret(token)  # once: the cache, the flight and the lookup use it
        hit, principal = self._verifier.cached(digest, self._kind, host)
        if hit:
            return principal
        if self._before_lookup is not None:
            await self._before_lookup()
        return await self._lookups.run(
            (digest, host),
            partial(run_db, self._verifier.verify, token, self._kind, host, digest),
        )

    def cached(self, metadata: Mapping[str, str]) -> Principal | None:
        """The key's principal if it was verified moments ago (see CachedVerifier)."""
        token, host = _key_and_host(metadata)
        if token is None:
            return None
        return self._verifier.cached(hash_secret(token), self._kind, host)[1]


def _key_and_host(metadata: Mapping[str, str]) -> tuple[str | None, str | None]:
    token = bearer_token(metadata)
    if token is None or not token.isascii():
        return None, None  # keys are ASCII; anything else (an in-process caller's) is none
    return token, metadata.get(HOST_KEY) or None


def required_credential(method: str) -> str | None:
    """The credential kind a method (`/package.Service/Method`) needs."""
    return SERVICE_CREDENTIALS.get(method.lstrip("/").partition("/")[0])


_UNKNOWN = object()


class Authenticator:
    """The pipeline's authentication step."""

    def __init__(self, verifiers: Mapping[str, CredentialVerifier]) -> None:
        self._verifiers = dict(verifiers)
        self._kinds: dict[str, str | None] = {}
        #: Each method's verifier's answer from memory, for those that keep one.
        self._cached: dict[str, CachedVerifier | None] = {}

    def register(self, kind: str, verifier: CredentialVerifier) -> None:
        self._verifiers[kind] = verifier
        self._cached.clear()

    def cached(self, method: str, metadata: Mapping[str, str]) -> Principal | None:
        """The caller's principal when the method's verifier knows the credential as
        valid from memory (a key verified moments ago), with no await; else None: ask
        the authenticator itself (public methods, sessions, unknown or wrong keys)."""
        cached = self._cached.get(method, _UNKNOWN)
        if cached is _UNKNOWN:
            kind = None if method in PUBLIC_METHODS else self._kind(method)
            verifier = self._verifiers.get(kind) if kind else None
            cached = self._cached[method] = getattr(verifier, "cached", None)
        return cached(metadata) if cached is not None else None  # type: ignore[operator]

    def _kind(self, method: str) -> str | None:
        kind = self._kinds.get(method)
        if kind is None:
            kind = self._kinds[method] = required_credential(method)
        return kind

    async def __call__(self, method: str, metadata: Mapping[str, str]) -> Principal | None:
        if method in PUBLIC_METHODS:
            return None
        kind = self._kind(method)
        verifier = self._verifiers.get(kind) if kind else None
        principal = await verifier(metadata) if verifier else None
        if principal is None:
            reason = UNAUTHENTICATED_REASONS.get(kind or "", "unauthenticated")
            raise ApiError(
                grpc.StatusCode.UNAUTHENTICATED, reason, "Invalid or missing credentials."
            )
        return principal
