"""Collecting field violations, so a request reports every problem at once."""

from __future__ import annotations

import grpc

from server.errors import ApiError


class Violations:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, reason: str, message: str) -> None:
        if self.items:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, reason, message, violations=self.items)
