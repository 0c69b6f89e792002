"""Absolute links: CRMGATE_PUBLIC_URL when set, else the scheme and host of the request."""

from __future__ import annotations

from collections.abc import Mapping

from server.pipeline import BASE_URL_KEY


def base_url(public_url: str | None, metadata: Mapping[str, str]) -> str:
    if public_url:
        return public_url
    return (metadata.get(BASE_URL_KEY) or "http://localhost").rstrip("/")


def call_metadata(context: object) -> dict[str, str]:
    """The call's metadata as a dict, from a grpc.aio or in-process context."""
    return {key: value for key, value in context.invocation_metadata() or ()}  # type: ignore[attr-defined]
