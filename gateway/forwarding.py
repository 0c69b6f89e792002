"""The public view of a request behind a reverse proxy.

Links crmgate writes (uploads, downloads, media) and the host API keys are bound to come
from the request's scheme and Host. Behind a load balancer those are the proxy's, so the
`X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-For` (the client's address, for
per-address rate limits) headers are honoured — but only from peers the
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
    """Rewrites scheme, host and remote address from a trusted proxy's X-Forwarded-*
    headers (the client-most value of each; for the address, the last hop that is not a
    trusted proxy); requests from any other peer are left as they came."""
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
            client = _client(request.headers.get("X-Forwarded-For", ""), networks)
            if client:
                changes["remote"] = client
            if changes:
                request = request.clone(**changes)
        return await handler(request)

    return forwarded


def _client(forwarded_for: str, networks: list[Network]) -> str:
    """The client's address from X-Forwarded-For: the last hop not one of our proxies
    (what is left of it was written by the client, and may be forged)."""
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    untrusted = [hop for hop in hops if not _trusted(hop, networks)]
    client = untrusted[-1] if untrusted else hops[0] if hops else ""
    try:
        return str(ipaddress.ip_address(client))
    except ValueError:
        return ""  # not an address: keep the peer's


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def _trusted(remote: str | None, networks: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in network for network in networks)
