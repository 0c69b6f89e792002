"""The gateway's limits on what one connection may hold: how long a client may stall
mid-request, and how many bytes of large bodies one process reads at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import grpc
from aiohttp import web

from gateway.errors import RETRY_AFTER_KEY, UPLOADS_BUSY, reject

#: A body over this (or of unknown length: chunked) counts as large.
LARGE_BODY_BYTES = 1024 * 1024
#: A body up to this is read before its credentials are checked: aiohttp buffers as much
#: of any request anyway.
SMALL_BODY_BYTES = 64 * 1024
#: What a caller refused for want of a slot is told to wait.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class HttpLimits:
    """Limits applied before and while a route reads a request."""

    #: Seconds a client may send nothing while it owes the rest of a request (its head,
    #: or its body) before the connection is closed.
    read_timeout: float = 60.0
    #: Large bodies of the most a body may be that one process reads at once (smaller
    #: large bodies share that room by their length); beyond, 503 with Retry-After.
    large_bodies: int = 4
    #: The longest request line, and the longest header field, in bytes.
    max_line_bytes: int = 8190


DEFAULT_LIMITS = HttpLimits()
_NOTHING_HELD: AbstractContextManager[None] = nullcontext()


def announced_over(request: web.Request, limit: int) -> bool:
    """Whether the request's body may hold more than `limit` bytes: its Content-Length
    says so, or it is chunked (no length announced)."""
    length = request.content_length
    return request.body_exists and (length is None or length > limit)


class LargeBodies:
    """Bounds what large bodies being read at once may add up to: `limit` bodies of the
    most a body may be (`most_bytes`). Each holds its announced length (a chunked one,
    the most), so many photos of a few MiB are read side by side where `limit` bodies
    of the maximum fill it. One that does not fit is refused, not queued (a queued
    upload still holds its connection and buffers)."""

    def __init__(self, limit: int, most_bytes: int) -> None:
        self._most = most_bytes
        self._budget = limit * most_bytes
        self._reading = 0

    def hold(self, request: web.Request) -> AbstractContextManager[None]:
        """Room for the request's body while the block reads it, if that body is large;
        raises CallFailed (UNAVAILABLE, uploads_busy, retry_after) when it does not fit.
        Most bodies are small (or none): they share one context that holds nothing."""
        if not announced_over(request, LARGE_BODY_BYTES):
            return _NOTHING_HELD
        # A longer one is refused as too large once read starts; it holds the most.
        return self._slot(min(request.content_length or self._most, self._most))

    @contextmanager
    def _slot(self, size: int) -> Iterator[None]:
        if self._reading + size > self._budget:
            raise reject(
                grpc.StatusCode.UNAVAILABLE,
                UPLOADS_BUSY,
                **{RETRY_AFTER_KEY: RETRY_AFTER_SECONDS},
            )
        self._reading += size
        try:
            yield
        finally:
            self._reading -= size
