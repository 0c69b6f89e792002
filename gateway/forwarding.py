"""The public view of a request behind a reverse proxy.

Links crmgate writes (uploads, downloads, media) and the host API keys are bound to come
from the request's scheme and Host. Behind a load balancer those are the proxy's, so the
`X-Forwarded-Proto` and `X-Forwarded-Host` headers are honoured — but only from peers the
operator names (`--trusted-proxy CIDR`): anyone else could forge them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """`10.0.0.0/8`, `127.0.0.1`, `::1` … as networks; raises ValueError on a bad one."""
    return [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip()]


def forwarded_middleware(
    trusted: Iterable[Network],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Rewrites scheme and host from a trusted proxy's X-Forwarded-* headers (the first,
    client-most value of each); requests from any other peer are left as they came."""
    networks = list(trusted)

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if networks and _trusted(request.remote, networks):
            changes: dict[str, str] = {}
            proto = _first(request.headers.get("X-Forwarded-Proto", "")).lower()
            if proto in ("http", "https"):
                changes["scheme"] = proto
            host = _first(request.headers.get("X-Forwarded-Host", ""))
            if host:
                changes["host"] = host
            if changes:
                request = request.clone(**changes)
        return await handler(request)

    return forwarded


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def _trusted(remote: str | None, networks: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in network for network in networks)
