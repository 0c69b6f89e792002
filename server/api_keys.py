"""API keys: issuing, revoking and verifying them.

Keys are random, shown in plaintext once, stored as SHA-256, looked up by that hash and
compared in constant time. A verified key is cached for a few seconds so the hot path
(every request) does not touch the database; revocation therefore takes effect within
CACHE_SECONDS on every server process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from server.database.models import ApiKey, Tenant, utcnow
from server.principal import Principal
from server.tenant_hosts import TenantHosts

#: What a plaintext key of each kind starts with.
KEY_PREFIXES = {"c2c": "c2c_", "close": "api_"}

CACHE_SECONDS = 2.0
#: Unknown keys are cached too (a miss costs a query); the cache is emptied past this size
#: so a flood of made-up keys cannot grow memory without bound.
CACHE_MAX_ENTRIES = 10_000


def hash_secret(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_api_key(tenant: Tenant, kind: str, label: str = "") -> tuple[ApiKey, str]:
    """Issue a key; the plaintext is returned once and never stored."""
    if kind not in KEY_PREFIXES:
        raise ValueError(f"unknown key kind {kind!r}; expected one of {', '.join(KEY_PREFIXES)}")
    plaintext = KEY_PREFIXES[kind] + secrets.token_urlsafe(32)
    key = ApiKey.create(
        key_id="key_" + secrets.token_hex(8),
        tenant=tenant,
        kind=kind,
        secret_hash=hash_secret(plaintext),
        label=label,
    )
    return key, plaintext


def revoke_api_key(key_id: str) -> bool:
    updated = (
        ApiKey.update(revoked_at=utcnow())
        .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_null())
        .execute()
    )
    return updated > 0


class KeyVerifier:
    """Turns a presented key (and the host it was presented on) into a Principal."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, hosts: TenantHosts | None = None
    ) -> None:
        self._clock = clock
        self._keys: dict[str, tuple[float, Principal | None]] = {}
        self._hosts = hosts or TenantHosts(clock)

    def verify(
        self, plaintext: str, kind: str, host: str | None, digest: str | None = None
    ) -> Principal | None:
        """The key's principal, or None when the key is unknown, revoked, of another kind,
        or presented on a host bound to another tenant. `digest`: its hash_secret, when
        the caller has it already. Blocking: run it off the loop on a cache miss (see
        `cached`)."""
        if not plaintext.startswith(KEY_PREFIXES[kind]):
            return None
        digest = digest or hash_secret(plaintext)
        principal = self._lookup_key(digest)
        if principal is None or principal.credential_kind != kind:
            return None
        return principal if self._hosts.admits(host, principal.tenant_id) else None

    def cached(self, digest: str, kind: str, host: str | None) -> tuple[bool, Principal | None]:
        """(hit, principal) of the key whose hash_secret is `digest`, answered from memory
        alone, so the hot path never blocks."""
        now = self._clock()
        entry = self._keys.get(digest)
        if entry is None or entry[0] < now:
            return False, None
        principal = entry[1]
        if principal is None or principal.credential_kind != kind:
            return True, None
        if host:
            host_hit, bound_to = self._hosts.cached(host)
            if not host_hit:
                return False, None
            if bound_to is not None and bound_to != principal.tenant_id:
                return True, None
        return True, principal

    def _lookup_key(self, digest: str) -> Principal | None:
        now = self._clock()
        entry = self._keys.get(digest)
        if entry is not None and entry[0] >= now:
            return entry[1]
        row = (
            ApiKey.select(ApiKey, Tenant)
            .join(Tenant)
            .where(ApiKey.secret_hash == digest, ApiKey.revoked_at.is_null())
            .first()
        )
        principal = None
        if row is not None and hmac.compare_digest(row.secret_hash, digest):
            principal = Principal(
                tenant_id=row.tenant.id,
                tenant_name=row.tenant.name,
                locale=row.tenant.locale,
                honor_accept_language=row.tenant.honor_accept_language,
                credential_kind=row.kind,
                credential_id=row.key_id,
                request_limit=row.tenant.request_limit,
            )
        if len(self._keys) >= CACHE_MAX_ENTRIES:
            self._keys.clear()
        self._keys[digest] = (now + CACHE_SECONDS, principal)
        return principal
