"""Absolute links: CRMGATE_PUBLIC_URL when set, else the scheme and host the HTTP request
came to (as the gateway saw it, trusted proxies' X-Forwarded-* included), else — an
internal gRPC caller — the address this process serves HTTP on (`crmgate serve`), or a
path alone (`crmgate server` has no HTTP address of its own: set CRMGATE_PUBLIC_URL)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.contract import BASE_URL_KEY, HOST_KEY


class PublicLinks:
    def __init__(self, public_url: str | None) -> None:
        self._public_url = public_url
        self.served_at = ""  # set once `serve`'s gateway listens

    def base(self, metadata: Mapping[str, str]) -> str:
        if self._public_url:
            return self._public_url
        return (metadata.get(BASE_URL_KEY) or self.served_at).rstrip("/")


def call_metadata(context: object) -> dict[str, str]:
    """The call's metadata as a dict, from a grpc.aio or in-process context."""
    return {key: value for key, value in context.invocation_metadata() or ()}  # type: ignore[attr-defined]


def call_host(context: object) -> str | None:
    """The public host the call came to, as the gateway saw it; None for a caller that
    did not say (direct gRPC)."""
    return call_metadata(context).get(HOST_KEY) or None
