"""Which tenant a host name belongs to.

A host bound to a tenant (TenantHost) serves that tenant alone: its API keys, its voyzu
sessions and its capability URLs (downloads, media, upload targets). Another tenant's
credential or link presented there is refused as if unknown. Hosts bound to nobody (a
shared API host, direct gRPC callers that send none) admit every tenant.

Bindings are cached for a few seconds so the hot path does not query them every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from server.database.models import TenantHost

CACHE_SECONDS = 2.0
#: Unknown hosts are cached too; the cache is emptied past this size so a flood of
#: made-up Host headers cannot grow memory without bound.
CACHE_MAX_ENTRIES = 10_000


class TenantHosts:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tenants: dict[str, tuple[float, int | None]] = {}

    def cached(self, host: str) -> tuple[bool, int | None]:
        """(hit, tenant id or None) from memory alone, so the hot path never blocks."""
        entry = self._tenants.get(host)
        if entry is None or entry[0] < self._clock():
            return False, None
        return True, entry[1]

    def tenant_of(self, host: str) -> int | None:
        """The tenant the host is bound to, if any. Blocking on a cache miss."""
        hit, tenant_id = self.cached(host)
        if hit:
            return tenant_id
        row = TenantHost.get_or_none(TenantHost.host == host)
        tenant_id = row.tenant_id if row is not None else None
        if len(self._tenants) >= CACHE_MAX_ENTRIES:
            self._tenants.clear()
        self._tenants[host] = (self._clock() + CACHE_SECONDS, tenant_id)
        return tenant_id

    def admits(self, host: str | None, tenant_id: int) -> bool:
        """Whether the tenant's credentials and links may be used on this host."""
        if not host:
            return True
        bound_to = self.tenant_of(host)
        return bound_to is None or bound_to == tenant_id


#: The process's bindings, shared by every check.
tenant_hosts = TenantHosts()
