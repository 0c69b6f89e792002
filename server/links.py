"""Absolute links: CRMGATE_PUBLIC_URL when set, else the scheme and host the HTTP request
came to, else (internal gRPC callers) the address this process serves HTTP on."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.contract import BASE_URL_KEY


class PublicLinks:
    def __init__(self, public_url: str | None) -> None:
        self._public_url = public_url
        self.served_at = "http://localhost"  # set once the gateway listens

    def base(self, metadata: Mapping[str, str]) -> str:
        if self._public_url:
            return self._public_url
        return (metadata.get(BASE_URL_KEY) or self.served_at).rstrip("/")


def call_metadata(context: object) -> dict[str, str]:
    """The call's metadata as a dict, from a grpc.aio or in-process context."""
    return {key: value for key, value in context.invocation_metadata() or ()}  # type: ignore[attr-defined]
